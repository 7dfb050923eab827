"""GPU kit: audio seconds per GPU-second, fishflow against the sequential client, one command.

    python3 benchmarks/gpu_throughput.py --size s1-mini --wheels .whl --vendor .whl/sources \
        --logs DIR                                                      (a GPU machine)
    .venv/bin/python benchmarks/gpu_throughput.py --size tiny --device cpu --logs DIR  (the test)

On one machine, back to back and on the same items: the sequential client (one server, one
request at a time, the reference re-encoded on every request: `use_memory_cache: off`); then
fishflow with 1, 2, 4 and 8 server replicas on the one GPU (`max_in_flight` 2 per replica, the
voice cache on), stopping early when the last doubling gained under MIN_GAIN, when GPU memory
would not hold twice the replicas, or when the time budget would not hold the next phase; then
the best replica count again with `--compile`. It prints a short table LAST; every server log,
the servers' records, the WAVs and results.json are kept under --logs.

What runs: a generation job's own server replicas (`fishflow.serving.replicas.Replicas`, the
`speak` rule's servers: replicas, health, voice registration, the NVML record, in this process)
and its own generation code (`fishflow.speaking.batch.BatchJob.speak_all` over a
`fishflow.speaking.pool.ReplicaPool`: requests in flight, checking and atomic writes, the
journal), one batch per voice running side by side on the same replicas; the sequential client
talks to a single server that the same `Replicas` started (so both sides get the same server
command line, checkpoint and start-up measurement). Not the whole Snakemake workflow, on
purpose: what a GPU-hour buys is decided inside the generation job, and planning, manifests and
the report run on CPU once per run (a fixed 7-9 s measured in RESULTS.md section 3); paying
Snakemake's start-up in each of six phases would cost about a minute of a 10-minute device call
and blur the per-phase timing, and it would need Snakemake, pandas and matplotlib carried as
wheels (the 64 MiB limit). Generation seconds run from the first request to the last answer;
start-up (model load, warm-up, voice registration, compile) is reported on its own, as the
report does.

Sizes: `tiny`, `tiny-s1`, `tiny-s2` are the test suite's servers (fish-speech 0.1.0, git d3df505,
git 3dd1f85) in its CPU env with its cached tiny random checkpoints (tests/tooling); `s1-mini` and
`s2` are the git servers d3df505 (OpenAudio S1 era) and 3dd1f85 (Fish Audio S2) in this Python
(the GPU machine's: --wheels installs what it lacks, --vendor holds the sources) with random
weights of the real models' shapes (gpu_kit/random_checkpoints.py says where each number comes
from), built on the spot. Random weights never sample the end token (the test
suite's trick), so every request yields max_new_tokens - 1 frames: the same work on both sides,
and a random model decodes at the real one's speed per token.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from benchmarks.gpu_kit.install import install_carried_wheels  # noqa: E402

# First, before the imports below need them (on a GPU machine some may be missing).
INSTALLED = install_carried_wheels(sys.argv) if __name__ == "__main__" else {}

from benchmarks import common  # noqa: E402
from fishflow.errors import FishflowError  # noqa: E402
from fishflow.planning.config import validate_config  # noqa: E402
from fishflow.planning.plan import Plan  # noqa: E402
from fishflow.serving.client import FishSpeechClient  # noqa: E402
from fishflow.serving.replicas import Replicas  # noqa: E402
from fishflow.speaking.batch import BatchJob  # noqa: E402
from fishflow.speaking.pool import ReplicaPool  # noqa: E402
from tests.tooling import fish_speech_env  # noqa: E402

KIT = Path(__file__).resolve().parent / "gpu_kit"
SAMPLE_RATE, HOP = common.SAMPLE_RATE, common.HOP  # every size's codec: 2048 samples a frame
SEED = 42
VOICES = 2
MIN_GAIN = 1.10  # a doubling of replicas that gains less than 10 % ends the series
MEMORY_HEADROOM = 0.9  # twice the replicas must fit in 90 % of the GPU's memory
# Guards, not measurements: a phase is started only if what the last one took (start-up and
# generation), times START_MARGIN, fits in what is left; --compile's first start-up was never
# measured here, so it needs COMPILE_GUARD_S on top of the eager phase.
START_MARGIN = 1.5
COMPILE_GUARD_S = 240
RESERVE_S = 20  # kept for stopping the last servers and writing the results


@dataclass(frozen=True)
class Size:
    server: str  # a fish_speech_env.VERSIONS name: 0.1.0, d3df505 (S1 era), 3dd1f85 (S2)
    shape: str  # tiny: the test suite's cached checkpoints; else gpu_kit/random_checkpoints.py
    codec_config: str | None  # None: the tiny codec of the server's generation


SIZES = {
    "tiny": Size("0.1.0", "tiny", None),
    "tiny-s1": Size("d3df505", "tiny", None),
    "tiny-s2": Size("3dd1f85", "tiny", None),
    "s1-mini": Size("d3df505", "s1-mini", "modded_dac_vq"),
    "s2": Size("3dd1f85", "s2-pro", "modded_dac_vq"),
}


@dataclass
class Phase:
    name: str
    replicas: int
    compile: bool = False
    sequential: bool = False
    skipped: str | None = None
    results: dict = field(default_factory=dict)


class Budget:
    """Seconds left of --budget-s, from the script's start."""

    def __init__(self, seconds: float):
        self.total = seconds
        self.started = time.monotonic()

    def left(self) -> float:
        return self.total - (time.monotonic() - self.started)


