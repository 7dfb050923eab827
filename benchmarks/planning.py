"""Planning at scale: `snakemake -n` for 10k, 100k and 1M texts x 5 voices, per shard size.

    .venv/bin/python benchmarks/planning.py [--rows 10000 100000 1000000] [--shard-sizes 100 500]

Each line is one fresh `snakemake -n` (config and input validation, the plan, the plan summary
and Snakemake's DAG), with its wall time, peak memory and the number of Snakemake jobs it
plans. Target: 1M texts x 5 voices in under 20 s with the default shard size.
"""

from __future__ import annotations

import argparse
import re

import common

TARGET_S = 20.0
TARGET_ROWS = 1_000_000


def planned_jobs(output: str) -> str:
    """The total of Snakemake's "Job stats" table."""
    match = re.search(r"^total\s+(\d+)\s*$", output, re.MULTILINE)
    return match[1] if match else "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--voices", type=int, default=5)
    parser.add_argument("--shard-sizes", type=int, nargs="+", help="default: 100 and the default")
    parser.add_argument("--timeout", type=float, default=1200, help="per run, seconds")
    args = parser.parse_args()
    default = common.default_shard_size()
    sizes = args.shard_sizes or sorted({100, default})
    common.header("fishflow planning at scale (snakemake -n)")
    print(f"default shard_size {default}, shards_per_job default, voice_assignment all\n")
    print(
        f"{'texts':>9} {'voices':>6} {'items':>9} {'shard':>5} {'shards':>7} "
        f"{'seconds':>8} {'peak MiB':>8} {'ms/shard':>8} {'jobs':>7}",
        flush=True,
    )
    results = {}
    for rows in args.rows:
        inputs = common.write_rows(common.CACHE / "inputs" / f"en-{rows}.jsonl", rows)
        for size in sizes:
            run_dir = common.fresh_dir(common.CACHE / "planning")
            config = common.write_config(
                run_dir / "config.json",
                {
                    "output_dir": str(run_dir / "out"),
                    "inputs": {"en": str(inputs)},
                    "voices": common.voices(args.voices),
                    "shard_size": size,
                },
            )
            seconds, peak, output = common.snakemake(
                ["-s", common.REPO / "Snakefile", "-d", run_dir, "--configfile", config, "-n"],
                timeout=args.timeout,
            )
            shards = args.voices * -(-rows // size)
            results[(rows, size)] = seconds
            print(
                f"{rows:>9} {args.voices:>6} {rows * args.voices:>9} {size:>5} {shards:>7} "
                f"{seconds:>8.1f} {peak:>8} {1000 * seconds / shards:>8.2f} "
                f"{planned_jobs(output):>7}",
                flush=True,
            )
    if (TARGET_ROWS, default) in results:
        seconds = results[(TARGET_ROWS, default)]
        print(
            f"\n1M texts x {args.voices} voices, default shard_size {default}: {seconds:.1f} s "
            f"= {common.against(seconds, TARGET_S)}"
        )


if __name__ == "__main__":
    main()
