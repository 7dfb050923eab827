"""A real headless Chromium driven over the Chrome DevTools Protocol, for the report tests.

Chromium comes from Debian (`apt-get install chromium`), installed here when we are root with
apt and it is missing; otherwise the test is skipped with the reason, or fails when CI=true.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import websocket

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-port=0",
    "--remote-allow-origins=*",
)


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true, but {reason}")
    pytest.skip(f"NOT TESTED IN A BROWSER: {reason}")


def require_chromium() -> str:
    if path := shutil.which("chromium"):
        return path
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        _unavailable("chromium is missing and cannot be installed here (needs root and apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update"], ["apt-get", "install", "-y", "chromium"]):
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            _unavailable(f"{' '.join(command)} failed: {done.stderr[-2000:]}")
    return shutil.which("chromium") or _unavailable("apt-get installed no chromium binary")


class Browser:
    """One Chromium process and a CDP connection to its first page."""

    def __init__(self, binary: str, profile: Path):
        self.process = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        port = self._port(profile / "DevToolsActivePort")
        # The DevTools endpoint is on loopback: never through a proxy.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        pages = json.load(opener.open(f"http://127.0.0.1:{port}/json/list", timeout=10))
        url = next(p["webSocketDebuggerUrl"] for p in pages if p["type"] == "page")
        self.socket = websocket.create_connection(url, timeout=30, suppress_origin=True)
        self.events: list[dict] = []
        self._next_id = 0

    def _port(self, active_port: Path) -> int:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if active_port.is_file() and active_port.read_text().strip():
                return int(active_port.read_text().split()[0])
            if self.process.poll() is not None:
                raise AssertionError(f"chromium exited with {self.process.returncode}")
            time.sleep(0.1)
        raise AssertionError("chromium did not open its DevTools port within 30 s")

    def call(self, method: str, **params) -> dict:
        """Send a command and return its result; events that arrive meanwhile are kept."""
        self._next_id += 1
        self.socket.send(json.dumps({"id": self._next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv())
            if message.get("id") == self._next_id:
                if "error" in message:
                    raise AssertionError(f"{method}: {message['error']}")
                return message["result"]
            self.events.append(message)

    def evaluate(self, expression: str, **options):
        """The expression's value; a script error fails the test (instead of reading as None).
        `options`: more Runtime.evaluate parameters (awaitPromise, userGesture)."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, **options)
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise AssertionError(f"{expression}: {details.get('exception', details)}")
        return result["result"].get("value")

    def close(self) -> None:
        self.socket.close()
        self.process.terminate()
        self.process.wait(timeout=30)