# --- set-up: packages, server source, checkpoints ---------------------------------------------


def server_install(size: Size, args, logs: Path) -> tuple[Path, Path | None]:
    """The server's python and fish-speech source (None: the installed 0.1.0).

    Tiny sizes run in the test suite's CPU server env, unless --this-python; real sizes run in
    this Python (the GPU machine's: --wheels installs what it lacks), with the pinned source
    from --vendor (or where the test tooling finds it: shared/vendor beside the repository)
    extracted unchanged into the logs, and the librosa stand-in beside it where librosa is
    missing.
    """
    version = fish_speech_env.VERSIONS[size.server]
    if size.shape == "tiny" and not args.this_python:
        install = fish_speech_env.ensure_install(version)
        return install.python, install.source
    if not version.commit:
        raise SystemExit(f"--size {args.size} runs only in the test env (no --this-python)")
    if args.vendor:
        tarball = args.vendor / f"fish-speech-{version.name}.tar.gz"
        os.environ[version.source_variable] = str(tarball.resolve())
    tree = fish_speech_env._unpack(fish_speech_env.locate_source(version), logs / "source")
    if size.shape == "tiny":  # its codec yaml goes where Hydra looks, as the test tooling does
        codec_yaml = fish_speech_env.RECIPE_DIR / f"{version.codec_config_name}.yaml"
        shutil.copy2(codec_yaml, tree / "fish_speech" / "configs")
    if importlib.util.find_spec("librosa") is None:
        shutil.copytree(KIT / "stand_ins" / "librosa", tree / "librosa")
    return Path(sys.executable), tree


def checkpoints_for(size: Size, python: Path, source: Path | None, logs: Path) -> Path:
    """In the test env: its cached tiny checkpoints; else random weights built here, now."""
    version = fish_speech_env.VERSIONS[size.server]
    if python == fish_speech_env.env_python():
        return fish_speech_env.cached_tiny_checkpoints(version)
    dest = logs / "checkpoints" / "model"
    dest.mkdir(parents=True)
    command = [python, "-P", KIT / "random_checkpoints.py", dest, version.generation, size.shape]
    with (logs / "checkpoints" / "build.log").open("w") as log:
        subprocess.run(
            [str(part) for part in [*command, codec_config(size)]],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(source)},
            timeout=600,
            check=True,
        )
    return dest


