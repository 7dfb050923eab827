"""A real workflow on the demo backend: while its servers run, no process's command line (world
readable in /proc/<pid>/cmdline) holds a server's API key."""

import stat
import time
import urllib.error
import urllib.request
from pathlib import Path

from fishflow.endpoint import read_endpoint
from tests.workflow_runner import kill_group

NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


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
        with NO_PROXY.open(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_no_command_line_shows_a_server_key_while_servers_run(project):
    # Slow requests keep each batch's servers up for a few scans.
    project.config["server"]["demo"]["latency_s"] = 0.3
    project.config["server"]["replicas"] = 2
    process = project.start()
    keys, scans, servers_seen = set(), 0, 0
    try:
        while process.poll() is None:
            for key, url in ready_servers(project.out / "work" / "servers").items():
                if key not in keys:
                    # The key reached the server through the shim: it guards every route.
                    assert (health_status(url, None), health_status(url, key)) == (401, 200)
                    keys.add(key)
            lines = command_lines()
            servers_seen += sum("fishflow.demo_server" in line for line in lines.values())
            leaks = {pid: line for pid, line in lines.items() for key in keys if key in line}
            assert not leaks, f"API key on a command line: {leaks}"
            scans += bool(keys)
            time.sleep(0.05)
    finally:
        kill_group(process)
    stdout, _ = process.communicate()
    assert process.returncode == 0, stdout[-8000:]
    assert len(keys) >= 2 and scans >= 5 and servers_seen >= 5, (keys, scans, servers_seen)
