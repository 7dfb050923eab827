"""Start the server replicas of one generation job and keep them serving until the job ends.

Run as `python -m fishflow.serving.launcher --spec JSON --endpoint FILE --log FILE` by the `server`
rule (a
Snakemake service, stopped with SIGTERM when its consumers are done). It starts one replica per
GPU of the job (times `server.servers_per_gpu`), or `server.replicas` of them, each pinned with
CUDA_VISIBLE_DEVICES, on its own free loopback port and in its own working directory. Each is
health-checked, given the voices and verified before the endpoint file lists it as ready;
consumers re-read that file to follow replicas that come and go. A replica that dies after it
was ready is restarted (`server.max_restarts`); one that fails to start is not: a bad checkpoint
or flag fails the same way again. When every replica has failed the file carries the error.

Beside its log the launcher keeps a structured record, `<log stem>.json` (RECORD_SCHEMA): per
launcher run (a rerun of the batch appends one) its replicas' starts and start-up seconds, and
the GPUs' busy fraction and memory (fishflow.serving.gpu_usage). The report reads that, not the log.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fishflow import atomic
from fishflow.errors import FishflowError, PermanentError, TransientError
from fishflow.serving.backends import Launch, get_backend
from fishflow.serving.client import FishSpeechClient
from fishflow.serving.endpoint import log_tail
from fishflow.serving.gpu_usage import sampler_for
from fishflow.serving.registration import register_voices

LOOPBACK = "127.0.0.1"
PRIVATE = 0o600  # the endpoint file holds the servers' API key
STOP_GRACE_S = 5  # a server has nothing to save: SIGKILL after this
FATAL_SETTLE_S = 1.0
MONITOR_S = 0.2
PR_SET_PDEATHSIG = 1
RECORD_SCHEMA = "fishflow-servers/1"


def free_loopback_port() -> int:
    """A port the kernel just had free on loopback (never a fixed one: nodes are shared)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def replica_devices(server: dict, visible: str | None) -> list[str | None]:
    """The CUDA_VISIBLE_DEVICES of each replica (None: leave it as it is, e.g. on CPU)."""
    gpus = [gpu.strip() for gpu in (visible or "").split(",") if gpu.strip()]
    per_gpu = server["servers_per_gpu"]
    count = server["replicas"]
    if count == "auto":
        count = len(gpus) * per_gpu if gpus else 1
    if not gpus:
        return [None] * count
    return [gpus[(index // per_gpu) % len(gpus)] for index in range(count)]


def server_device(server: dict) -> str:
    """Where the servers compute: the demo server always on CPU."""
    return server["fish_speech"]["device"] if server["backend"] == "fish-speech" else "cpu"


def record_path(log: Path) -> Path:
    """The launcher's structured record, beside its log."""
    return Path(log).with_suffix(".json")


def earlier_runs(record: Path) -> list[dict]:
    """The runs an earlier launcher of this batch recorded (a rerun appends its own)."""
    try:
        content = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return content.get("runs", []) if content.get("schema") == RECORD_SCHEMA else []


def _fatal_line(log: Path, marks: tuple[str, ...]) -> str | None:
    if not marks:
        return None
    text = Path(log).read_text(encoding="utf-8", errors="replace")
    return next((mark for mark in marks if mark in text), None)


def wait_healthy(
    client: FishSpeechClient, alive: Callable[[], bool], launch: Launch, log: Path, timeout_s: float
) -> float:
    """Seconds until the server answered health; raise if it died, hung or timed out."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if not alive():
            raise FishflowError("the server process exited during start-up")
        mark = _fatal_line(log, launch.fatal_marks)
        if mark:
            time.sleep(FATAL_SETTLE_S)  # the log tail shown to users must hold the whole traceback
            raise FishflowError(f"the server failed while loading (its log shows {mark!r})")
        try:
            client.health(timeout=5)
            return time.monotonic() - start
        except TransientError:
            time.sleep(0.25)
        except PermanentError as exc:
            raise FishflowError(str(exc)) from exc
    raise FishflowError(
        f"the server did not answer /v1/health within {timeout_s:.0f} s "
        "(server.startup_timeout_s; model load, warm-up and --compile all count)"
    )


def stop(processes: list[subprocess.Popen]) -> None:
    """SIGTERM, then SIGKILL: fish-speech stuck in start-up (its model loader thread died)
    ignores SIGTERM and SIGINT, and would keep its Snakemake group job alive forever."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
    deadline = time.monotonic() + STOP_GRACE_S
    for process in processes:
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """In a child (a preexec_fn): `sig` when the thread that started it dies, even by SIGKILL
    (Snakemake kills a failed group's service that way), so no server outlives its job."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, sig)


@dataclass
class Replica:
    index: int
    cuda: str | None
    process: subprocess.Popen | None = None
    state: str = "starting"  # starting | ready | failed
    restarts: int = 0
    url: str = ""
    workdir: Path | None = None
    log: Path | None = None
    startup_s: float | None = None
    error: str | None = None
    start_record: dict | None = None

    @property
    def tag(self) -> str:
        return f"r{self.index}"

    def public(self, slots: Path) -> dict:
        return {
            "index": self.index,
            "state": self.state,
            "url": self.url,
            "pid": self.process.pid if self.process else None,
            "cuda_visible_devices": self.cuda,
            "workdir": str(self.workdir),
            "log": str(self.log),
            "slots": str(slots / self.tag),
            "restarts": self.restarts,
            "startup_s": self.startup_s,
            "error": self.error,
        }


class Supervisor:
    def __init__(self, spec: dict, endpoint: Path, log: Path):
        self.spec = spec
        self.server = spec["server"]
        self.backend = get_backend(self.server)
        self.endpoint = endpoint
        host, batch = socket.gethostname(), endpoint.name.split(".")[0]
        self.home = (Path(spec["servers_dir"]) / f"{batch}-{host}-{os.getpid()}").resolve()
        self.replica_logs = log.parent / batch
        # Hex: a URL-safe token may start with "-" and be taken for an option by the server.
        self.api_key = secrets.token_hex(24) if self.server["api_key"] == "auto" else None
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        self.replicas = [
            Replica(index, cuda) for index, cuda in enumerate(replica_devices(self.server, visible))
        ]
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.record = record_path(log)
        self.earlier_runs = earlier_runs(self.record)
        self.starts: list[dict] = []
        self.gpu = sampler_for(server_device(self.server), visible)
        self.info = {
            "host": host,
            "pid": os.getpid(),
            "api_key": self.api_key,
            "log": str(log),
            "home": str(self.home),
            "backend": self.server["backend"],
            "started_at": time.time(),
            "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
            "cuda_visible_devices": visible,
        }

    def start(self, replica: Replica) -> None:
        """Start (or restart) a replica; from the main thread only (see die_with_parent)."""
        port = free_loopback_port()
        suffix = f".{replica.restarts}" if replica.restarts else ""
        replica.workdir = self.home / f"{replica.tag}{suffix}"
        replica.workdir.mkdir(parents=True)
        replica.log = self.replica_logs / f"{replica.tag}.log"
        replica.log.parent.mkdir(parents=True, exist_ok=True)
        replica.url = f"http://{LOOPBACK}:{port}"
        replica.state, replica.startup_s, replica.error = "starting", None, None
        replica.start_record = {"replica": replica.tag, "restart": replica.restarts}
        with self.lock:
            self.starts.append(replica.start_record)
        launch = self.backend.launch(self.server, port, replica.workdir, self.api_key)
        env = {**os.environ, **launch.env}
        if replica.cuda is not None:
            env["CUDA_VISIBLE_DEVICES"] = replica.cuda
        print(
            f"fishflow: [{replica.tag}] starting {self.server['backend']} server on "
            f"{self.info['host']}:{port} in {replica.workdir} (Slurm job "
            f"{self.info['slurm_job_id']}, CUDA_VISIBLE_DEVICES={env.get('CUDA_VISIBLE_DEVICES')}"
            f"); its output: {replica.log}",
            flush=True,
        )
        with open(replica.log, "a", encoding="utf-8") as output:
            output.write("fishflow: command: " + " ".join(launch.command) + "\n")
            output.flush()
            replica.process = subprocess.Popen(
                launch.command,
                cwd=replica.workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,
            )
        threading.Thread(target=self._bring_up, args=(replica, launch), daemon=True).start()

    def _bring_up(self, replica: Replica, launch: Launch) -> None:
        """Health, registration and verification of one replica, then publish it."""
        process = replica.process
        client = FishSpeechClient(replica.url, self.api_key, self.server["request_timeout_s"])
        try:
            startup_s = wait_healthy(
                client,
                lambda: process.poll() is None,
                launch,
                replica.log,
                self.server["startup_timeout_s"],
            )
            registry = register_voices(client, replica.workdir, self.spec["voices"])
        except Exception as exc:  # noqa: BLE001 - every failure must reach the consumers
            error = str(exc) if isinstance(exc, FishflowError) else f"{type(exc).__name__}: {exc}"
            print(f"fishflow: [{replica.tag}] server start failed: {error}", flush=True)
            stop([process])
            with self.lock:
                replica.state, replica.error = "failed", error
                replica.start_record["error"] = error
        else:
            print(
                f"fishflow: [{replica.tag}] server ready at {replica.url} after {startup_s:.3f} s;"
                f" {len(self.spec['voices'])} voice(s) verified ({registry} registry)",
                flush=True,
            )
            self.gpu.serving()
            with self.lock:
                replica.state, replica.startup_s = "ready", round(startup_s, 3)
                replica.start_record["startup_s"] = replica.startup_s
        self.publish()

    def publish(self) -> None:
        with self.lock:
            if any(r.state == "ready" for r in self.replicas):
                # Set once: consumers start as soon as one replica serves.
                self.info.setdefault("ready_at", time.time())
                self.info["voices"] = {v["id"]: v["sha256"] for v in self.spec["voices"]}
            info = {**self.info, "replicas": [r.public(self.home / "slots") for r in self.replicas]}
            if all(r.state == "failed" for r in self.replicas):
                info.update(self._failure())
            atomic.write_json(self.endpoint, info, PRIVATE)
            self._write_record()

    def _write_record(self, finished: bool = False) -> None:
        """The structured record (no API key): caller holds self.lock."""
        pids = {r.process.pid: r.tag for r in self.replicas if r.process}
        run = {
            key: self.info.get(key)
            for key in ("host", "pid", "slurm_job_id", "backend", "cuda_visible_devices")
        }
        run.update(
            device=server_device(self.server),
            started_at=self.info["started_at"],
            ready_at=self.info.get("ready_at"),
            finished_at=time.time() if finished else None,
            replicas=len(self.replicas),
            starts=self.starts,
            gpu=self.gpu.summary(pids),
        )
        batch = self.endpoint.name.split(".")[0]
        record = {"schema": RECORD_SCHEMA, "batch": batch, "runs": [*self.earlier_runs, run]}
        atomic.write_json(self.record, record)

    def _failure(self) -> dict:
        first = self.replicas[0]
        if len(self.replicas) == 1:
            error = first.error
        else:
            error = f"all {len(self.replicas)} replicas failed; " + "; ".join(
                f"{r.tag}: {r.error}" for r in self.replicas
            )
        return {"error": error, "log": str(first.log), "log_tail": log_tail(first.log)}

    def _restart_dead(self) -> None:
        for replica in self.replicas:
            if replica.state != "ready" or replica.process.poll() is None:
                continue
            code = replica.process.returncode
            if replica.restarts < self.server["max_restarts"]:
                replica.restarts += 1
                print(
                    f"fishflow: [{replica.tag}] server exited with code {code}; restart "
                    f"{replica.restarts} of {self.server['max_restarts']}",
                    flush=True,
                )
                self.start(replica)
            else:
                print(f"fishflow: [{replica.tag}] server exited with code {code}", flush=True)
                with self.lock:
                    replica.state = "failed"
                    replica.error = f"exited with code {code} after {replica.restarts} restart(s)"
            self.publish()

    def run(self) -> int:
        # Published at once, without `ready_at`: consumers learn the launcher's pid (and so
        # whether it died), long before a model has loaded.
        self.publish()
        self.gpu.start()
        for replica in self.replicas:
            self.start(replica)
        self.publish()
        while not self.stopping.wait(MONITOR_S):
            self._restart_dead()
            if all(r.state == "failed" for r in self.replicas):
                break
        failed = not self.stopping.is_set()
        self.gpu.stop()  # before the servers stop: their exit is not idle serving time
        stop([r.process for r in self.replicas if r.process])
        self.publish()  # the final states, whichever thread saw them first
        with self.lock:
            self._write_record(finished=True)
        print(f"fishflow: servers stopped ({'all failed' if failed else 'job done'})", flush=True)
        return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", required=True, help="JSON: server config, voices, servers_dir")
    parser.add_argument("--endpoint", required=True, type=Path)
    parser.add_argument("--log", required=True, type=Path)
    args = parser.parse_args(argv)

    args.log.parent.mkdir(parents=True, exist_ok=True)
    log_fd = os.open(args.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    supervisor = Supervisor(json.loads(args.spec), args.endpoint, args.log)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: supervisor.stopping.set())
    return supervisor.run()


if __name__ == "__main__":
    sys.exit(main())
