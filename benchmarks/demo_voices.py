"""Are the demo's voices told apart? Speaker similarity (Resemblyzer GE2E) on a real demo run.

    .venv/bin/python benchmarks/demo_voices.py [--configfile config/config.yaml] [--results DIR]

Runs `snakemake --configfile CONFIG` into a temporary output folder (or measures the finished
run in --results DIR, made with that config), embeds every spoken item and every reference of the
config, and prints: the share of items closer to their own reference than to every other
reference (chance: 1 / voices), the mean similarity to the own and to the other references, and
the voice-to-voice cosine similarity of the generated audio (each voice's mean embedding).
Target: the large majority of items closest to their own reference, voices clearly apart.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import common
import numpy as np
import soundfile as sf
import yaml
from resemblyzer import VoiceEncoder, preprocess_wav


def embed(encoder: VoiceEncoder, path: Path) -> np.ndarray:
    samples, rate = sf.read(path, dtype="float32")
    return encoder.embed_utterance(preprocess_wav(samples, source_sr=rate))


def unit(vector: np.ndarray) -> np.ndarray:
    return vector / np.linalg.norm(vector)


def run_demo(configfile: Path, out: Path) -> None:
    config = yaml.safe_load(configfile.read_text(encoding="utf-8"))
    config["output_dir"] = str(out)
    derived = common.write_config(out.parent / "config.json", config)
    seconds, _, _ = common.snakemake(["--configfile", derived], timeout=3600)
    print(f"snakemake --configfile {configfile} (output_dir {out}): {seconds:.1f} s")


def measure(configfile: Path, results: Path) -> None:
    config = yaml.safe_load(configfile.read_text(encoding="utf-8"))
    voices = sorted(config["voices"])
    encoder = VoiceEncoder("cpu", verbose=False)
    start = time.perf_counter()
    refs = {v: unit(embed(encoder, common.REPO / config["voices"][v]["audio"])) for v in voices}
    items = [
        (row["lang"], row["voice"], unit(embed(encoder, results / row["path"])))
        for path in sorted(results.glob("metadata_*.jsonl"))
        for row in common.read_jsonl(path)
    ]
    print(
        f"embedded {len(refs)} references, {len(items)} items in "
        f"{time.perf_counter() - start:.1f} s (the first embedding warms librosa up)"
    )

    closest: dict[str, list[bool]] = {}
    own, other = [], []
    for lang, voice, vector in items:
        sims = {v: float(vector @ ref) for v, ref in refs.items()}
        best = max(sims, key=sims.get)
        closest.setdefault(lang, []).append(best == voice)
        own.append(sims[voice])
        other += [s for v, s in sims.items() if v != voice]
    hits = [hit for lang_hits in closest.values() for hit in lang_hits]
    print(
        f"\nitems closest to their own reference: {sum(hits)}/{len(hits)} = "
        f"{100 * sum(hits) / len(hits):.0f} % (chance {100 / len(voices):.0f} %)"
    )
    for lang, lang_hits in sorted(closest.items()):
        print(f"  {lang}: {sum(lang_hits)}/{len(lang_hits)}")
    print(
        f"similarity to the own reference: mean {np.mean(own):.3f}; "
        f"to the other references: mean {np.mean(other):.3f}"
    )

    centroids = {
        v: unit(np.mean([vec for _, voice, vec in items if voice == v], axis=0)) for v in voices
    }
    print("\nvoice-to-voice cosine similarity of the generated audio (mean embeddings):")
    print("        " + " ".join(f"{v:>8}" for v in voices))
    for a in voices:
        print(f"{a:>8}" + " ".join(f"{float(centroids[a] @ centroids[b]):8.3f}" for b in voices))
    off = [float(centroids[a] @ centroids[b]) for a in voices for b in voices if a < b]
    print(f"most similar pair of voices: {max(off):.3f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configfile", type=Path, default=Path("config/config.yaml"))
    parser.add_argument("--results", type=Path, help="a finished run made with --configfile")
    args = parser.parse_args(argv)
    common.header(f"demo voices, {args.configfile}")
    configfile = args.configfile.resolve()
    if args.results:
        measure(configfile, args.results.resolve())
        return 0
    with tempfile.TemporaryDirectory(prefix="demo-voices-") as tmp:
        out = Path(tmp) / "results"
        run_demo(configfile, out)
        measure(configfile, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
