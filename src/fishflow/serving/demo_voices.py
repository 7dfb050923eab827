"""The demo's voices: distinct eSpeak NG voices whose reference audio is their own speech.

The demo server cannot clone a voice. Instead each reference WAV that fishflow ships was spoken
by one eSpeak voice and names it in its WAV comment (the RIFF ``INFO/ICMT`` chunk, which travels
with the bytes through ``/v1/references/add`` and inline references); the demo server speaks such
a reference in that voice, so a speaker-similarity check finds items closest to their own
reference. Audio without that comment (any user's recording) gets a voice derived from its hash.

Regenerate the references of one or more configs (voice ids in sorted order take ``VOICES`` in
order; the transcript is the config's ``text``)::

    python -m fishflow.serving.demo_voices config/config.yaml \
        config/benchmark_fishspeech_60_en_v1.yaml
"""

import argparse
import io
import sys
from pathlib import Path

import soundfile as sf
import yaml

from fishflow import atomic
from fishflow.serving import espeak

# Chosen among the demo server's byte-stable variants at its pitch levels so that the Resemblyzer
# GE2E speaker encoder tells them apart: over six sentences in five languages, the mean embeddings
# of these voices are at most 0.71 cosine-similar (the first three at most 0.58), and every
# sentence is closest to its own voice's reference.
VOICES = (
    espeak.Voice("aunty", pitch=75),
    espeak.Voice("klatt", pitch=50),
    espeak.Voice("m8", pitch=75),
    espeak.Voice("grandma", pitch=50),
    espeak.Voice("f1", pitch=25),
)


def tag(voice: espeak.Voice) -> str:
    """The WAV comment that names ``voice``."""
    prosody = f"pitch={voice.pitch} rate={voice.rate} range={voice.range}"
    return f"espeak-ng voice: {voice.variant} {prosody}"


# Only these voices are honoured: their variants speak byte-identically in every process.
_BY_TAG = {tag(voice): voice for voice in VOICES}


def named_voice(audio: bytes) -> espeak.Voice | None:
    """The demo voice that ``audio``'s WAV comment names, or None (no such comment)."""
    try:
        with sf.SoundFile(io.BytesIO(audio)) as handle:
            comment = handle.copy_metadata().get("comment", "")
    except Exception:  # undecodable audio names no voice; the caller decides what that means
        return None
    return _BY_TAG.get(comment)


def wrong_voice(voice: espeak.Voice) -> espeak.Voice:
    """A demo voice with another variant than ``voice`` (the wrong-voice fault): the next one
    in ``VOICES`` for a demo voice, else the first whose variant differs."""
    if voice in VOICES:
        return VOICES[(VOICES.index(voice) + 1) % len(VOICES)]
    return next(v for v in VOICES if v.variant != voice.variant)


def reference_wav(voice: espeak.Voice, text: str) -> bytes:
    """``text`` spoken by ``voice`` (English), as a 16-bit WAV that names the voice."""
    samples = espeak.synthesize(text, "en", voice)
    buffer = io.BytesIO()
    with sf.SoundFile(buffer, "w", espeak.SAMPLE_RATE, 1, "PCM_16", format="WAV") as handle:
        handle.comment = tag(voice)
        handle.write(samples)
    return buffer.getvalue()


def write_references(configfile: Path) -> list[Path]:
    """(Re)write the reference audio of every voice of ``configfile`` (paths relative to the
    current folder, as snakemake reads them)."""
    voices = yaml.safe_load(configfile.read_text(encoding="utf-8"))["voices"]
    if len(voices) > len(VOICES):
        raise ValueError(f"{configfile} has {len(voices)} voices; the demo has {len(VOICES)}")
    written = []
    for voice, ref_id in zip(VOICES, sorted(voices), strict=False):
        path = Path(voices[ref_id]["audio"])
        atomic.write_bytes(path, reference_wav(voice, voices[ref_id]["text"]))
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fishflow.serving.demo_voices",
        description="write each config's reference voices as the demo's eSpeak voices",
    )
    parser.add_argument("configfile", type=Path, nargs="+")
    for configfile in parser.parse_args(argv).configfile:
        for path in write_references(configfile):
            print(f"{configfile}: wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
