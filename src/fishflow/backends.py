"""Server backends: what each can speak, how it identifies its model, how it is launched."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

from .errors import ConfigError

DEMO_LANGUAGES = frozenset({"en", "de", "fr", "ja", "zh"})


@dataclass(frozen=True)
class Backend:
    name: str
    languages: frozenset[str]

    def model_id(self, server: dict) -> str:
        """Identity of the model that produces the audio; part of every item's fingerprint."""
        engine = server["demo"]["engine"]
        return f"demo/{engine}/espeakng-loader-{version('espeakng-loader')}"

    def command(self, server: dict, host: str, port: int, workdir: Path) -> list[str]:
        demo = server["demo"]
        cmd = [
            sys.executable,
            "-m",
            "fishflow.demo_server",
            "--host",
            host,
            "--port",
            str(port),
            "--workdir",
            str(workdir),
            "--request-log",
            str(workdir / "requests.jsonl"),
            "--engine",
            demo["engine"],
            "--latency-s",
            str(demo["latency_s"]),
        ]
        if demo["fail_pattern"]:
            cmd += ["--fail-pattern", demo["fail_pattern"]]
        return cmd


BACKENDS = {"demo": Backend("demo", DEMO_LANGUAGES)}


def get_backend(server: dict) -> Backend:
    try:
        return BACKENDS[server["backend"]]
    except KeyError:
        raise ConfigError(
            f"config key server.backend: unknown backend {server['backend']!r}"
        ) from None
