"""The REAL fish-speech 0.1.0 API server on CPU, with tiny random checkpoints, for tests.

The server gets its own venv in .cache/fish-speech-0.1.0/venv (torch and friends must stay out of
the workflow venv), built from the recipe files in tests/tooling/fish_speech/ and reused while a
stamp file matches the recipe's hash. Run from the repository root:

    python -m tests.tooling.fish_speech_env ensure            # build or reuse; print its python
    python -m tests.tooling.fish_speech_env path              # print its python (no build)
    python -m tests.tooling.fish_speech_env checkpoints DIR   # tiny checkpoints; print the flags
"""

from __future__ import annotations

import argparse
import fcntl
import functools
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from fishflow.launch import die_with_parent, free_loopback_port

REPO_ROOT = Path(__file__).resolve().parents[2]
RECIPE_DIR = Path(__file__).with_name("fish_speech")
TINY_CHECKPOINTS_SCRIPT = Path(__file__).with_name("tiny_checkpoints.py")
CACHE_DIR = REPO_ROOT / ".cache" / "fish-speech-0.1.0"
ENV_DIR = CACHE_DIR / "venv"
# The venv is made by this interpreter, so it has the same Python version.
SITE_PACKAGES = ENV_DIR / "lib" / "python{}.{}".format(*sys.version_info[:2]) / "site-packages"
STAMP = ENV_DIR / "fishflow-recipe.sha256"
BUILD_LOG = CACHE_DIR / "build.log"
CHECKPOINT_CACHE = CACHE_DIR / "tiny-checkpoints"
CODEC_CONFIG_NAME = "fishflow_tiny_codec"

# pip steps, in order. torch comes first and alone so a missing CPU wheel fails fast and clearly;
# the constraints file pins torch==2.13.0+cpu, so no later step can swap in a CUDA build.
INSTALL_STEPS = (
    ("-c", "constraints.txt", "torch"),
    ("--no-deps", "-r", "requirements-no-deps.txt"),
    ("-c", "constraints.txt", "-r", "requirements.txt"),
)
PIP_STEP_TIMEOUT_S = 900
CHECK_TIMEOUT_S = 120
CHECKPOINTS_TIMEOUT_S = 300
HEALTH_TIMEOUT_S = 180
STOP_TIMEOUT_S = 15
LOG_TAIL_LINES = 40
# The model loads in a worker thread; if that dies (bad checkpoint), the server hangs un-healthy
# forever instead of exiting, and this line in its log is the only sign.
DEAD_LOADER_MARK = "Exception in thread"
# Imports what the server imports, and refuses a CUDA torch (the env must stay CPU-only).
ENV_CHECK = (
    "import torch, tools.api_server; "
    "assert torch.version.cuda is None, f'CUDA torch {torch.__version__} in the server env'"
)


class FishSpeechEnvError(RuntimeError):
    """The server env, the checkpoints or the server itself could not be set up."""


def env_python() -> Path:
    return ENV_DIR / "bin" / "python"