# --- one phase ---------------------------------------------------------------------------------


def base_config(args, root: Path, rows: Path, python: Path, source, checkpoints: Path) -> dict:
    return validate_config(
        {
            "output_dir": str(root / "fishflow"),
            "inputs": {"en": str(rows)},
            "voices": common.voices(VOICES),
            "shard_size": args.items,  # one shard per voice, as many items as the run
            "generation": {"max_new_tokens": args.max_new_tokens, "seed": SEED},
            "validation": common.random_model_validation(args.max_new_tokens),
            "server": {
                "backend": "fish-speech",
                "replicas": 1,
                "max_in_flight": 2,
                "startup_timeout_s": args.startup_timeout_s,
                "fish_speech": {
                    "python": str(python),
                    "checkout": str(source) if source else None,
                    "checkpoint_dir": str(checkpoints),
                    "decoder_config_name": codec_config(SIZES[args.size]),
                    "device": args.device,
                },
            },
        }
    )


def codec_config(size: Size) -> str:
    return size.codec_config or fish_speech_env.VERSIONS[size.server].codec_config_name


class Servers:
    """A generation job's server replicas for one phase, with every voice of the run; stopped
    on exit. What a job's log would show (servers and items) goes to `folder`/job.log, each
    server's output to `folder`/r<i>.log, the servers' record to `folder`/servers.json."""

    def __init__(self, config: dict, folder: Path, timeout_s: float):
        voices = [voice.spec() for voice in Plan(config).voices.values()]
        self.log = folder / "job.log"
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.handler = logging.FileHandler(self.log, encoding="utf-8")
        self.handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s"))
        logging.getLogger("fishflow").addHandler(self.handler)
        logging.getLogger("fishflow").setLevel(logging.INFO)
        self.replicas = Replicas(
            config["server"], voices, folder / "servers", lambda tag: folder / f"{tag}.log"
        )
        self.timeout_s = timeout_s
        self.started = time.perf_counter()
        self.replicas.start()

    def __enter__(self) -> Servers:
        return self

    def wait_ready(self) -> float:
        """Until every replica is ready (or failed); the start-up wall seconds."""
        deadline = self.started + self.timeout_s
        while time.perf_counter() < deadline:
            states = [replica.state for replica in self.replicas.replicas]
            if "starting" not in states:
                if "ready" not in states:
                    raise RuntimeError(f"no replica started: {self.replicas.failure()}")
                return time.perf_counter() - self.started
            time.sleep(0.2)
        raise RuntimeError(f"replicas not ready after {self.timeout_s:.0f} s: {self.log}")

    def __exit__(self, *_) -> None:
        self.replicas.stop()
        record = self.record()
        (self.log.parent / "servers.json").write_text(json.dumps(record, indent=1))
        logging.getLogger("fishflow").removeHandler(self.handler)
        self.handler.close()

    def record(self) -> dict:
        return self.replicas.record()


def run_sequential(config: dict, url: str, api_key: str | None, out: Path) -> dict:
    """The loop users write by hand: one request at a time, the reference re-encoded each time."""
    client = FishSpeechClient(url, api_key, config["server"]["request_timeout_s"])
    plan = Plan(config)
    wavs = common.sequential_requests(client, plan, config, out)
    return {"answered": len(wavs), "audio_s": sum(seconds for _, seconds in wavs.values())}


