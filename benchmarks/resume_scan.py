"""Resume scan: how long `snakemake -n` takes to decide that 100k finished items need nothing.

    .venv/bin/python benchmarks/resume_scan.py [--rows 20000] [--voices 5] [--repeats 3]

The finished state is what the real workflow leaves: it is built once by running fishflow itself
(demo server, zero-cost `tone` engine, `latency_s: 0`, very short texts for small WAVs) into
.cache/benchmarks/resume/, and rebuilt when missing or made with another config (--rebuild
forces it). Then each `snakemake -n` must print "Nothing to be done" and a plan summary with
0 items to do. Target: under 2 s.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics

import common

TARGET_S = 2.0


def build(state, config: dict, cores: int, timeout: float, attempts: int = 2) -> None:
    """Run the workflow into `state` until it is finished; a new config starts it afresh, an
    interrupted build resumes (only the missing items are generated)."""
    marker, config_file = state / "built.json", state / "config.json"
    if marker.is_file() and json.loads(marker.read_text()) == config:
        print(f"finished state: reused {state}", flush=True)
        return
    if not config_file.is_file() or json.loads(config_file.read_text()) != config:
        shutil.rmtree(state, ignore_errors=True)
        common.write_config(config_file, config)
    print(f"finished state: building {state} with the real workflow ...", flush=True)
    args = ["-s", common.REPO / "Snakefile", "-d", state, "--configfile", config_file]
    for attempt in range(1, attempts + 1):
        try:
            seconds, _, _ = common.snakemake([*args, "--cores", str(cores)], timeout=timeout)
            break
        except RuntimeError as exc:
            if attempt == attempts:
                raise
            print(f"finished state: attempt {attempt} failed, resuming: {str(exc)[-500:]}")
            common.snakemake([*args, "--unlock"], timeout=120)
    items = sum(1 for _ in (state / "out" / "audio").rglob("*.wav"))
    print(f"finished state: {items} WAVs; the last run took {seconds:.0f} s", flush=True)
    marker.write_text(json.dumps(config))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--voices", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--timeout", type=float, default=3600, help="for the build, seconds")
    args = parser.parse_args()
    common.header("fishflow resume scan (snakemake -n on a finished run)")
    inputs = common.write_rows(
        common.CACHE / "inputs" / f"en-short-{args.rows}.jsonl", args.rows, common.short_text
    )
    state = common.CACHE / "resume" / f"{args.rows}x{args.voices}"
    if args.rebuild:
        shutil.rmtree(state, ignore_errors=True)
    config = {
        "output_dir": str(state / "out"),
        "inputs": {"en": str(inputs)},
        "voices": common.voices(args.voices),
        "shard_size": common.default_shard_size(),  # a new default means a new state
        "server": {"backend": "demo", "demo": {"engine": "tone", "latency_s": 0}},
    }
    build(state, config, args.cores, args.timeout)
    items = args.rows * args.voices
    print(f"\nscan of {items} finished items, shard_size {config['shard_size']}")
    times = []
    for run in range(args.repeats):
        seconds, peak, output = common.snakemake(
            ["-s", common.REPO / "Snakefile", "-d", state, "--configfile", state / "config.json"]
            + ["-n"],
            timeout=600,
        )
        summary = re.search(r"items: (\d+) total, (\d+) done, (\d+) to do", output)
        if "Nothing to be done" not in output or not summary or summary[3] != "0":
            raise RuntimeError(f"the finished state is not finished (stale?):\n{output[-3000:]}")
        times.append(seconds)
        print(f"run {run + 1}: {seconds:.2f} s, peak {peak} MiB ({summary[0]})", flush=True)
    median = statistics.median(times)
    print(
        f"\nresume scan of {items} items: min {min(times):.2f} s, median {median:.2f} s "
        f"= {common.against(median, TARGET_S)}"
    )


if __name__ == "__main__":
    main()