def recipe_hash() -> str:
    """Hash of what shapes the env: the base interpreter (the venv links to it), the pip steps
    and the recipe files."""
    digest = hashlib.sha256()
    digest.update(f"{sys.base_prefix}|{sys.version_info[:2]}|{INSTALL_STEPS}".encode())
    for path in sorted(RECIPE_DIR.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(RECIPE_DIR)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def ensure_env() -> Path:
    """Build the server venv unless its stamp matches the recipe; return the venv's python."""
    expected = recipe_hash()
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(CACHE_DIR / ".lock"):
        if not (STAMP.is_file() and STAMP.read_text() == expected):
            _build_env()
            STAMP.write_text(expected)  # last, so an interrupted build is redone
    return env_python()


@contextmanager
def _exclusive_lock(path: Path) -> Iterator[None]:
    """Serialise builds between concurrent test sessions."""
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _build_env() -> None:
    shutil.rmtree(ENV_DIR, ignore_errors=True)
    BUILD_LOG.write_text("")
    _run_logged([sys.executable, "-m", "venv", str(ENV_DIR)], timeout=CHECK_TIMEOUT_S)
    for step in INSTALL_STEPS:
        _run_logged(
            [str(env_python()), "-m", "pip", "install", "--no-input", *step],
            timeout=PIP_STEP_TIMEOUT_S,
        )
    _add_static_pieces(SITE_PACKAGES)
    _run_logged([str(env_python()), "-P", "-c", ENV_CHECK], timeout=CHECK_TIMEOUT_S)


def _run_logged(command: Sequence[str], timeout: float) -> None:
    """Run a build step in RECIPE_DIR (pip's relative -r/-c paths), appending to BUILD_LOG."""
    with BUILD_LOG.open("a") as log:
        log.write(f"\n$ {' '.join(command)}\n")
        log.flush()
        try:
            result = subprocess.run(
                command,
                cwd=RECIPE_DIR,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
            )
        except subprocess.TimeoutExpired:
            raise FishSpeechEnvError(
                f"timed out after {timeout:.0f}s: {' '.join(command)}\n{_tail(BUILD_LOG)}"
            ) from None
    if result.returncode != 0:
        raise FishSpeechEnvError(
            f"exit {result.returncode}: {' '.join(command)}\n{_tail(BUILD_LOG)}"
        )


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    text = path.read_text(errors="replace") if path.is_file() else ""
    return f"--- last {lines} lines of {path} ---\n" + "\n".join(text.splitlines()[-lines:])


def _add_static_pieces(site_packages: Path) -> None:
    # No torchaudio build exists for torch 2.13: a soundfile/soxr stand-in covers what's used.
    shutil.copytree(
        RECIPE_DIR / "torchaudio",
        site_packages / "torchaudio",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    # The server calls pyrootutils.setup_root(__file__, indicator=".project-root").
    (site_packages / ".project-root").touch()
    # Hydra reads codec configs only from the package's own configs/ folder.
    shutil.copy2(
        RECIPE_DIR / f"{CODEC_CONFIG_NAME}.yaml",
        site_packages / "fish_speech" / "configs" / f"{CODEC_CONFIG_NAME}.yaml",
    )


def build_tiny_checkpoints(dest: Path) -> dict[str, str]:
    """Write deterministic tiny random checkpoints into dest; return the server's flag values."""
    python = ensure_env()
    dest.mkdir(parents=True, exist_ok=True)
    log = dest / "build.log"
    with log.open("w") as handle:
        result = subprocess.run(
            # -P: the script's folder holds fish_speech/ (the recipe), which must not shadow
            # the installed package.
            [str(python), "-P", str(TINY_CHECKPOINTS_SCRIPT), str(dest), CODEC_CONFIG_NAME],
            stdout=handle,
            stderr=subprocess.STDOUT,
            timeout=CHECKPOINTS_TIMEOUT_S,
        )
    if result.returncode != 0:
        raise FishSpeechEnvError(f"tiny checkpoints failed\n{_tail(log)}")
    return {
        "llama_checkpoint_path": str(dest),
        "decoder_checkpoint_path": str(dest / "codec.pth"),
        "decoder_config_name": CODEC_CONFIG_NAME,
    }


def cached_tiny_checkpoints() -> Path:
    """Build the tiny checkpoints once per recipe and generator script (about 10 s saved)."""
    key = hashlib.sha256(recipe_hash().encode() + TINY_CHECKPOINTS_SCRIPT.read_bytes())
    folder = CHECKPOINT_CACHE / key.hexdigest()[:16]
    if folder.is_dir():
        return folder
    CHECKPOINT_CACHE.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(dir=CHECKPOINT_CACHE, prefix=".partial-"))
    build_tiny_checkpoints(partial)
    try:
        partial.rename(folder)  # complete or absent, never half-written
    except OSError:  # a concurrent session renamed its identical copy first
        shutil.rmtree(partial)
    return folder


def launch_command(
    python: Path | str,
    checkpoints: dict[str, str],
    host: str = "127.0.0.1",
    port: int = 8080,
    extra_flags: Sequence[str] = (),
) -> list[str]:
    """The server's command line. Any cwd works: `tools` is a top-level package in site-packages
    and -P keeps the cwd off sys.path. References are read from (and, for an unknown
    reference_id, created in) `./references/<id>/` relative to the cwd.
    """
    return [
        str(python),
        "-P",
        "-m",
        "tools.api_server",
        "--listen",
        f"{host}:{port}",
        "--llama-checkpoint-path",
        checkpoints["llama_checkpoint_path"],
        "--decoder-checkpoint-path",
        checkpoints["decoder_checkpoint_path"],
        "--decoder-config-name",
        checkpoints["decoder_config_name"],
        "--device",
        "cpu",
        *extra_flags,
    ]


@dataclass(frozen=True)
class RunningServer:
    url: str
    workdir: Path
    log: Path
    start_seconds: float
    api_key: str | None


@contextmanager
def run_server(
    checkpoints: dict[str, str],
    workdir: Path,
    extra_flags: Sequence[str] = (),
    api_key: str | None = None,
) -> Iterator[RunningServer]:
    """Start the real server in workdir on a free loopback port; always stop it on exit."""
    port = free_loopback_port()
    flags = [*extra_flags, *(["--api-key", api_key] if api_key else [])]
    command = launch_command(ensure_env(), checkpoints, port=port, extra_flags=flags)
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "server.log"
    started = time.monotonic()
    with log.open("w") as handle:
        # Own session: the teardown signals the whole group (uvicorn forks with --workers > 1).
        process = subprocess.Popen(
            command,
            cwd=workdir,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            # SIGTERM if the test process dies without a teardown.
            preexec_fn=functools.partial(die_with_parent, signal.SIGTERM),
        )
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_healthy(process, url, log, api_key)
        yield RunningServer(url, workdir, log, time.monotonic() - started, api_key)
    finally:
        _stop(process)


def _wait_healthy(process: subprocess.Popen, url: str, log: Path, api_key: str | None) -> None:
    """Poll /v1/health (it answers only after the server's fixed 1024-token warm-up)."""
    request = urllib.request.Request(f"{url}/v1/health")
    if api_key:
        request.add_header("Authorization", f"Bearer {api_key}")
    deadline = time.monotonic() + HEALTH_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise FishSpeechEnvError(f"server exited with {process.returncode}\n{_tail(log)}")
        if DEAD_LOADER_MARK in log.read_text(errors="replace"):
            raise FishSpeechEnvError(f"server failed to load its models\n{_tail(log)}")
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise FishSpeechEnvError(f"server not healthy after {HEALTH_TIMEOUT_S}s\n{_tail(log)}")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.tooling.fish_speech_env")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("ensure", help="build or reuse the server venv; print its python")
    commands.add_parser("path", help="print the server venv's python (no build)")
    checkpoints = commands.add_parser("checkpoints", help="write tiny checkpoints into DIR")
    checkpoints.add_argument("dir", type=Path)
    args = parser.parse_args(argv)
    try:
        if args.command == "ensure":
            print(ensure_env())
        elif args.command == "path":
            print(env_python())
        else:
            print(json.dumps(build_tiny_checkpoints(args.dir.resolve()), indent=2))
    except FishSpeechEnvError as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
