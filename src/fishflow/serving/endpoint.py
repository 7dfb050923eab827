"""The endpoint file: how a started server tells its consumers where it is (or why it failed)."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from fishflow.errors import ServerError

POLL_S = 0.2


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no server log)"
    return "\n".join(text.rstrip("\n").split("\n")[-lines:])


def read_endpoint(path: Path) -> dict | None:
    """The endpoint file's content, or None while it is missing or being replaced."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def wait_for_endpoint(path: Path, timeout_s: float) -> dict:
    """Wait until the server of this job publishes its endpoint; raise with its error.

    Endpoint files of earlier runs are removed when a run starts (the Snakefile's onstart), so a
    file with an error is this launch's; a ready file (`ready_at`, set once a replica has its
    voices verified) must name a live launcher on this node.
    """
    deadline = time.monotonic() + timeout_s
    host = socket.gethostname()
    while time.monotonic() < deadline:
        info = read_endpoint(path)
        if info and "error" in info:
            raise ServerError(
                f"the server failed to start: {info['error']}\n"
                f"--- last lines of {info.get('log')} ---\n{info.get('log_tail', '')}"
            )
        if info and info.get("host") == host and not pid_alive(info["pid"]):
            raise ServerError(
                f"the server launcher (pid {info['pid']}) exited without a ready server; see "
                f"{info.get('log')}"
            )
        if info and "ready_at" in info and info.get("host") == host:
            return info
        time.sleep(POLL_S)
    raise ServerError(
        f"no ready server endpoint at {path} within {timeout_s:.0f} s "
        "(is the server rule in the same group as this job? see logs/server/)"
    )
