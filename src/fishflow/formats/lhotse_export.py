"""`fishflow export lhotse`: the spoken items as Lhotse manifests (k2/icefall, NeMo, ESPnet).

Per language `fishflow_recordings_<lang>.jsonl.gz` and `fishflow_supervisions_<lang>.jsonl.gz`
(and `fishflow_cuts_<lang>.jsonl.gz`), named as Lhotse's recipes name theirs. One recording per
WAV, its id `<lang>.<voice>.<item id>` (unique: languages and voices hold no dot), and one
supervision over all of it: text, language, speaker = voice, and in `custom` the item's id,
seed and, where the manifest holds them, the judge's scores and takes.

Paths are absolute by default, so the manifests load from any directory. With `relative` they
are relative to the output folder (what Lhotse's `relative_path_depth` would keep): the folder can
move, and `RecordingSet.with_path_prefix(folder)` / `CutSet.with_recording_path_prefix(folder)`
anchors them where it is now.
"""

from __future__ import annotations

import logging
from pathlib import Path

import soundfile

from fishflow import atomic
from fishflow.errors import FishflowError
from fishflow.layout import Layout

log = logging.getLogger("fishflow.export")

# Manifest fields carried in a supervision's `custom`, where a row holds them (not None).
CUSTOM_FIELDS = ("id", "seed", "scores", "takes")


def _lhotse():
    try:
        import lhotse
    except ImportError:
        raise FishflowError(
            "exporting Lhotse manifests needs the lhotse package: pip install 'fishflow[lhotse]'"
        ) from None
    return lhotse


def languages_in(out: Path) -> list[str]:
    """The languages whose manifests the output folder holds."""
    names = sorted(path.name for path in Path(out).glob("metadata_*.jsonl"))
    return [name.removeprefix("metadata_").removesuffix(".jsonl") for name in names]


def export(
    out: Path, to: Path | None, languages: list[str] | None, cuts: bool, relative: bool
) -> list[Path]:
    """Write the manifests of `languages` (all by default) to `to` (`<out>/lhotse`); returns
    the files written."""
    lhotse = _lhotse()
    layout = Layout(Path(out).resolve())
    found = languages_in(layout.out)
    wanted = languages or found
    missing = sorted(set(wanted) - set(found))
    if not found or missing:
        raise FishflowError(
            f"{layout.out}: no metadata_<lang>.jsonl for {', '.join(missing) or 'any language'} "
            f"(found: {', '.join(found) or 'none'}); is the run finished?"
        )
    to = Path(to) if to else layout.lhotse()
    written = []
    for lang in wanted:
        recordings, supervisions = manifests(lhotse, layout, lang, relative)
        sets = {"recordings": recordings, "supervisions": supervisions}
        if cuts:
            sets["cuts"] = lhotse.CutSet.from_manifests(
                recordings=recordings, supervisions=supervisions
            )
        for kind, manifest in sets.items():
            path = to / f"fishflow_{kind}_{lang}.jsonl.gz"
            with atomic.replacing(path) as tmp:
                manifest.to_file(tmp)
            written.append(path)
        log.info("%s: %d recordings", lang, len(recordings))
    return written


def manifests(lhotse, layout: Layout, lang: str, relative: bool):
    """A language's RecordingSet and SupervisionSet, checked against each other."""
    recordings, supervisions = [], []
    for row in atomic.read_jsonl(layout.metadata(lang)):
        key = f"{lang}.{row['voice']}.{row['id']}"
        wav = layout.out / row["path"]
        # The WAV's header: its sample count, not the manifest's rounded duration. Read with
        # soundfile, not `Recording.from_file`, which probes its audio backends for every file
        # (about ten times slower here; fishflow writes only WAVs).
        info = soundfile.info(wav)
        recording = lhotse.Recording(
            id=key,
            sources=[
                lhotse.AudioSource(
                    type="file",
                    channels=list(range(info.channels)),
                    source=row["path"] if relative else str(wav),
                )
            ],
            sampling_rate=info.samplerate,
            num_samples=info.frames,
            duration=info.frames / info.samplerate,
        )
        recordings.append(recording)
        supervisions.append(
            lhotse.SupervisionSegment(
                id=key,
                recording_id=key,
                start=0.0,
                duration=recording.duration,
                channel=0,
                text=row["text"],
                language=lang,
                speaker=row["voice"],
                custom={name: row[name] for name in CUSTOM_FIELDS if row.get(name) is not None},
            )
        )
    recording_set = lhotse.RecordingSet.from_recordings(recordings)
    supervision_set = lhotse.SupervisionSet.from_segments(supervisions)
    lhotse.validate_recordings_and_supervisions(recording_set, supervision_set)
    return recording_set, supervision_set
