"""`fishflow status` on a run of 100k items: the time it takes to answer (target: under 2 s).

    .venv/bin/python benchmarks/status_100k.py [--rows 20000] [--voices 5] [--repeats 3]

The output folder is SYNTHETIC, written by this script the way generation jobs write it, without
any audio being generated: 20k texts x 5 voices = 100k items in shards of 500 (the default),
a run in progress. 60% of the shards are finished (journal, tally, batch and servers records:
4 GPUs per job); two batches are running (half of each shard journaled in the last 10 minutes,
their WAVs in place as small files of the journaled size, a running record each); a few items
failed; the rest is to do. Finished shards get no WAV files: status reads their tallies, as it
does on a real run (the tally is valid while the journal is unchanged).

Each repeat is one fresh `fishflow status <out>` process (text, then `--json`): what a user
waits for, Python start-up and imports included.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import common

from fishflow import atomic
from fishflow.layout import Layout
from fishflow.planning.config import validate_config
from fishflow.planning.plan import Plan
from fishflow.planning.summary import write_tally
from fishflow.status import record

TARGET_S = 2.0
FISHFLOW = str(Path(sys.executable).parent / "fishflow")
WAV_BYTES = 44 + 2 * 22050  # a second of 16-bit mono audio at 22.05 kHz


def item_record(plan: Plan, lang: str, voice: str, row, finished_at: float, ok: bool) -> dict:
    maker = plan.item_maker(lang, voice)
    common_fields = {
        "id": row.id,
        "lang": lang,
        "voice": voice,
        "text": row.text,
        "fingerprint": maker.fingerprint(row.id, row.text),
        "backend": "demo",
        "seed": 1,
        "attempts": 1,
        "finished_at": finished_at,
    }
    if not ok:
        return {**common_fields, "status": "failed", "reason": "http_error", "last_error": "503"}
    return {
        **common_fields,
        "status": "ok",
        "path": f"audio/{lang}/{voice}/{row.id}.wav",
        "duration_s": 1.0,
        "sample_rate": 22050,
        "bytes": WAV_BYTES,
        "sha256": "0" * 64,
        "generation_s": 0.5,
    }


def build(run_dir: Path, rows: int, voices: int) -> Path:
    inputs = common.write_rows(common.CACHE / "inputs" / f"en-{rows}.jsonl", rows)
    config = validate_config(
        {
            "output_dir": str(run_dir / "out"),
            "inputs": {"en": str(inputs)},
            "voices": common.voices(voices),
        }
    )
    plan = Plan(config)
    layout = Layout(plan.out)
    now = time.time()
    batches = plan.batch_keys()
    finished = batches[: int(len(batches) * 0.6)]
    running = batches[len(finished) : len(finished) + 2]
    for lang, batch in finished + running:
        is_running = (lang, batch) in running
        for voice, shard in plan.batch_shards(lang, batch):
            shard_rows = plan.shard_rows(lang, voice, shard)
            if is_running:
                shard_rows = shard_rows[: len(shard_rows) // 2]
                times = [now - 600 + 600 * i / len(shard_rows) for i in range(len(shard_rows))]
            else:
                times = [now - 7200 + i for i in range(len(shard_rows))]
            records = [
                item_record(plan, lang, voice, row, at, ok=i % 250 != 7)
                for i, (row, at) in enumerate(zip(shard_rows, times, strict=True))
            ]
            journal = layout.journal(lang, voice, shard)
            atomic.write_jsonl(journal, records)
            os.utime(journal, (times[-1], times[-1]))  # last written when its last item was
            done = [r for r in records if r["status"] == "ok"]
            if is_running:
                for r in done:
                    wav = layout.out / r["path"]
                    wav.parent.mkdir(parents=True, exist_ok=True)
                    wav.write_bytes(b"\0" * WAV_BYTES)
            else:
                fingerprint = plan.shard_fingerprint(lang, voice, shard)
                failed = len(records) - len(done)
                write_tally(
                    layout.tally(lang, voice, shard),
                    fingerprint,
                    journal,
                    len(done),
                    failed,
                    audio_s=float(len(done)),
                )
        started = now - (300 if is_running else 7200)
        if is_running:
            atomic.write_json(
                layout.running_record(lang, batch),
                {
                    "lang": lang,
                    "batch": batch,
                    "host": socket.gethostname(),
                    "pid": os.getpid(),
                    "slurm_job_id": None,
                    "started_at": started,
                    "gpus": 4,
                },
            )
            continue
        atomic.write_jsonl(layout.batch_record(lang, batch), [])
        atomic.write_json(
            layout.servers_record(lang, batch),
            {
                "schema": "fishflow-servers/2",
                "lang": lang,
                "batch": batch,
                "started_at": started,
                "finished_at": started + 1800,
                "servers": {"cuda_visible_devices": "0,1,2,3"},
            },
        )
    log = run_dir / ".snakemake" / "log" / "run.snakemake.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("Building DAG of jobs...\n")
    record.write(layout.out, config, run_dir, str(log))
    # The process that "runs" the workflow is this benchmark: alive while status looks.
    return layout.out


def timed(args: list[str]) -> tuple[float, str]:
    started = time.perf_counter()
    result = subprocess.run(args, capture_output=True, text=True, timeout=120)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{args} failed: {result.stderr}")
    return seconds, result.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--voices", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    common.header("fishflow status on a run of 100k items (synthetic output folder)")
    run_dir = common.fresh_dir(common.CACHE / "status")
    started = time.perf_counter()
    out = build(run_dir, args.rows, args.voices)
    print(
        f"built {args.rows} texts x {args.voices} voices in {time.perf_counter() - started:.1f} s"
    )
    text_s, json_s = [], []
    for _ in range(args.repeats):
        seconds, text = timed([FISHFLOW, "status", str(out)])
        text_s.append(seconds)
        seconds, data = timed([FISHFLOW, "status", "--json", str(out)])
        json_s.append(seconds)
    status = json.loads(data)
    print(text)
    print(f"\nitems {status['items']}")
    for name, times in (("status", text_s), ("status --json", json_s)):
        median = statistics.median(times)
        print(
            f"{name}: median {median:.2f} s of {args.repeats} (min {min(times):.2f}, "
            f"max {max(times):.2f}) = {common.against(median, TARGET_S)}"
        )


if __name__ == "__main__":
    main()
