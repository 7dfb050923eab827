"""Install what this Python lacks from the GPU kit's carried wheels, before anything else.

Standard library only: on a GPU machine the kit's own imports (fishflow needs requests, msgpack,
jsonschema, ...) may be among what is missing. requirements.txt names, per wheel, the module it
provides; a wheel is installed only where that module cannot be found, with --no-deps and from
the carried folder alone, so the machine's torch stack is never touched.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

REQUIREMENTS = Path(__file__).with_name("requirements.txt")
PIP_TIMEOUT_S = 300


def carried_requirements() -> list[tuple[str, str]]:
    """(requirement, module) pairs of requirements.txt."""
    pairs = []
    for line in REQUIREMENTS.read_text().splitlines():
        requirement, _, comment = line.partition("#")
        if requirement.strip() and "import " in comment:
            pairs.append((requirement.strip(), comment.split("import ", 1)[1].strip()))
    return pairs


def missing(pairs: list[tuple[str, str]]) -> list[str]:
    absent = []
    for requirement, module in pairs:
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:  # a dotted name whose parent is missing
            found = False
        if not found:
            absent.append(requirement)
    return absent


def install_carried_wheels(argv: list[str]) -> dict:
    """With `--wheels DIR` in argv: install what is missing; return what and how long."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--wheels", type=Path)
    wheels = parser.parse_known_args(argv[1:])[0].wheels
    started = time.perf_counter()
    absent = missing(carried_requirements()) if wheels else []
    if absent:
        command = [sys.executable, "-m", "pip", "install", "--no-index", "--no-deps"]
        command += ["--find-links", str(wheels), *absent]
        # A distribution's Python may be marked externally managed: the kit owns this machine.
        env = {**os.environ, "PIP_BREAK_SYSTEM_PACKAGES": "1"}
        subprocess.run(command, env=env, check=True, timeout=PIP_TIMEOUT_S)
        importlib.invalidate_caches()
    return {"installed": absent, "install_s": round(time.perf_counter() - started, 1)}
