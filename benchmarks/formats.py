"""Output formats at scale: the `dataset` rule's work (card + per-language rows for `datasets`)
and `fishflow export lhotse`, on a synthetic finished run.

    .venv/bin/python benchmarks/formats.py [--items 10000 100000] [--langs 2] [--voices 5]

The finished run is synthetic, built in .cache/benchmarks/formats/<items>/: manifests as the
merge rule writes them (every field, plus the quality judge's `scores` and `takes` filled in as
issue 13's contract has them), and per item a hard link to its voice's 0.5 s WAV at its layout path
(so Lhotse reads a real header per item, from the page cache; a cold file system is slower).
Each step runs as its own process, timed with its imports; the `dataset` rule's Snakemake
overhead is not included.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys

import common
import numpy as np
import soundfile

from fishflow import atomic
from fishflow.layout import Layout
from fishflow.merging.merge import write_summary

WRITE_DATASET = (
    "import sys; from pathlib import Path; from fishflow.formats.huggingface import write_dataset;"
    "out = Path(sys.argv[1]);"
    "write_dataset(out, sys.argv[2:], out / 'summary.json', 'f' * 64, 'unknown')"
)


def row(lang: str, voice: str, index: int) -> dict:
    item = f"r{index:07d}"
    text = common.text(index)
    return {
        "id": item, "lang": lang, "voice": voice, "text": text,
        "path": f"audio/{lang}/{voice}/{item}.wav", "duration_s": 0.5, "sample_rate": 44100,
        "bytes": 44144, "sha256": "0" * 64, "seed": index, "generation_s": 0.2, "attempts": 1,
        "parameters": {"temperature": 0.7, "top_p": 0.7, "repetition_penalty": 1.2},
        "backend": "demo/tone", "takes": 1,
        "scores": {
            "wer": 0.0, "cer": 0.01, "transcript": text, "repetition": False, "similarity": 0.8,
            "lead_silence_s": 0.1, "trail_silence_s": 0.1, "speech_fraction": 0.8, "mos": None,
            "judge_s": {"vad": 0.01, "asr": 0.2, "speaker": 0.05}, "gate": None,
        },
    }  # fmt: skip


def build(items: int, langs: list[str], voices: int) -> Layout:
    layout = Layout(common.CACHE / "formats" / str(items) / "out")
    marker = layout.out.parent / "built"
    if marker.is_file():
        return layout
    common.fresh_dir(layout.out)
    per_voice = items // (len(langs) * voices)
    for lang in langs:
        rows = []
        for v in range(voices):
            voice = f"voice{v + 1:02d}"
            layout.wav(lang, voice, "x").parent.mkdir(parents=True)
            # One WAV per voice: a file system allows only so many links to one file (ext4: 65k).
            source = layout.out.parent / f"{lang}-{voice}.wav"
            soundfile.write(source, np.zeros(22050, dtype=np.int16), 44100, subtype="PCM_16")
            for index in range(per_voice):
                rows.append(row(lang, voice, index))
                os.link(source, layout.out / rows[-1]["path"])
        atomic.write_jsonl(layout.metadata(lang), rows)
        atomic.write_jsonl(layout.failed(lang), [])
    write_summary(
        [layout.metadata(lang) for lang in langs],
        [layout.failed(lang) for lang in langs],
        layout.summary(),
    )
    marker.touch()
    return layout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--langs", type=int, default=2)
    parser.add_argument("--voices", type=int, default=5)
    args = parser.parse_args()
    common.header("fishflow output formats (dataset card + rows, export lhotse)")
    langs = ["de", "en", "fr", "ja", "zh"][: args.langs]
    python = sys.executable
    # CPU seconds (of the step's process) beside wall seconds: on a shared machine they vary less.
    print("| items | step | wall s | CPU s | peak MiB | output MiB |")
    print("| ---: | --- | ---: | ---: | ---: | ---: |")
    for items in args.items:
        layout = build(items, langs, args.voices)
        out = layout.out
        export = [python, "-m", "fishflow.cli", "export", "lhotse", out]
        steps = {
            "dataset rule (card + rows)": [python, "-c", WRITE_DATASET, out, *langs],
            "export lhotse": export,
            "export lhotse --cuts": [*export, "--cuts"],
        }
        for step, command in steps.items():
            shutil.rmtree(layout.lhotse(), ignore_errors=True)
            before = os.times()
            seconds, peak, _ = common.run(command, timeout=3600)
            after = os.times()
            cpu = sum(after[2:4]) - sum(before[2:4])  # children's user + system
            if step.startswith("dataset"):
                written = [layout.dataset_card()] + [layout.dataset_metadata(x) for x in langs]
            else:
                written = list(layout.lhotse().glob("*.jsonl.gz"))
            size = sum(path.stat().st_size for path in written) / 2**20
            figures = f"{seconds:.1f} | {cpu:.1f} | {peak} | {size:.1f}"
            print(f"| {items} | {step} | {figures} |", flush=True)


if __name__ == "__main__":
    main()
