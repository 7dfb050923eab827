"""Minimal ctypes binding to the libespeak-ng shipped by the ``espeakng-loader`` wheel.

eSpeak NG keeps its synthesis state in C globals that neither ``espeak_Terminate`` nor
``espeak_Initialize`` reset (pitch flutter index, wave phase, echo and noise filters), so the
same text comes out slightly different depending on what was spoken before. To make output a
pure function of its inputs, every call loads the library afresh and unloads it afterwards
(about 5 ms). The library is not thread-safe: calls are serialised by a process-wide lock.
"""

import _ctypes
import ctypes
import threading
from dataclasses import dataclass
from pathlib import Path

import espeakng_loader
import numpy as np

# fishflow language code -> eSpeak NG voice name
LANGUAGES = {"en": "en", "de": "de", "fr": "fr", "ja": "ja", "zh": "cmn"}
SAMPLE_RATE = 22050

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_CHARS_UTF8 = 1
_ENDPAUSE = 0x1000
# espeak_PARAMETER values from speak_lib.h
_RATE, _PITCH, _RANGE = 1, 3, 4

_SYNTH_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)

_VARIANTS_DIR = Path(espeakng_loader.get_data_path()) / "voices" / "!v"
_lock = threading.Lock()
_chunks: list[np.ndarray] = []


@dataclass(frozen=True)
class Voice:
    """An eSpeak voice: optional variant (``f3`` gives ``en+f3``) plus prosody parameters.

    The defaults are eSpeak's own, so ``Voice()`` is the plain voice of the language.
    """

    variant: str | None = None
    pitch: int = 50  # 0..100
    rate: int = 175  # words per minute, 80..450
    range: int = 50  # pitch variation, 0..100


def _collect(wav, numsamples, _events) -> int:
    if wav and numsamples > 0:
        _chunks.append(np.ctypeslib.as_array(wav, shape=(numsamples,)).copy())
    return 0  # 0 = go on synthesising


# Module-level so the ctypes trampoline outlives every library instance that points at it.
_callback = _SYNTH_CALLBACK(_collect)


def _load() -> ctypes.CDLL:
    lib = ctypes.CDLL(espeakng_loader.get_library_path())
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t] + [ctypes.c_uint] * 4
    lib.espeak_Synth.argtypes += [ctypes.c_void_p, ctypes.c_void_p]
    data_path = espeakng_loader.get_data_path().encode()
    if lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path, 0) != SAMPLE_RATE:
        raise RuntimeError("espeak_Initialize failed")
    lib.espeak_SetSynthCallback(_callback)
    return lib


def _unload(lib: ctypes.CDLL) -> None:
    lib.espeak_Terminate()
    _ctypes.dlclose(lib._handle)


def _speak(lib: ctypes.CDLL, text: str, name: str, voice: Voice) -> None:
    if lib.espeak_SetVoiceByName(name.encode()) != 0:
        raise ValueError(f"eSpeak NG has no voice {name!r}")
    for param, value in ((_RATE, voice.rate), (_PITCH, voice.pitch), (_RANGE, voice.range)):
        lib.espeak_SetParameter(param, value, 0)
    data = text.encode("utf-8")
    err = lib.espeak_Synth(data, len(data) + 1, 0, 0, 0, _CHARS_UTF8 | _ENDPAUSE, None, None)
    if err != 0:
        raise RuntimeError(f"espeak_Synth failed with error {err}")


def synthesize(text: str, language: str = "en", voice: Voice = Voice()) -> np.ndarray:
    """Speak ``text`` in ``language`` (en, de, fr, ja, zh) as int16 samples at SAMPLE_RATE."""
    name = LANGUAGES[language] + (f"+{voice.variant}" if voice.variant else "")
    # eSpeak silently falls back to the plain voice for an unknown variant
    if voice.variant and not (_VARIANTS_DIR / voice.variant).is_file():
        raise ValueError(f"eSpeak NG has no voice {name!r}")
    with _lock:
        _chunks.clear()
        lib = _load()
        try:
            _speak(lib, text, name, voice)
        finally:
            _unload(lib)
        samples = np.concatenate(_chunks) if _chunks else np.zeros(0, dtype=np.int16)
        _chunks.clear()
    return samples
