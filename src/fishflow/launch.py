"""Start a backend server for one group of generation jobs: `exec`ed, so SIGTERM reaches it.

Run as `python -m fishflow.launch --spec JSON --endpoint FILE --log FILE` by the `server` rule.
Before `exec`, a detached watcher process is forked. It waits for health (bounded), registers
and verifies the voices, then publishes the endpoint file; on any failure it publishes the error
with the tail of the server log instead and stops the server.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
import time
from pathlib import Path

from . import atomic
from .backends import get_backend
from .client import FishSpeechClient
from .endpoint import log_tail, pid_alive
from .errors import FishflowError, PermanentError, TransientError
from .registration import register_voices

LOOPBACK = "127.0.0.1"


def free_loopback_port() -> int:
    """A port the kernel just had free on loopback (never a fixed one: nodes are shared)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def wait_healthy(client: FishSpeechClient, server_pid: int, timeout_s: float) -> float:
    """Seconds until the server answered health; raise if it died or did not answer in time."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if not pid_alive(server_pid):
            raise FishflowError("the server process exited during start-up")
        try:
            client.health(timeout=5)
            return time.monotonic() - start
        except TransientError:
            time.sleep(0.25)
        except PermanentError as exc:
            raise FishflowError(str(exc)) from exc
    raise FishflowError(f"the server did not answer /v1/health within {timeout_s:.0f} s")


def watch(spec: dict, endpoint: Path, log: Path, server_pid: int, url: str, workdir: Path):
    """In the forked watcher: health, registration, verification, then publish."""
    started = time.time()
    client = FishSpeechClient(url, timeout=spec["server"]["request_timeout_s"])
    info = {
        "host": socket.gethostname(),
        "pid": server_pid,
        "url": url,
        "log": str(log),
        "workdir": str(workdir),
        "backend": spec["server"]["backend"],
        "started_at": started,
    }
    try:
        info["startup_s"] = round(
            wait_healthy(client, server_pid, spec["server"]["startup_timeout_s"]), 3
        )
        info["registry"] = register_voices(client, workdir, spec["voices"])
        info["voices"] = {voice["id"]: voice["sha256"] for voice in spec["voices"]}
        info["ready_at"] = time.time()
        print(
            f"fishflow: server ready at {url} after {info['startup_s']} s; "
            f"{len(spec['voices'])} voice(s) verified ({info['registry']} registry)",
            flush=True,
        )
    except Exception as exc:  # noqa: BLE001 - any failure must reach the consumers
        info["error"] = (
            f"{type(exc).__name__}: {exc}" if not isinstance(exc, FishflowError) else str(exc)
        )
        print(f"fishflow: server start failed: {info['error']}", flush=True)
        info["log_tail"] = log_tail(log)
        atomic.write_json(endpoint, info)
        if pid_alive(server_pid):
            os.kill(server_pid, signal.SIGTERM)
        return
    atomic.write_json(endpoint, info)


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

    args.endpoint.unlink(missing_ok=True)
    args.log.parent.mkdir(parents=True, exist_ok=True)
    workdir = (
        Path(spec["servers_dir"])
        / f"{args.endpoint.name.split('.')[0]}-{socket.gethostname()}-{os.getpid()}"
    )
    workdir.mkdir(parents=True)
    port = free_loopback_port()
    url = f"http://{LOOPBACK}:{port}"
    command = get_backend(spec["server"]).command(spec["server"], LOOPBACK, port, workdir.resolve())

    log_fd = os.open(args.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    print(
        f"fishflow: starting {spec['server']['backend']} server on {url} in {workdir}", flush=True
    )
    print("fishflow: command: " + " ".join(command), flush=True)
    server_pid = os.getpid()  # exec keeps the pid
    _detach(lambda: watch(spec, args.endpoint, args.log, server_pid, url, workdir.resolve()))
    os.chdir(workdir)
    os.execvp(command[0], command)


if __name__ == "__main__":
    sys.exit(main())
