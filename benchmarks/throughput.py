"""Throughput: fishflow against the sequential client, same server code and inputs, one run.

    .venv/bin/python benchmarks/throughput.py [--rows 24] [--replicas 2] [--max-new-tokens 48]

The sequential client is what users run today: one server, one request at a time, the reference
re-encoded on every request (`use_memory_cache: off`), each WAV written before the next request.
fishflow runs the whole workflow (`snakemake`): `--replicas` servers in the job, two requests in
flight per replica, the voice cache on, checking and writing overlapped with generation.

Backend: the real fish-speech 0.1.0 server on CPU with tiny random checkpoints (built and cached
by tests/tooling/fish_speech_env.py; the first run builds the server environment, minutes).
Both sides use fishflow's per-item seeds and parameters and produce the same amount of audio
(checked). Their WAVs are byte-identical only where the server ran with the same number of CPU
threads: Snakemake gives each server OMP_NUM_THREADS = its rule's threads (1), the sequential
client's server uses every core, and the float reduction order changes the sampled tokens.
Printed: audio seconds per wall second (what becomes audio per GPU-hour on a GPU), codec tokens
per second, and fishflow / sequential.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common  # noqa: E402
from fishflow.planning.config import validate_config  # noqa: E402
from fishflow.planning.plan import Plan  # noqa: E402
from fishflow.planning.voices import load_voices  # noqa: E402
from fishflow.serving.client import FishSpeechClient  # noqa: E402
from fishflow.serving.registration import register_voices  # noqa: E402
from tests.tooling import fish_speech_env  # noqa: E402

SAMPLE_RATE, HOP = common.SAMPLE_RATE, common.HOP
LANG = "en"
SEED = 42
TIMEOUT_S = 1800


def config(root: Path, rows: Path, voices: dict, checkpoints: Path, args) -> dict:
    return {
        "output_dir": str(root / "fishflow"),
        "inputs": {LANG: str(rows)},
        "voices": voices,
        "generation": {"max_new_tokens": args.max_new_tokens, "seed": SEED},
        "validation": common.random_model_validation(args.max_new_tokens),
        "server": {
            "backend": "fish-speech",
            "replicas": args.replicas,
            "max_in_flight": args.max_in_flight,
            "startup_timeout_s": 300,
            "fish_speech": {
                "python": str(fish_speech_env.ensure_env()),
                "checkpoint_dir": str(checkpoints),
                "decoder_config_name": fish_speech_env.CODEC_CONFIG_NAME,
                "device": "cpu",
            },
        },
    }


def run_fishflow(cfg: dict, path: Path) -> dict:
    common.write_config(path, cfg)
    wall, _, _ = common.snakemake(["--configfile", path, "--cores", "all"], TIMEOUT_S)
    out = Path(cfg["output_dir"])
    timing = json.loads((out / "report" / "report.json").read_text())["timing"]
    # From the first server ready (the generation jobs' servers records) to the last WAV
    # written: server start-up excluded, as on the sequential side.
    records = [json.loads(p.read_text()) for p in out.glob("work/batches/*/*/*.servers.json")]
    first_ready = min(r["servers"]["ready_at"] for r in records if r["servers"])
    last_wav = max(wav.stat().st_mtime for wav in out.glob("audio/*/*/*.wav"))
    items = common.read_jsonl(out / f"metadata_{LANG}.jsonl")
    return {
        "wall_s": wall,
        "generation_s": last_wav - first_ready,
        "startup_s": max(s["startup_s"] or 0 for s in timing["servers"]),
        "wavs": {f"{r['voice']}/{r['id']}": r["sha256"] for r in items},
        "audio_s": sum(r["duration_s"] for r in items),
    }


def run_sequential(cfg: dict, root: Path, checkpoints: Path) -> dict:
    """The sequential client, against one server started the way fishflow starts one."""
    fish = cfg["server"]["fish_speech"]
    flags = {
        "llama_checkpoint_path": str(checkpoints),
        "decoder_checkpoint_path": str(checkpoints / "codec.pth"),
        "decoder_config_name": fish["decoder_config_name"],
    }
    out = common.fresh_dir(root / "sequential")
    started = time.perf_counter()
    with fish_speech_env.run_server(flags, out / "server") as server:
        client = FishSpeechClient(server.url, timeout=300)
        voices = [v.spec() for v in load_voices(cfg["voices"], cfg["validation"]).values()]
        register_voices(client, server.workdir, voices)
        generation_started = time.perf_counter()
        wavs = common.sequential_requests(client, Plan(cfg), cfg, out)
        finished = time.perf_counter()
    return {
        "wall_s": finished - started,
        "generation_s": finished - generation_started,
        "startup_s": server.start_seconds,
        "wavs": {key: digest for key, (digest, _) in wavs.items()},
        "audio_s": sum(seconds for _, seconds in wavs.values()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=24, help="sentences, each spoken in 2 voices")
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--max-in-flight", type=int, default=1, help="per fishflow replica")
    args = parser.parse_args()
    common.header("throughput: fishflow vs the sequential client (fish-speech 0.1.0, CPU, tiny)")

    root = common.fresh_dir(common.CACHE / "throughput")
    checkpoints = fish_speech_env.cached_tiny_checkpoints()
    rows_path = common.write_rows(root / "rows.jsonl", args.rows)
    cfg = validate_config(config(root, rows_path, common.voices(2), checkpoints, args))
    print(
        f"items: {args.rows} sentences x 2 voices = {2 * args.rows}, "
        f"max_new_tokens {args.max_new_tokens}, fishflow replicas {args.replicas}",
        flush=True,
    )

    sequential = run_sequential(cfg, root, checkpoints)
    fishflow = run_fishflow(cfg, root / "config.json")
    same = sum(sequential["wavs"][key] == digest for key, digest in fishflow["wavs"].items())

    print(f"\n{'':24}{'sequential':>12}{'fishflow':>12}{'ratio':>8}")
    for key, label in (("wall_s", "end to end, s"), ("generation_s", "generation phase, s")):
        print(
            f"{label:24}{sequential[key]:12.1f}{fishflow[key]:12.1f}"
            f"{sequential[key] / fishflow[key]:7.2f}x"
        )
    for key, label in (("wall_s", "end to end"), ("generation_s", "generation phase")):
        rate = {
            side: run["audio_s"] / run[key] for side, run in (("s", sequential), ("f", fishflow))
        }
        print(
            f"audio s per s, {label:16}{rate['s']:8.3f}{rate['f']:12.3f}"
            f"{rate['f'] / rate['s']:7.2f}x"
        )
        print(
            f"tokens per s, {label:17}{rate['s'] * SAMPLE_RATE / HOP:8.1f}"
            f"{rate['f'] * SAMPLE_RATE / HOP:12.1f}"
        )
    print(f"server start-up, s       {sequential['startup_s']:12.1f}{fishflow['startup_s']:12.1f}")
    print(f"audio seconds            {sequential['audio_s']:12.1f}{fishflow['audio_s']:12.1f}")
    print(f"byte-identical WAVs: {same} of {len(fishflow['wavs'])} (see the docstring)")
    if sorted(sequential["wavs"]) != sorted(fishflow["wavs"]) or abs(
        sequential["audio_s"] - fishflow["audio_s"]
    ) > 0.01 * len(fishflow["wavs"]):
        sys.exit("the two sides did not produce the same items and audio: the comparison is void")


if __name__ == "__main__":
    main()
