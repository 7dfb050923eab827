import json
import socket
import subprocess
import time

import pytest

from fishflow.errors import ServerError
from fishflow.serving.endpoint import wait_for_endpoint


def test_a_launcher_that_died_without_a_ready_server_fails_its_consumers_at_once(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    endpoint = tmp_path / "b00000.endpoint.json"
    endpoint.write_text(json.dumps({"host": socket.gethostname(), "pid": dead.pid, "log": "x.log"}))
    started = time.monotonic()
    with pytest.raises(ServerError, match=f"launcher \\(pid {dead.pid}\\) exited .* see x.log"):
        wait_for_endpoint(endpoint, timeout_s=60)
    assert time.monotonic() - started < 30


def test_the_published_error_wins_with_the_server_log_tail(tmp_path):
    endpoint = tmp_path / "b00000.endpoint.json"
    info = {"host": socket.gethostname(), "pid": 1, "error": "boom", "log": "r0.log"}
    endpoint.write_text(json.dumps({**info, "log_tail": "Traceback: boom"}))
    with pytest.raises(ServerError, match="failed to start: boom\n--- last lines of r0.log"):
        wait_for_endpoint(endpoint, timeout_s=5)
