"""Watch a running workflow for its servers' API keys on any process's command line.

`/proc/<pid>/cmdline` is readable by every user of a shared node: a key seen there lets anyone
use the server, or replace a verified voice. The keys are read from the endpoint files (mode
0600) as soon as a replica is ready; each key must then guard its server (401 without it, 200
with it), and no command line may ever hold it.
"""

from __future__ import annotations

import stat
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from fishflow.serving.endpoint import read_endpoint
from tests.workflow_runner import Project, kill_group

NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))
SCAN_INTERVAL_S = 0.05


def command_lines() -> dict[int, str]:
    """pid -> command line of every process this user can see (every process on Linux)."""
    lines = {}
    for entry in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            lines[int(entry.parent.name)] = entry.read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue  # exited meanwhile
    return lines


def ready_servers(servers: Path) -> dict[str, str]:
    """Key -> URL of a ready replica, for every batch whose endpoint file lists one."""
    ready = {}
    for path in servers.glob("*.endpoint.json"):
        info = read_endpoint(path) or {}
        for replica in info.get("replicas", ()):
            if replica["state"] == "ready":
                assert stat.S_IMODE(path.stat().st_mode) == 0o600
                ready[info["api_key"]] = replica["url"]
    return ready


def health_status(url: str, key: str | None) -> int:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    request = urllib.request.Request(f"{url}/v1/health", headers=headers)
    try:
        with NO_PROXY.open(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


@dataclass
class KeyWatch:
    """What a watched run showed: the keys found, and how many scans saw servers running."""

    keys: set[str] = field(default_factory=set)
    scans: int = 0  # scans made while at least one key was known
    server_sightings: int = 0  # server processes seen, summed over all scans


def run_watching_keys(
    project: Project, server_mark: str, timeout: float
) -> tuple[subprocess.CompletedProcess, KeyWatch]:
    """Run the workflow to its end, scanning every command line for a known key meanwhile;
    `server_mark` is a piece of the servers' command lines (to count that they were seen)."""
    watch, process = KeyWatch(), project.start()
    deadline = time.monotonic() + timeout
    try:
        while process.poll() is None:
            assert time.monotonic() < deadline, f"the run took over {timeout} s"
            for key, url in ready_servers(project.out / "work" / "servers").items():
                if key not in watch.keys:
                    # The key reached the server through the shim: it guards every route.
                    assert (health_status(url, None), health_status(url, key)) == (401, 200)
                    watch.keys.add(key)
            lines = command_lines()
            watch.server_sightings += sum(server_mark in line for line in lines.values())
            leaks = {pid: line for pid, line in lines.items() for key in watch.keys if key in line}
            assert not leaks, f"API key on a command line: {leaks}"
            watch.scans += bool(watch.keys)
            time.sleep(SCAN_INTERVAL_S)
    finally:
        kill_group(process)
    stdout, _ = process.communicate()
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, ""), watch
