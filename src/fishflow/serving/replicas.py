"""The server replicas of one generation job, run by a thread of the job's own process.

One replica per GPU of the job (times `server.servers_per_gpu`), or `server.replicas` of them,
each pinned with CUDA_VISIBLE_DEVICES, on its own free loopback port and in its own working
directory. Each is health-checked, given the voices and verified before it serves. A replica
that dies after it was ready is restarted (`server.max_restarts`); one that fails to start is
not: a bad checkpoint or flag fails the same way again.

Replicas die with the thread that started them (PR_SET_PDEATHSIG), so no server outlives its
job, even when the job is killed with SIGKILL.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import secrets
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fishflow.errors import FishflowError, PermanentError, ServerError, TransientError
from fishflow.serving.backends import Launch, get_backend
from fishflow.serving.client import FishSpeechClient
from fishflow.serving.gpu_usage import sampler_for
from fishflow.serving.registration import register_voices

LOOPBACK = "127.0.0.1"
STOP_GRACE_S = 5  # a server has nothing to save: SIGKILL after this
FATAL_SETTLE_S = 1.0
MONITOR_S = 0.2
PR_SET_PDEATHSIG = 1

log = logging.getLogger("fishflow.servers")


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


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no server log)"
    return "\n".join(text.rstrip("\n").split("\n")[-lines:])


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
    ignores SIGTERM and SIGINT, and would keep its job alive forever."""
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


