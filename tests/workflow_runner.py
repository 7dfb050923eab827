"""Drive the real `snakemake` command on a test project, always under a timeout."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from fishflow import atomic
from tests.helpers import REPO

SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
# A proxy that answers nothing: fishflow must never send loopback traffic through it.
DEAD_PROXY = "http://127.0.0.1:9"


@dataclass
class Project:
    """A test project: its own folder, config and output; snakemake runs with it as cwd."""

    root: Path
    config: dict
    # Extra environment for snakemake; a None value removes that variable.
    env: dict = field(default_factory=dict)

    @property
    def out(self) -> Path:
        return Path(self.config["output_dir"])

    @property
    def config_path(self) -> Path:
        return self.root / "config.yaml"

    def write_config(self) -> None:
        self.config_path.write_text(yaml.safe_dump(self.config, sort_keys=False))

    def command(self, *args: str) -> list[str]:
        return [
            SNAKEMAKE,
            "--snakefile",
            str(REPO / "Snakefile"),
            "--directory",
            str(self.root),
            "--configfile",
            str(self.config_path),
            "--cores",
            "2",
            *args,
        ]

    def environment(self) -> dict:
        env = {**os.environ, "http_proxy": DEAD_PROXY, "HTTP_PROXY": DEAD_PROXY, **self.env}
        env.pop("NO_PROXY", None)
        env.pop("no_proxy", None)
        return {name: value for name, value in env.items() if value is not None}

    def run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        """Run snakemake to completion; kill its whole process group on timeout."""
        self.write_config()
        process = self.start(*args)
        try:
            stdout, _ = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_group(process)
            stdout, _ = process.communicate()
            raise AssertionError(
                f"snakemake timed out after {timeout} s:\n{stdout[-5000:]}"
            ) from None
        return subprocess.CompletedProcess(process.args, process.returncode, stdout, "")

    def start(self, *args: str) -> subprocess.Popen:
        self.write_config()
        return subprocess.Popen(
            self.command(*args),
            cwd=self.root,
            env=self.environment(),
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    # -- what the run left behind ---------------------------------------------------------------

    def tts_requests(self) -> list[dict]:
        """Every /v1/tts request any demo server replica of this project answered (request logs
        in work/servers/<lang>/<batch>-<host>-<pid>/<replica>/)."""
        requests = []
        for log in sorted((self.out / "work" / "servers").rglob("requests.jsonl")):
            requests += [r for r in atomic.read_jsonl(log) if r["path"] == "/v1/tts"]
        return requests

    def wavs(self) -> dict[str, Path]:
        return {
            str(p.relative_to(self.out)): p for p in sorted((self.out / "audio").rglob("*.wav"))
        }

    def manifest(self, kind: str, lang: str) -> list[dict]:
        return atomic.read_jsonl(self.out / f"{kind}_{lang}.jsonl")

    def summary(self) -> dict:
        return json.loads((self.out / "summary.json").read_text())


def kill_group(process: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass


def assert_ok(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, (
        f"snakemake failed ({result.returncode}):\n{result.stdout[-8000:]}"
    )
