"""Watch a running workflow for its servers' API keys on any process's command line.

`/proc/<pid>/cmdline` is readable by every user of a shared node: a key seen there lets anyone
use the server, or replace a verified voice. A generation job keeps its servers' key in memory
and hands it to each server in its environment (`/proc/<pid>/environ`, readable by its owner
only), where the watch reads it; each key must then guard its server (401 without it, 200 with
it), no command line may ever hold it, and no file of the run may keep it.
"""

from __future__ import annotations

import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from fishflow.serving.api_key_shim import KEY_ENV
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


def server_url(args: list[str]) -> str | None:
    """The loopback URL a server command line listens on: the demo's --port, fish-speech's
    --listen."""
    if "--port" in args:
        return f"http://127.0.0.1:{args[args.index('--port') + 1]}"
    if "--listen" in args:
        return f"http://{args[args.index('--listen') + 1]}"
    return None


def running_servers(servers: Path) -> dict[str, str]:
    """Key -> URL of every server process working under `servers` (its cwd) with a key in its
    environment."""
    found = {}
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if not Path(str(proc / "cwd")).resolve().is_relative_to(servers.resolve()):
                continue
            environ = (proc / "environ").read_bytes().split(b"\0")
            args = (proc / "cmdline").read_bytes().decode().split("\0")
        except OSError:
            continue  # exited meanwhile, or not ours
        prefix = f"{KEY_ENV}=".encode()
        keys = [entry[len(prefix) :].decode() for entry in environ if entry.startswith(prefix)]
        url = server_url(args)
        if keys and url:
            found[keys[0]] = url
    return found


def files_holding(keys: set[str], folder: Path) -> list[Path]:
    """Files under `folder` that contain any of `keys`."""
    encoded = [key.encode() for key in keys]
    return [
        path
        for path in sorted(folder.rglob("*"))
        if path.is_file() and any(key in path.read_bytes() for key in encoded)
    ]


def health_status(url: str, key: str | None) -> int | None:
    """The HTTP status of /v1/health; None while the server does not listen (yet, or any more)."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    request = urllib.request.Request(f"{url}/v1/health", headers=headers)
    try:
        with NO_PROXY.open(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except (urllib.error.URLError, ConnectionError):
        return None


@dataclass
class KeyWatch:
    """What a watched run showed: the keys found, and how many scans saw servers running."""

    keys: set[str] = field(default_factory=set)
    scans: int = 0  # scans made while at least one key was known
    server_sightings: int = 0  # server processes seen, summed over all scans
    files_with_keys: list[Path] = field(default_factory=list)  # after the run


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
            for key, url in running_servers(project.out / "work" / "servers").items():
                if key not in watch.keys:
                    # The key reached the server through the shim: it guards every route.
                    statuses = (health_status(url, None), health_status(url, key))
                    if None in statuses:
                        continue  # not listening yet (or stopped meanwhile): the next scan
                    assert statuses == (401, 200), (url, statuses)
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
    watch.files_with_keys = files_holding(watch.keys, project.root)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, ""), watch