def die_with_parent(parent: int, sig: int = signal.SIGKILL) -> None:
    """In a child (a preexec_fn): `sig` when the thread that started it dies, even by SIGKILL,
    so no server outlives its job. A parent killed between fork and prctl sends nothing: the
    child checks that it still has its parent."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, sig)
    if os.getppid() != parent:
        os._exit(1)


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


class Replicas:
    """Start with `start()`, wait for the first ready replica with `wait_ready()`, take the
    ready ones from `ready()`, end with `stop()`; `record()` is what the job keeps of them."""

    def __init__(self, server: dict, voices: list[dict], home: Path, log_of: Callable[[str], Path]):
        self.server = server
        self.voices = voices
        self.backend = get_backend(server)
        self.home = Path(home).resolve()
        self.log_of = log_of
        # Hex: a URL-safe token may start with "-" and be taken for an option by the server.
        self.api_key = secrets.token_hex(24) if server["api_key"] == "auto" else None
        self.visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        self.replicas = [
            Replica(index, cuda) for index, cuda in enumerate(replica_devices(server, self.visible))
        ]
        self.changed = threading.Condition()
        self.stopping = threading.Event()
        self.starts: list[dict] = []
        self.gpu = sampler_for(server_device(server), self.visible)
        self.started_at: float | None = None
        self.ready_at: float | None = None
        self.finished_at: float | None = None
        self._thread: threading.Thread | None = None

    # -- the job's side ------------------------------------------------------------------------

    def start(self) -> None:
        self.started_at = time.time()
        self._thread = threading.Thread(target=self._supervise, name="servers", daemon=True)
        self._thread.start()

    def ready(self) -> list[Replica]:
        with self.changed:
            return [r for r in self.replicas if r.state == "ready"]

    def failed(self) -> bool:
        with self.changed:
            return all(r.state == "failed" for r in self.replicas)

    def wait_ready(self) -> None:
        """Until one replica serves; raise with the failing server's log if none can."""
        with self.changed:
            while not any(r.state == "ready" for r in self.replicas):
                if all(r.state == "failed" for r in self.replicas):
                    raise ServerError(self.failure())
                if self.stopping.is_set():
                    raise ServerError("the job was stopped while its servers started")
                self.changed.wait(MONITOR_S)

    def failure(self) -> str:
        first = self.replicas[0]
        if len(self.replicas) == 1:
            error = first.error
        else:
            error = f"all {len(self.replicas)} replicas failed; " + "; ".join(
                f"{r.tag}: {r.error}" for r in self.replicas
            )
        return f"the servers failed: {error}\n--- last lines of {first.log} ---\n" + log_tail(
            first.log
        )

    def stop(self) -> None:
        self.stopping.set()
        if self._thread is not None:
            self._thread.join()

    def record(self) -> dict:
        """How the servers ran: the servers record's `servers` part (no API key)."""
        pids = {r.process.pid: r.tag for r in self.replicas if r.process}
        with self.changed:
            return {
                "backend": self.server["backend"],
                "device": server_device(self.server),
                "cuda_visible_devices": self.visible,
                "replicas": len(self.replicas),
                "started_at": self.started_at,
                "ready_at": self.ready_at,
                "finished_at": self.finished_at,
                "starts": [dict(start) for start in self.starts],
                "gpu": self.gpu.summary(pids),
            }

    # -- the supervising thread (it starts every replica: see die_with_parent) ----------------

    def _supervise(self) -> None:
        self.gpu.start()
        try:
            for replica in self.replicas:
                self._start(replica)
            while not self.stopping.wait(MONITOR_S):
                self._restart_dead()
        finally:
            self.gpu.stop()  # before the servers stop: their exit is not idle serving time
            stop([r.process for r in self.replicas if r.process])
            self.finished_at = time.time()
            with self.changed:
                self.changed.notify_all()

    def _start(self, replica: Replica) -> None:
        port = free_loopback_port()
        suffix = f".{replica.restarts}" if replica.restarts else ""
        replica.workdir = self.home / f"{replica.tag}{suffix}"
        replica.workdir.mkdir(parents=True)
        replica.log = self.log_of(replica.tag)
        replica.log.parent.mkdir(parents=True, exist_ok=True)
        replica.url = f"http://{LOOPBACK}:{port}"
        with self.changed:
            replica.state, replica.startup_s, replica.error = "starting", None, None
            replica.start_record = {"replica": replica.tag, "restart": replica.restarts}
            self.starts.append(replica.start_record)
        launch = self.backend.launch(self.server, port, replica.workdir, self.api_key)
        env = {**os.environ, **launch.env}
        if replica.cuda is not None:
            env["CUDA_VISIBLE_DEVICES"] = replica.cuda
        self._say(
            f"[{replica.tag}] starting {self.server['backend']} server on "
            f"{socket.gethostname()}:{port} in {replica.workdir} (CUDA_VISIBLE_DEVICES="
            f"{env.get('CUDA_VISIBLE_DEVICES')}); its output: {replica.log}"
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
                preexec_fn=functools.partial(die_with_parent, os.getpid()),
                # Out of the terminal's process group: a Ctrl-C reaches the job, which finishes
                # the requests in flight before it stops its servers.
                start_new_session=True,
            )
        threading.Thread(target=self._bring_up, args=(replica, launch), daemon=True).start()

    def _bring_up(self, replica: Replica, launch: Launch) -> None:
        """Health, registration and verification of one replica."""
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
            registry = register_voices(client, replica.workdir, self.voices)
        except Exception as exc:  # noqa: BLE001 - every failure must reach the job
            error = str(exc) if isinstance(exc, FishflowError) else f"{type(exc).__name__}: {exc}"
            self._say(f"[{replica.tag}] server start failed: {error}")
            stop([process])
            with self.changed:
                replica.state, replica.error = "failed", error
                replica.start_record["error"] = error
                self.changed.notify_all()
            return
        self._say(
            f"[{replica.tag}] server ready at {replica.url} after {startup_s:.3f} s; "
            f"{len(self.voices)} voice(s) verified ({registry} registry)"
        )
        self.gpu.serving()
        with self.changed:
            replica.state, replica.startup_s = "ready", round(startup_s, 3)
            replica.start_record["startup_s"] = replica.startup_s
            if self.ready_at is None:
                self.ready_at = time.time()
            self.changed.notify_all()

    def _restart_dead(self) -> None:
        for replica in self.replicas:
            if replica.state != "ready" or replica.process.poll() is None:
                continue
            code = replica.process.returncode
            if replica.restarts < self.server["max_restarts"]:
                replica.restarts += 1
                self._say(
                    f"[{replica.tag}] server exited with code {code}; restart "
                    f"{replica.restarts} of {self.server['max_restarts']}"
                )
                self._start(replica)
                continue
            self._say(f"[{replica.tag}] server exited with code {code}")
            with self.changed:
                replica.state = "failed"
                replica.error = f"exited with code {code} after {replica.restarts} restart(s)"
                self.changed.notify_all()

    @staticmethod
    def _say(message: str) -> None:
        log.info("%s", message)
