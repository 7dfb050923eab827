"""The API key reaches every server through its environment, never its command line (which
every user of a node can read in /proc/<pid>/cmdline)."""

import json
import os
import subprocess
import sys
import textwrap

from fishflow.serving.api_key_shim import KEY_ENV
from fishflow.serving.backends import KEY_SHIM, DemoBackend, FishSpeechBackend
from tests.helpers import make_config
from tests.unit.test_checkpoints import fish_config

KEY = "0123456789abcdef" * 3


def test_the_demo_launch_carries_the_key_in_its_environment_only(tmp_path):
    server = make_config(tmp_path, {"en": [{"id": "a", "text": "Hi."}]})["server"]
    launch = DemoBackend().launch(server, 8123, tmp_path, KEY)
    assert launch.command[:4] == [
        sys.executable,
        "-P",
        str(KEY_SHIM),
        "fishflow.serving.demo_server",
    ]
    assert not any(KEY in arg for arg in launch.command)
    assert launch.env == {KEY_ENV: KEY}
    assert DemoBackend().launch(server, 8123, tmp_path, None).env == {}


def test_the_fish_speech_launch_keeps_its_checkout_path_and_moves_the_key(tmp_path):
    server = fish_config(tmp_path, checkout=str(tmp_path / "fs"), extra_args=["--workers", 2])
    launch = FishSpeechBackend().launch(server, 8123, tmp_path, KEY)
    python = os.path.abspath(server["fish_speech"]["python"])
    assert launch.command[:4] == [python, "-P", str(KEY_SHIM), "tools.api_server"]
    assert launch.command[-2:] == ["--workers", "2"]
    assert not any(KEY in arg for arg in launch.command)
    assert launch.env == {"PYTHONPATH": str((tmp_path / "fs").resolve()), KEY_ENV: KEY}


FAKE_SERVER = """
    import argparse, json, multiprocessing, os, sys

    def child(queue):
        queue.put(os.environ.get("{key_env}"))

    if __name__ == "__main__":
        parser = argparse.ArgumentParser()
        parser.add_argument("--listen")
        parser.add_argument("--api-key")
        args = parser.parse_args()
        # As uvicorn starts its --workers: a spawned interpreter re-imports this module.
        context = multiprocessing.get_context("spawn")
        queue = context.Queue()
        worker = context.Process(target=child, args=(queue,))
        worker.start()
        worker.join()
        with open("/proc/self/cmdline", "rb") as cmdline:
            own = cmdline.read().decode()
        print(json.dumps({{
            "argv": sys.argv, "api_key": args.api_key, "listen": args.listen,
            "key_in_own_env": "{key_env}" in os.environ, "key_in_worker_env": queue.get(),
            "cmdline": own, "file": __file__, "path": sys.path,
        }}))
"""


def test_the_shim_hands_the_key_to_argparse_and_keeps_tools_in_the_cwd_out(tmp_path):
    server = tmp_path / "checkout" / "tools"
    server.mkdir(parents=True)
    (server / "__init__.py").write_text("")
    (server / "api_server.py").write_text(textwrap.dedent(FAKE_SERVER.format(key_env=KEY_ENV)))
    # A tools/ folder in the working directory, as a careless user might leave there.
    shadow = tmp_path / "work" / "tools"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise SystemExit('the tools/ in the cwd was imported')")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "checkout"), KEY_ENV: KEY}
    command = [sys.executable, "-P", str(KEY_SHIM), "tools.api_server", "--listen", "h:1"]
    done = subprocess.run(
        command, cwd=tmp_path / "work", env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert (seen["api_key"], seen["listen"]) == (KEY, "h:1")
    assert seen["argv"] == [seen["file"], "--listen", "h:1", "--api-key", KEY]
    assert seen["file"] == str(server / "api_server.py")
    # -P: neither the shim's folder (fishflow's modules) nor the working directory.
    assert not {str(KEY_SHIM.parent), str(tmp_path / "work"), ""} & set(seen["path"])
    assert KEY not in seen["cmdline"] and "h:1" in seen["cmdline"]
    assert not seen["key_in_own_env"] and seen["key_in_worker_env"] is None


def test_without_a_key_the_server_gets_no_api_key_option(tmp_path):
    module = tmp_path / "echo_argv.py"
    module.write_text("import sys\nprint(sys.argv[1:])\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    env.pop(KEY_ENV, None)
    done = subprocess.run(
        [sys.executable, "-P", str(KEY_SHIM), "echo_argv", "--port", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.stdout.strip() == "['--port', '1']", done.stderr
