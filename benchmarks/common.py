"""Shared by the benchmark scripts: the machine, generated inputs and configs, timed commands.

Generated inputs live under .cache/benchmarks/ (ignored by git), so a fresh clone rebuilds them.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

from fishflow.planning.plan import GENERATION_KEYS, Plan
from fishflow.speaking.batch import tts_payload

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / ".cache" / "benchmarks"
BIN = Path(sys.executable).parent
VOICES = sorted((REPO / "resources" / "demo" / "voices").glob("*.wav"))
SAMPLE_RATE = 44100
HOP = 2048  # codec samples per semantic token (44.1 kHz, about 21.5 tokens per second)
WORDS = "the quick brown fox jumps over a lazy dog while seven bright stars shine above".split()


def machine() -> str:
    """CPU model, cores, RAM and Python: printed with every figure."""
    cpu = platform.processor() or platform.machine()
    with open("/proc/cpuinfo", encoding="utf-8") as handle:
        names = [line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")]
    if names:
        cpu = names[0]
    with open("/proc/meminfo", encoding="utf-8") as handle:
        kib = int(next(line.split()[1] for line in handle if line.startswith("MemTotal")))
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"{cpu}, {os.cpu_count()} cores, {kib / 2**20:.1f} GiB RAM, "
        f"Python {platform.python_version()}, load average {load}"
    )


def header(title: str) -> None:
    now = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    print(f"# {title}")
    print(f"date:    {now}")
    print(f"machine: {machine()}")
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(flush=True)


def against(seconds: float, target_s: float) -> str:
    """`seconds` as a fraction of an upper-bound target, and whether it is met."""
    verdict = "met" if seconds < target_s else "NOT met"
    return f"{seconds / target_s:.2f} x the {target_s:.0f} s target ({verdict})"


def text(index: int) -> str:
    """A short, varied, deterministic sentence (about 40-60 characters)."""
    words = [WORDS[(index * 7 + k * 3) % len(WORDS)] for k in range(8)]
    return f"Line {index}: " + " ".join(words) + "."


def short_text(index: int) -> str:
    """A few characters: tiny WAVs, for states of many finished items."""
    return f"{index}."


def write_rows(path: Path, count: int, make_text=text) -> Path:
    """`count` rows with ids; reused when already there with the same count."""
    if path.is_file() and sum(1 for _ in path.open("rb")) == count:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        for index in range(count):
            handle.write(json.dumps({"id": f"r{index:07d}", "text": make_text(index)}) + "\n")
    tmp.replace(path)
    return path


def voices(count: int) -> dict:
    """`count` reference voices from the demo voices (copies beyond the three that ship)."""
    return {
        f"voice{i + 1:02d}": {
            "audio": str(VOICES[i % len(VOICES)]),
            "text": "The birch canoe slid on the smooth planks.",
        }
        for i in range(count)
    }


def default_shard_size() -> int:
    schema = yaml.safe_load((REPO / "src/fishflow/planning/config.schema.yaml").read_text())
    return schema["properties"]["shard_size"]["default"]


def write_config(path: Path, config: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=1), encoding="utf-8")
    return path


def parse_set(items: list[str]) -> dict:
    """`a.b=VALUE` pairs (VALUE as JSON, else a string) into a nested dict."""
    overrides: dict = {}
    for item in items:
        key, _, raw = item.partition("=")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        *parents, leaf = key.split(".")
        node = overrides
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    return overrides


def run(command: list, timeout: float, cwd: Path = REPO) -> tuple[float, int, str]:
    """Run `command`; return wall seconds, its peak RSS in MiB and its output (stdout and
    stderr). Raise on failure; kill it (and its process group) on timeout."""
    with tempfile.TemporaryFile("w+", encoding="utf-8") as log:
        start = time.perf_counter()
        proc = subprocess.Popen(
            [str(part) for part in command],
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        timer = threading.Timer(timeout, os.killpg, (proc.pid, signal.SIGKILL))
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        log.seek(0)
        output = log.read()
    if proc.returncode != 0:
        why = f"killed after {timeout:.0f} s" if proc.returncode < 0 else f"exit {proc.returncode}"
        raise RuntimeError(f"{' '.join(map(str, command))} failed ({why}):\n{output[-3000:]}")
    return seconds, usage.ru_maxrss // 1024, output


def snakemake(args: list, timeout: float) -> tuple[float, int, str]:
    """The repository's own snakemake, run from the repository root (profiles/default)."""
    return run([BIN / "snakemake", *args], timeout)


def fresh_dir(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def read_jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def sequential_requests(client, plan: Plan, config: dict, out: Path) -> dict[str, tuple]:
    """The loop users write by hand: every item of the plan, one request at a time, the reference
    re-encoded on every request (`use_memory_cache: off`), each WAV written before the next
    request. Returns voice/id -> (sha256, audio seconds) of 16-bit mono WAVs."""
    params = {key: config["generation"][key] for key in GENERATION_KEYS}
    out.mkdir(parents=True, exist_ok=True)
    wavs = {}
    for key in plan.shard_keys():
        for item in plan.shard(*key).items:
            payload = {**tts_payload(item, item.seed, params), "use_memory_cache": "off"}
            data = client.tts(payload)
            (out / f"{item.voice}-{item.id}.wav").write_bytes(data)
            seconds = (len(data) - 44) / 2 / read_wav_rate(data)
            wavs[f"{item.voice}/{item.id}"] = (hashlib.sha256(data).hexdigest(), seconds)
    return wavs


def read_wav_rate(data: bytes) -> int:
    """The sample rate field of a canonical 44-byte WAV header."""
    return int.from_bytes(data[24:28], "little")


def random_model_validation(max_new_tokens: int) -> dict:
    """Validation for random weights, which never sample their end token: every item is exactly
    max_new_tokens - 1 frames, whatever its text."""
    seconds = (max_new_tokens - 1) * HOP / SAMPLE_RATE
    return {
        "min_duration_s": seconds - 0.01,
        "max_duration_s": seconds + 0.01,
        "min_seconds_per_char": 0.0,
        "retries": 0,
    }
