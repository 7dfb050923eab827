"""Start a backend server for one group of generation jobs: `exec`ed, so SIGTERM reaches it.

Run as `python -m fishflow.launch --spec JSON --endpoint FILE --log FILE` by the `server` rule.
Before `exec`, it publishes the endpoint file (not yet ready) and forks a detached watcher. The
watcher waits for health (bounded), registers and verifies the voices, then republishes the
endpoint file as ready; on any failure it publishes the error with the tail of the server log
instead, and stops the server.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import signal
import socket
import sys
import time
from pathlib import Path

from . import atomic
from .backends import Launch, get_backend
from .client import FishSpeechClient
from .endpoint import log_tail, pid_alive
from .errors import FishflowError, PermanentError, TransientError
from .registration import register_voices

LOOPBACK = "127.0.0.1"
PRIVATE = 0o600  # the endpoint file holds the server's API key
STOP_GRACE_S = 5  # for a server that failed to start: it has nothing to save
FATAL_SETTLE_S = 1.0


def free_loopback_port() -> int:
    """A port the kernel just had free on loopback (never a fixed one: nodes are shared)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def _fatal_line(log: Path, marks: tuple[str, ...]) -> str | None:
    if not marks:
        return None
    text = Path(log).read_text(encoding="utf-8", errors="replace")
    return next((mark for mark in marks if mark in text), None)


def wait_healthy(client: FishSpeechClient, pid: int, launch: Launch, log: Path, timeout_s: float):
    """Seconds until the server answered health; raise if it died, hung or timed out."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if not pid_alive(pid):
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


def stop(pid: int) -> None:
    """SIGTERM, then SIGKILL: fish-speech stuck in start-up (its model loader thread died)
    ignores SIGTERM and SIGINT, and would keep its Snakemake group job alive forever."""
    deadline = time.monotonic() + STOP_GRACE_S
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if not pid_alive(pid):
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)


def watch(spec: dict, launch: Launch, info: dict, endpoint: Path, log: Path) -> None:
    """In the forked watcher: health, registration, verification, then publish."""
    server = spec["server"]
    client = FishSpeechClient(info["url"], info["api_key"], timeout=server["request_timeout_s"])
    try:
        info["startup_s"] = round(
            wait_healthy(client, info["pid"], launch, log, server["startup_timeout_s"]), 3
        )
        info["registry"] = register_voices(client, Path(info["workdir"]), spec["voices"])
        info["voices"] = {voice["id"]: voice["sha256"] for voice in spec["voices"]}
        info["ready_at"] = time.time()
        print(
            f"fishflow: server ready at {info['url']} after {info['startup_s']} s; "
            f"{len(spec['voices'])} voice(s) verified ({info['registry']} registry)",
            flush=True,
        )
    except Exception as exc:  # noqa: BLE001 - every failure must reach the consumers
        info["error"] = (
            str(exc) if isinstance(exc, FishflowError) else f"{type(exc).__name__}: {exc}"
        )
        print(f"fishflow: server start failed: {info['error']}", flush=True)
        info["log_tail"] = log_tail(log)
    atomic.write_json(endpoint, info, PRIVATE)
    if "error" in info:
        stop(info["pid"])


def _detach(fn) -> None:
    """Run `fn` in a grandchild process so the exec'ed server never has to reap it."""
    child = os.fork()
    if child:
        os.waitpid(child, 0)
        return
    if os.fork():
        os._exit(0)
    try:
        fn()
    finally:
        os._exit(0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", required=True, help="JSON: server config, voices, servers_dir")
    parser.add_argument("--endpoint", required=True, type=Path)
    parser.add_argument("--log", required=True, type=Path)
    args = parser.parse_args(argv)
    spec = json.loads(args.spec)
    server = spec["server"]

    args.endpoint.unlink(missing_ok=True)
    args.log.parent.mkdir(parents=True, exist_ok=True)
    name = f"{args.endpoint.name.split('.')[0]}-{socket.gethostname()}-{os.getpid()}"
    workdir = (Path(spec["servers_dir"]) / name).resolve()
    workdir.mkdir(parents=True)
    port = free_loopback_port()
    # Hex: a URL-safe token may start with "-" and be taken for an option by the server.
    api_key = secrets.token_hex(24) if server["api_key"] == "auto" else None
    launch = get_backend(server).launch(server, port, workdir, api_key)
    info = {
        "host": socket.gethostname(),
        "pid": os.getpid(),  # exec keeps the pid
        "url": f"http://{LOOPBACK}:{port}",
        "api_key": api_key,
        "log": str(args.log),
        "workdir": str(workdir),
        "backend": server["backend"],
        "started_at": time.time(),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }

    log_fd = os.open(args.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    shown = ["***" if arg == api_key else arg for arg in launch.command]
    print(
        f"fishflow: starting {server['backend']} server on {info['host']}:{port} in {workdir} "
        f"(Slurm job {info['slurm_job_id']}, CUDA_VISIBLE_DEVICES={info['cuda_visible_devices']})",
        flush=True,
    )
    print("fishflow: command: " + " ".join(shown), flush=True)
    # Published at once, without `ready_at`: Snakemake fails consumers whose input (this service
    # file) is still missing after --latency-wait, far shorter than a real model's start-up.
    atomic.write_json(args.endpoint, info, PRIVATE)
    _detach(lambda: watch(spec, launch, info, args.endpoint, args.log))
    os.chdir(workdir)
    os.execvpe(launch.command[0], launch.command, {**os.environ, **launch.env})


if __name__ == "__main__":
    sys.exit(main())