def run_fishflow(config: dict, replicas: Replicas) -> dict:
    """fishflow's generation code, one batch per voice side by side on the same replicas (each
    job's pool bounds the requests in flight per replica, as in a generation job)."""
    plan = Plan(config)
    pool = ReplicaPool(replicas, config["server"], threading.Event())
    jobs = [BatchJob(plan.batch(*key), config) for key in plan.batch_keys()]
    errors: list[BaseException] = []

    def speak(job: BatchJob) -> None:
        job.pool = pool
        try:
            job.speak_all()
        except BaseException as exc:  # noqa: BLE001 - reported after the join
            errors.append(exc)

    threads = [threading.Thread(target=speak, args=(job,), daemon=True) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    problems = [error for job in jobs for work in job.shards if (error := job.shard_error(work))]
    if problems:
        raise FishflowError(f"{len(problems)} shard(s) did not complete; first: {problems[0]}")
    records = [record for job in jobs for work in job.shards for record in work.records.values()]
    ok = [record for record in records if record.ok]
    return {"answered": len(ok), "audio_s": sum(record.duration_s for record in ok)}


def run_phase(phase: Phase, base: dict, folder: Path, items: int, budget: Budget) -> dict:
    config = json.loads(json.dumps(base))
    config["server"]["replicas"] = phase.replicas
    config["server"]["fish_speech"]["compile"] = phase.compile
    config["output_dir"] = str(folder / "out")
    # Start-up may not eat the time kept for the table: past it the phase fails, the run goes on.
    startup_limit = min(config["server"]["startup_timeout_s"] + 60, budget.left() - RESERVE_S)
    with Servers(config, folder, startup_limit) as servers:
        startup_wall_s = servers.wait_ready()
        started = time.perf_counter()
        if phase.sequential:
            url = servers.replicas.ready()[0].url
            produced = run_sequential(config, url, servers.replicas.api_key, folder / "out")
        else:
            produced = run_fishflow(config, servers.replicas)
        generation_s = time.perf_counter() - started
    record = servers.record()
    return summarise(record, startup_wall_s, generation_s, produced, items)


def summarise(record: dict, startup_wall_s, generation_s, produced: dict, items: int) -> dict:
    gpu = record["gpu"]
    return {
        **produced,
        "items": items,
        "generation_s": round(generation_s, 3),
        "audio_s_per_s": produced["audio_s"] / generation_s,
        "tokens_per_s": produced["audio_s"] * SAMPLE_RATE / HOP / generation_s,
        "startup_s": max((s.get("startup_s") or 0) for s in record["starts"]),
        "startup_wall_s": round(startup_wall_s, 3),
        "gpu_busy": gpu.get("busy_fraction") if gpu["measured"] else None,
        "gpu_memory_per_replica_mib": memory_per_replica(gpu, record["replicas"]),
        "gpu_memory_total_mib": max(
            (g["memory_total_mib"] for g in gpu.get("gpus", ())), default=None
        ),
        "gpu": gpu,
    }


def memory_per_replica(gpu: dict, replicas: int) -> float | None:
    """The largest replica's peak GPU memory (NVML, by server pid); where NVML shows other pids
    (a container's pid namespace), the GPU's peak divided by the replicas (this machine runs
    nothing else on it)."""
    gpus = gpu.get("gpus", ())
    per_replica = [mib for g in gpus for mib in g["replica_memory_peak_mib"].values()]
    if per_replica:
        return max(per_replica)
    peaks = [g["memory_peak_mib"] for g in gpus if g["memory_peak_mib"] is not None]
    return max(peaks) / replicas if peaks else None


# --- the series --------------------------------------------------------------------------------


def phase_cost(last: dict, scale: float = 1.0) -> float:
    """What the next phase may take, from the last one: its start-up scaled by the ratio of
    replicas (they load and warm up at once on one device), its generation as it was."""
    return START_MARGIN * (scale * last["startup_wall_s"] + last["generation_s"])


def why_stop_doubling(done: list[Phase], budget: Budget) -> str | None:
    """Why not to run twice the replicas of the last fishflow phase (None: go on)."""
    last = done[-1].results
    if len(done) > 1:
        gain = last["audio_s_per_s"] / done[-2].results["audio_s_per_s"]
        if gain < MIN_GAIN:
            return f"the last doubling gained {gain:.2f}x (< {MIN_GAIN:.2f}x)"
    memory, total = last["gpu_memory_per_replica_mib"], last["gpu_memory_total_mib"]
    if memory and total and 2 * done[-1].replicas * memory > MEMORY_HEADROOM * total:
        return f"{2 * done[-1].replicas} x {memory:.0f} MiB would not fit in {total:.0f} MiB"
    needed = phase_cost(last, scale=2)
    if needed > budget.left():
        return f"would not fit: about {needed:.0f} s needed, {budget.left():.0f} s left"
    return None


def attempt(phase: Phase, base: dict, folder: Path, args, budget: Budget) -> bool:
    """Run a phase; a failure (a replica that cannot start, start-up past the budget) is
    recorded as the phase's outcome, so the table still comes out."""
    try:
        phase.results = run_phase(phase, base, folder, args.items, budget)
    except (RuntimeError, FishflowError, subprocess.SubprocessError) as error:
        phase.skipped = f"failed: {error}"
        print(f"{phase.name}: {phase.skipped}", flush=True)
        return False
    print(f"{phase.name}: {brief(phase.results)}", flush=True)
    return True


def run_series(args, base: dict, logs: Path, budget: Budget) -> list[Phase]:
    """Sequential, fishflow with doubling replicas while they pay, then --compile for the best."""
    sequential = Phase("sequential", 1, sequential=True)
    phases = [sequential]
    if not attempt(sequential, base, logs / "sequential", args, budget):
        return phases
    done: list[Phase] = []
    stop: str | None = None
    for replicas in args.replicas:
        phase = Phase(f"fishflow x{replicas}", replicas)
        phases.append(phase)
        if done:
            stop = stop or why_stop_doubling(done, budget)
        elif phase_cost(sequential.results) > budget.left():
            stop = f"would not fit: {budget.left():.0f} s left"
        if stop:
            phase.skipped = stop
            continue
        if attempt(phase, base, logs / f"fishflow-x{replicas}", args, budget):
            done.append(phase)
        else:
            stop = f"{phase.name} failed"
    if done:
        phases.append(compiled_phase(done, base, logs, args, budget))
    return phases


def compiled_phase(done: list[Phase], base: dict, logs: Path, args, budget: Budget) -> Phase:
    best = max(done, key=lambda p: p.results["audio_s_per_s"])
    phase = Phase(f"fishflow x{best.replicas} --compile", best.replicas, compile=True)
    needed = phase_cost(best.results) + COMPILE_GUARD_S
    if args.no_compile:
        phase.skipped = "--no-compile"
    elif needed > budget.left():
        phase.skipped = f"would not fit: about {needed:.0f} s needed, {budget.left():.0f} s left"
    else:
        attempt(phase, base, logs / f"fishflow-x{best.replicas}-compile", args, budget)
    return phase


def brief(results: dict) -> str:
    return (
        f"{results['answered']}/{results['items']} answered, {results['audio_s']:.1f} s audio in "
        f"{results['generation_s']:.1f} s, start-up {results['startup_wall_s']:.1f} s"
    )


# --- output ------------------------------------------------------------------------------------


def table(phases: list[Phase], device: str) -> str:
    unit = "GPU-s" if device != "cpu" else "s (CPU)"
    head = (
        f"{'phase':28}{'audio s/' + unit:>16}{'tokens/s':>10}{'MiB/replica':>14}"
        f"{'start-up s':>12}{'GPU busy':>14}{'x seq':>8}"
    )
    lines = [head]
    reference = phases[0].results.get("audio_s_per_s")
    for phase in phases:
        if phase.skipped:
            failed = phase.skipped.startswith("failed")
            lines.append(f"{phase.name:28}{'' if failed else 'skipped: '}{phase.skipped}")
            continue
        r = phase.results
        memory = _or_not_measured(r["gpu_memory_per_replica_mib"], "{:.0f}")
        busy = _or_not_measured(r["gpu_busy"], "{:.0%}")
        lines.append(
            f"{phase.name:28}{r['audio_s_per_s']:16.3f}{r['tokens_per_s']:10.1f}{memory:>14}"
            f"{r['startup_wall_s']:12.1f}{busy:>14}{r['audio_s_per_s'] / reference:7.2f}x"
        )
    return "\n".join(lines)


def _or_not_measured(value, style: str) -> str:
    return "not measured" if value is None else style.format(value)


def check(phases: list[Phase]) -> list[str]:
    """Every request answered, and the same audio on every side (else the comparison is void).
    A fishflow phase that failed (say out of GPU memory) is a result, shown in the table."""
    if phases[0].skipped:
        return [f"the sequential client {phases[0].skipped}: nothing to compare with"]
    problems = []
    reference = phases[0].results
    for phase in phases:
        r = phase.results
        if phase.skipped:
            continue
        if r["answered"] != r["items"]:
            problems.append(f"{phase.name}: {r['answered']} of {r['items']} requests answered")
        if abs(r["audio_s"] - reference["audio_s"]) > 0.01 * r["items"]:
            problems.append(
                f"{phase.name}: {r['audio_s']:.2f} s of audio, "
                f"sequential {reference['audio_s']:.2f} s"
            )
    return problems


def counts(text: str) -> list[int]:
    return [int(part) for part in text.split(",")]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logs", type=Path, required=True, help="folder for every log and result")
    parser.add_argument("--size", choices=sorted(SIZES), default="s1-mini")
    parser.add_argument("--device", default="cuda", help="the servers' --device (cpu for tiny)")
    parser.add_argument("--items", type=int, default=32, help=f"per phase, over {VOICES} voices")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--replicas", type=counts, default=[1, 2, 4, 8], help="e.g. 1,2,4,8")
    parser.add_argument("--budget-s", type=float, default=540, help="whole run, set-up included")
    parser.add_argument("--startup-timeout-s", type=float, default=240)
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--wheels", type=Path, help="install what this Python lacks from here")
    parser.add_argument("--vendor", type=Path, help="folder of fish-speech-<commit>.tar.gz")
    parser.add_argument(
        "--this-python",
        action="store_true",
        help="tiny git sizes too: servers in this Python, as on a GPU machine (checks that path)",
    )
    args = parser.parse_args()
    if args.items % VOICES:
        parser.error(f"--items must be a multiple of {VOICES} (one shard per voice)")
    return args


def main() -> None:
    args = parse_args()
    budget = Budget(args.budget_s)
    logs = common.fresh_dir(args.logs.resolve())
    common.header(f"GPU kit: fishflow vs the sequential client ({args.size}, {args.device})")
    size = SIZES[args.size]
    setup = dict(INSTALLED)
    started = time.perf_counter()
    python, source = server_install(size, args, logs)
    checkpoints = checkpoints_for(size, python, source, logs)
    setup["checkpoints_s"] = round(time.perf_counter() - started, 1)
    rows = common.write_rows(logs / "rows.jsonl", args.items // VOICES)
    base = base_config(args, logs, rows, python, source, checkpoints)
    print(f"set-up: {setup}; {budget.left():.0f} s of the budget left", flush=True)

    phases = run_series(args, base, logs, budget)
    problems = check(phases)
    result = {
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "machine": common.machine(),
        "setup": setup,
        "phases": [asdict(phase) for phase in phases],
        "problems": problems,
        "elapsed_s": round(args.budget_s - budget.left(), 1),
    }
    (logs / "results.json").write_text(json.dumps(result, indent=1))
    print(
        f"\nitems per phase: {args.items}, max_new_tokens {args.max_new_tokens}; "
        f"took {result['elapsed_s']:.0f} s of the {args.budget_s:.0f} s budget; logs: {logs}"
    )
    for problem in problems:
        print(f"PROBLEM: {problem}")
    print(table(phases, args.device))
    if problems:
        sys.exit(1)


if __name__ == "__main__":
    main()
