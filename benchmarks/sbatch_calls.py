"""sbatch calls: the real workflow on the Slurm test cluster, with and without job arrays.

    .venv/bin/python benchmarks/sbatch_calls.py [--batches 100] [--timeout 600]

Starts the single-node test cluster (tests/tooling/slurm_cluster.py; needs root the first time),
then runs the workflow with a test-sized copy of profiles/slurm (the batch job's CPUs and memory
as in tests/slurm/conftest.py) on `--batches` batches: that many rows, one voice, shard_size 1,
shards_per_job 1, the demo server's zero-cost `tone` engine. Once with the profile's
`slurm-array-jobs: speak`, once with a copy of the profile without it. An `sbatch` wrapper first
on PATH logs every call and execs the real one.

Each job finds its items done: the finished state is built once, locally, as ONE batch (one
server start) into .cache/benchmarks/sbatch_calls/; shards do not depend on shards_per_job, so
with shards_per_job 1 every one of the --batches jobs only re-checks its shard's journal and WAV
and writes its records, without starting a server. Before each measured run the batch records
(and the manifests, summary and report made from them) are deleted, so that Snakemake runs every
batch job again.

On the 2-CPU test node (two batch jobs at a time, each a Snakemake job step of several seconds)
100 batches take about 10 minutes per run; --batches 30 keeps both runs near 8 minutes in all.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import common
import yaml

sys.path.insert(0, str(common.REPO))
from tests.tooling.slurm_cluster import ensure_cluster  # noqa: E402

WRAPPER = """#!/bin/sh
echo "$(date +%s.%N) $*" >> {log}
exec {real} "$@"
"""


def test_profile(directory: Path, arrays: bool) -> Path:
    """profiles/slurm, sized for the 2-CPU test node as the Slurm tests size it."""
    profile = yaml.safe_load((common.REPO / "profiles" / "slurm" / "config.yaml").read_text())
    profile["set-resources"]["speak"].update(cpus_per_task=1, mem_mb=1000)
    profile["slurm-init-seconds-before-status-checks"] = 1
    profile["latency-wait"] = 10
    if not arrays:
        del profile["slurm-array-jobs"]
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.yaml").write_text(yaml.safe_dump(profile, sort_keys=False))
    return directory


def slurm_jobs(workdir: Path, since: str) -> list[str]:
    out = subprocess.run(
        ["sacct", "-X", "-n", "-P", "-S", since, "-o", "JobID,WorkDir"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return [
        job
        for job, _, where in (line.partition("|") for line in out.splitlines())
        if where == str(workdir)
    ]


def forget_batches(out: Path) -> None:
    """Delete the batch records and what is made from them (Snakemake does not remake a missing
    intermediate file for targets that exist): every batch job runs again, finding its items
    done."""
    shutil.rmtree(out / "work" / "batches", ignore_errors=True)
    shutil.rmtree(out / "report", ignore_errors=True)
    for made in [*out.glob("metadata_*.jsonl"), *out.glob("failed_*.jsonl"), out / "summary.json"]:
        made.unlink(missing_ok=True)


def measure(state: Path, profile: Path, bin_dir: Path, timeout: float) -> dict:
    forget_batches(state / "out")
    calls = bin_dir / "calls.log"
    calls.write_text("")
    since = time.strftime("%Y-%m-%dT%H:%M:%S")
    command = [common.BIN / "snakemake", "-s", common.REPO / "Snakefile", "-d", state]
    command += ["--configfile", state / "config.json", "--profile", profile]
    path = os.environ["PATH"]
    os.environ["PATH"] = os.pathsep.join([str(bin_dir), str(common.BIN), path])  # the wrapper
    try:
        seconds, _, output = common.run(command, timeout)
    finally:
        os.environ["PATH"] = path
    if "Nothing to be done" in output or "items: " not in output:
        raise RuntimeError(f"no batch job ran:\n{output[-3000:]}")
    if "starting demo server" in "".join(
        p.read_text() for p in (state / "out" / "logs" / "speak").rglob("*.log")
    ):
        raise RuntimeError("a job started a server: the finished state is not finished")
    return {
        "sbatch calls": len(calls.read_text().splitlines()),
        "Slurm jobs": len(slurm_jobs(state.resolve(), since)),
        "wall s": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument("--timeout", type=float, default=600, help="per run, seconds")
    args = parser.parse_args()
    common.header("fishflow sbatch calls per run, with and without Slurm job arrays")
    cluster = ensure_cluster()
    os.environ["FISHFLOW_SLURM_ACCOUNT"] = cluster.account
    os.environ["FISHFLOW_SLURM_PARTITION"] = cluster.partition

    root = common.CACHE / "sbatch_calls"
    state = root / f"{args.batches}"
    inputs = common.write_rows(
        common.CACHE / "inputs" / f"en-short-{args.batches}.jsonl", args.batches, common.short_text
    )
    config = {
        "output_dir": str(state / "out"),
        "inputs": {"en": str(inputs)},
        "voices": common.voices(1),
        "shard_size": 1,
        "shards_per_job": args.batches,  # the build: one batch, one server start
        "server": {"backend": "demo", "demo": {"engine": "tone", "latency_s": 0}},
    }
    built = state / "built.yaml"
    if not built.is_file() or yaml.safe_load(built.read_text()) != config:
        shutil.rmtree(state, ignore_errors=True)
        common.write_config(state / "config.json", config)
        print(f"finished state: building {state} locally as one batch ...", flush=True)
        seconds, _, _ = common.snakemake(
            ["-s", common.REPO / "Snakefile", "-d", state, "--configfile", state / "config.json"]
            + ["--cores", "2"],
            timeout=args.timeout,
        )
        print(f"finished state: built in {seconds:.0f} s", flush=True)
        built.write_text(yaml.safe_dump(config))
    else:
        print(f"finished state: reused {state}", flush=True)
    common.write_config(state / "config.json", {**config, "shards_per_job": 1})

    bin_dir = common.fresh_dir(root / "bin")
    wrapper = bin_dir / "sbatch"
    real = shutil.which("sbatch")
    wrapper.write_text(WRAPPER.format(log=bin_dir / "calls.log", real=real))
    wrapper.chmod(0o755)

    print(f"\n{args.batches} batches (shard_size 1, shards_per_job 1, one voice), test cluster")
    results = {}
    for name, arrays in (("job arrays (the profile)", True), ("one sbatch per job", False)):
        profile = test_profile(root / ("profile-arrays" if arrays else "profile-plain"), arrays)
        results[name] = measure(state, profile, bin_dir, args.timeout)
        figures = ", ".join(
            f"{key} {value:.0f}" if key == "wall s" else f"{key} {value}"
            for key, value in results[name].items()
        )
        print(f"{name}: {figures}", flush=True)
    arrays, plain = results.values()
    print(
        f"\nratio (one sbatch per job / job arrays): sbatch calls "
        f"{plain['sbatch calls'] / arrays['sbatch calls']:.0f} x, wall time "
        f"{plain['wall s'] / arrays['wall s']:.2f} x"
    )


if __name__ == "__main__":
    main()
