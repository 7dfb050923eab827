"""Pipeline overhead: fishflow against a bare sequential HTTP loop, same demo server, same texts.

    .venv/bin/python benchmarks/overhead.py [--items 2000] [--repeats 3] [--set KEY=VALUE ...]

Both sides start the demo server in zero-cost mode (`engine: tone`), register the voices over
HTTP and write one WAV per item; the bare loop POSTs /v1/tts for each item in turn with
`requests`, fishflow runs the real `snakemake` command with its defaults (validation, manifests,
summary and report included). Runs alternate, to share any drift in machine load. With
--latency-items > 0 the comparison is repeated with `latency_s` per request (GPU time stand-in).
Target: fishflow adds at most 3 % wall time.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import common
import msgpack
import requests

from fishflow.planning.config import merged
from fishflow.serving.replicas import free_loopback_port

TARGET = 0.03
LANG = "en"
GENERATION = {  # the schema's defaults, written out as a user of the bare API would
    "max_new_tokens": 1024,
    "temperature": 0.8,
    "top_p": 0.8,
    "repetition_penalty": 1.1,
    "chunk_length": 200,
    "normalize": True,
}


@contextlib.contextmanager
def demo_server(workdir: Path, latency_s: float):
    """The demo server, as fishflow's demo backend starts it; stopped (killed if need be)."""
    port = free_loopback_port()
    log = (workdir / "server.log").open("w")
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "fishflow.serving.demo_server", "--host", "127.0.0.1"),
            *("--port", str(port), "--workdir", str(workdir)),
            *("--engine", "tone", "--latency-s", str(latency_s)),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(requests.ConnectionError):
                if requests.get(f"{url}/v1/health", timeout=5).ok:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"demo server did not start: see {workdir / 'server.log'}")
            time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def bare_loop(run_dir: Path, rows: list[dict], voices: dict, latency_s: float) -> float:
    """Wall seconds for: start the server, add the voices, one POST /v1/tts per item."""
    start = time.perf_counter()
    with demo_server(common.fresh_dir(run_dir / "server"), latency_s) as url:
        session = requests.Session()
        session.trust_env = False  # the server is local: no proxy
        for voice, spec in voices.items():
            audio = Path(spec["audio"])
            response = session.post(
                f"{url}/v1/references/add",
                data={"id": voice, "text": spec["text"]},
                files={"audio": (audio.name, audio.read_bytes())},
                timeout=60,
            )
            response.raise_for_status()
        for voice in voices:
            folder = run_dir / "audio" / LANG / voice
            folder.mkdir(parents=True)
            for row in rows:
                payload = {"text": row["text"], "reference_id": voice, "seed": 42, **GENERATION}
                response = session.post(
                    f"{url}/v1/tts",
                    data=msgpack.packb(payload),
                    headers={"Content-Type": "application/msgpack"},
                    timeout=300,
                )
                response.raise_for_status()
                (folder / f"{row['id']}.wav").write_bytes(response.content)
    return time.perf_counter() - start


def fishflow(run_dir: Path, config: dict, cores: int, timeout: float) -> float:
    config = merged(config, {"output_dir": str(run_dir / "out")})
    config_file = common.write_config(run_dir / "config.json", config)
    seconds, _, _ = common.snakemake(
        ["-s", common.REPO / "Snakefile", "-d", run_dir, "--configfile", config_file]
        + ["--cores", str(cores)],
        timeout=timeout,
    )
    return seconds


def wav_count(run_dir: Path) -> int:
    return sum(1 for _ in run_dir.rglob("audio/*/*/*.wav"))


def compare(label: str, items: int, voice_count: int, latency_s: float, args) -> None:
    rows_per_voice = items // voice_count
    inputs = common.write_rows(
        common.CACHE / "inputs" / f"{LANG}-{rows_per_voice}.jsonl", rows_per_voice
    )
    rows = common.read_jsonl(inputs)
    voices = common.voices(voice_count)
    config = merged(
        {
            "inputs": {LANG: str(inputs)},
            "voices": voices,
            "server": {"backend": "demo", "demo": {"engine": "tone", "latency_s": latency_s}},
        },
        common.parse_set(args.set),
    )
    total = rows_per_voice * voice_count
    print(
        f"## {label}: {total} items ({rows_per_voice} texts x {voice_count} voices), "
        f"latency_s {latency_s}, {args.repeats} runs each",
        flush=True,
    )
    times: dict[str, list[float]] = {"bare": [], "fishflow": []}
    base = common.CACHE / "overhead"
    for run in range(args.repeats):
        for side in ("bare", "fishflow"):
            run_dir = common.fresh_dir(base / side)
            if side == "bare":
                seconds = bare_loop(run_dir, rows, voices, latency_s)
            else:
                seconds = fishflow(run_dir, config, args.cores, args.timeout)
            if wav_count(run_dir) != total:
                raise RuntimeError(f"{side}: {wav_count(run_dir)} WAVs, expected {total}")
            times[side].append(seconds)
            print(f"run {run + 1} {side:8s} {seconds:8.2f} s", flush=True)
    shutil.rmtree(base, ignore_errors=True)
    bare, ours = (statistics.median(times[k]) for k in ("bare", "fishflow"))
    ratio = ours / bare
    verdict = "met" if ratio - 1 <= TARGET else "NOT met"
    print(
        f"bare loop: min {min(times['bare']):.2f} s, median {bare:.2f} s "
        f"({1000 * bare / total:.2f} ms/item)"
    )
    print(
        f"fishflow:  min {min(times['fishflow']):.2f} s, median {ours:.2f} s "
        f"({1000 * ours / total:.2f} ms/item)"
    )
    print(
        f"ratio fishflow/bare (medians): {ratio:.3f} -> overhead {100 * (ratio - 1):+.1f} % "
        f"(target <= {100 * TARGET:.0f} %: {verdict})\n",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=2000, help="items at latency 0")
    parser.add_argument("--voices", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--latency-s", type=float, default=0.05)
    parser.add_argument("--latency-items", type=int, default=600, help="0: skip that comparison")
    parser.add_argument("--cores", type=int, default=os.cpu_count())
    parser.add_argument("--timeout", type=float, default=900, help="per fishflow run, seconds")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra fishflow config, e.g. --set server.replicas=2 (VALUE parsed as JSON)",
    )
    args = parser.parse_args()
    common.header("fishflow pipeline overhead vs a bare HTTP loop")
    compare("zero-cost server", args.items, args.voices, 0.0, args)
    if args.latency_items:
        compare("with per-request latency", args.latency_items, args.voices, args.latency_s, args)


if __name__ == "__main__":
    main()
