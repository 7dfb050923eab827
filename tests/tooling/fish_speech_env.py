"""The REAL fish-speech API servers on CPU, with tiny random checkpoints, for tests.

Three server versions (VERSIONS): fish-speech 0.1.0 from PyPI, and the `tools.api_server` of two
pinned git commits, d3df505 (last OpenAudio S1 one) and 3dd1f85 (Fish Audio S2). One venv serves
all three (torch and friends must stay out of the workflow venv): it holds 0.1.0 and what the
servers import, built from the recipe files in tests/tooling/fish_speech/ and reused while a stamp
file matches the recipe's hash. A git version's source is extracted into the cache and put first on
PYTHONPATH (the server runs as `python -P -m tools.api_server`); its tiny codec yaml goes into
`<source>/fish_speech/configs/`, where Hydra looks: beside the code, which is never edited.

Where a git source comes from, first found wins:
1. FISHFLOW_FISH_SPEECH_SOURCE_D3DF505 / FISHFLOW_FISH_SPEECH_SOURCE_3DD1F85: a tarball or a
   checkout of that commit (set but missing is an error, not a fall-through);
2. `../shared/vendor/fish-speech-<commit>.tar.gz` beside the repository root;
3. GitHub's tarball of the exact commit, where the machine reaches github.com.
Otherwise SourceUnavailable says what was tried (tests skip, or fail under CI=true).

Everything is cached under $FISHFLOW_TEST_CACHE (default `<repo>/.cache`), so worktrees and
sessions can share one built env; builds are serialised with flock. From the repository root:

    python -m tests.tooling.fish_speech_env ensure [VERSION]           # build or reuse; python
    python -m tests.tooling.fish_speech_env path                       # its python (no build)
    python -m tests.tooling.fish_speech_env checkpoints DIR [VERSION]  # tiny checkpoints; flags
        [--shape NAME]  # another size of the same architecture (SHAPES in tiny_checkpoints.py)

VERSION: 0.1.0 (default), d3df505 or 3dd1f85.
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
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from fishflow.serving.replicas import die_with_parent, free_loopback_port

REPO_ROOT = Path(__file__).resolve().parents[2]
RECIPE_DIR = Path(__file__).with_name("fish_speech")
TINY_CHECKPOINTS_SCRIPT = Path(__file__).with_name("tiny_checkpoints.py")
# Overridable so worktrees and sessions can share one built env (several GB, minutes to build).
CACHE_ROOT = Path(os.environ.get("FISHFLOW_TEST_CACHE") or REPO_ROOT / ".cache")
CACHE_DIR = CACHE_ROOT / "fish-speech"
ENV_DIR = CACHE_DIR / "venv"
# The venv is made by this interpreter, so it has the same Python version.
SITE_PACKAGES = ENV_DIR / "lib" / "python{}.{}".format(*sys.version_info[:2]) / "site-packages"
STAMP = ENV_DIR / "fishflow-recipe.sha256"
BUILD_LOG = CACHE_DIR / "build.log"
CHECKPOINT_CACHE = CACHE_DIR / "tiny-checkpoints"
CODEC_CONFIG_NAME = "fishflow_tiny_codec"
# What the env is built from (the per-generation codec yamls beside them go into the sources).
ENV_RECIPE_FILES = (
    "constraints.txt",
    "requirements.txt",
    "requirements-no-deps.txt",
    "torchaudio",
    f"{CODEC_CONFIG_NAME}.yaml",
)

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
    for name in ENV_RECIPE_FILES:
        top = RECIPE_DIR / name
        for path in sorted([top, *top.rglob("*")]):
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(str(path.relative_to(RECIPE_DIR)).encode() + b"\0")
                digest.update(path.read_bytes())
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


@dataclass(frozen=True)
class ServerVersion:
    """One fish-speech server version the tests run."""

    name: str  # "0.1.0", or the commit's short hash
    generation: str  # checkpoint layout and codec: "s1" or "s2" (see tiny_checkpoints.py)
    commit: str | None = None  # full git hash; None: the PyPI release installed in the env

    @property
    def codec_config_name(self) -> str:
        return CODEC_CONFIG_NAMES[self.generation]

    @property
    def source_variable(self) -> str:
        return f"FISHFLOW_FISH_SPEECH_SOURCE_{self.name.upper()}"


PYPI_0_1_0 = ServerVersion("0.1.0", "s1")
GIT_S1 = ServerVersion("d3df505", "s1", "d3df50503b36314a964f66cac1af1e19e95bcfa3")
GIT_S2 = ServerVersion("3dd1f85", "s2", "3dd1f85c402ee6f0a17c2971d3b0dd8d881ca139")
VERSIONS = {version.name: version for version in (PYPI_0_1_0, GIT_S1, GIT_S2)}
CODEC_CONFIG_NAMES = {"s1": CODEC_CONFIG_NAME, "s2": f"{CODEC_CONFIG_NAME}_s2"}
VENDOR_DIR = REPO_ROOT.parent / "shared" / "vendor"
SOURCE_DIR = CACHE_DIR / "sources"
DOWNLOAD_URL = "https://codeload.github.com/fishaudio/fish-speech/tar.gz/{commit}"
# Offline machines fail at once; a reachable GitHub sends a ~100 kB tarball well within this.
DOWNLOAD_TIMEOUT_S = 30
# What a git source must contain to be a fish-speech server.
SOURCE_MARKERS = ("tools/api_server.py", "fish_speech/configs")


class SourceUnavailable(FishSpeechEnvError):
    """No source of a pinned git version could be found or downloaded."""


@dataclass(frozen=True)
class ServerInstall:
    """What runs one server version: the env's python and, for a git version, its source."""

    version: ServerVersion
    python: Path
    source: Path | None  # put first on PYTHONPATH; None: the env's fish-speech 0.1.0

    def environment(self) -> dict[str, str]:
        """os.environ for the server and the checkpoint builder (PYTHONPATH: the source only)."""
        env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
        return {**env, "PYTHONPATH": str(self.source)} if self.source else env


def ensure_install(version: ServerVersion = PYPI_0_1_0) -> ServerInstall:
    """The env, and a git version's prepared source; SourceUnavailable if it cannot be had."""
    python = ensure_env()
    source = prepared_source(version) if version.commit else None
    return ServerInstall(version, python, source)


def locate_source(version: ServerVersion) -> Path:
    """A tarball or checkout of the version's commit: the setting, the vendor copy, a download."""
    explicit = os.environ.get(version.source_variable)
    if explicit:
        if not Path(explicit).exists():
            raise FishSpeechEnvError(f"{version.source_variable}={explicit} does not exist")
        return Path(explicit)
    vendored = VENDOR_DIR / f"fish-speech-{version.name}.tar.gz"
    if vendored.is_file():
        return vendored
    return _download_source(version, tried=[f"{version.source_variable} not set", str(vendored)])


def _download_source(version: ServerVersion, tried: list[str]) -> Path:
    target = CACHE_DIR / "downloads" / f"fish-speech-{version.commit}.tar.gz"
    if target.is_file():
        return target
    url = DOWNLOAD_URL.format(commit=version.commit)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
            partial.write_bytes(response.read())
    except (OSError, urllib.error.URLError) as error:
        partial.unlink(missing_ok=True)
        raise SourceUnavailable(
            f"no source for fish-speech {version.name}: tried {', '.join(tried)}, "
            f"and {url}: {error}"
        ) from None
    partial.rename(target)
    return target


def prepared_source(version: ServerVersion) -> Path:
    """The version's source extracted into the cache with its tiny codec yaml in configs/;
    reused while the source and the yaml are unchanged."""
    SOURCE_DIR.mkdir(parents=True, exist_ok=True)
    # Locked from the start: concurrent sessions must not download into one file either.
    with _exclusive_lock(CACHE_DIR / ".lock"):
        origin = locate_source(version)
        codec_yaml = RECIPE_DIR / f"{version.codec_config_name}.yaml"
        key = hashlib.sha256(_content_hash(origin).encode() + codec_yaml.read_bytes())
        folder = SOURCE_DIR / f"{version.name}-{key.hexdigest()[:16]}"
        if not folder.is_dir():
            partial = Path(tempfile.mkdtemp(dir=SOURCE_DIR, prefix=".partial-"))
            try:
                tree = _unpack(origin, partial)
                shutil.copy2(codec_yaml, tree / "fish_speech" / "configs" / codec_yaml.name)
                _check_source(version, tree)
                tree.rename(folder)  # complete or absent, never half-written
            finally:
                shutil.rmtree(partial)
    return folder


def _content_hash(origin: Path) -> str:
    digest = hashlib.sha256()
    files = [origin] if origin.is_file() else sorted(origin.rglob("*"))
    for path in files:
        if path.is_file() and ".git" not in path.relative_to(origin).parts:
            digest.update(str(path.relative_to(origin)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _unpack(origin: Path, into: Path) -> Path:
    """Copy a checkout (without .git), or extract a tarball (git archive and GitHub's tarballs
    both hold one top folder); return the source tree's root."""
    if origin.is_dir():
        return Path(shutil.copytree(origin, into / "tree", ignore=shutil.ignore_patterns(".git")))
    with tarfile.open(origin) as archive:
        archive.extractall(into, filter="data")
    (top,) = [path for path in into.iterdir() if path.is_dir()]
    return top


def _check_source(version: ServerVersion, tree: Path) -> None:
    """The tree must be a fish-speech source whose server is what `python -P -m tools.api_server`
    imports with it first on PYTHONPATH (not the env's 0.1.0)."""
    missing = [marker for marker in SOURCE_MARKERS if not (tree / marker).exists()]
    if missing:
        raise FishSpeechEnvError(f"not a fish-speech source for {version.name}: no {missing}")
    install = ServerInstall(version, env_python(), tree)
    # Both are namespace packages (no __init__.py), in the source as in the env's 0.1.0: the
    # modules tell where they came from.
    modules = "tools.api_server as a, fish_speech.tokenizer as b"
    check = f"import {modules}; print(a.__file__, b.__file__)"
    result = subprocess.run(
        [str(install.python), "-P", "-c", check],
        env=install.environment(),
        capture_output=True,
        text=True,
        timeout=CHECK_TIMEOUT_S,
    )
    if result.returncode != 0 or result.stdout.count(str(tree)) != 2:
        raise FishSpeechEnvError(
            f"fish-speech {version.name} from {tree} does not import as the server:\n"
            f"{result.stdout}{result.stderr[-3000:]}"
        )


def build_tiny_checkpoints(
    dest: Path, version: ServerVersion = PYPI_0_1_0, shape: str = "tiny"
) -> dict[str, str]:
    """Write deterministic random checkpoints of the version's generation into dest; return the
    server's flag values."""
    install = ensure_install(version)
    dest.mkdir(parents=True, exist_ok=True)
    log = dest / "build.log"
    script = [str(TINY_CHECKPOINTS_SCRIPT), str(dest), version.generation, shape]
    with log.open("w") as handle:
        result = subprocess.run(
            # -P: the script's folder holds fish_speech/ (the recipe), which must not shadow
            # the server's package.
            [str(install.python), "-P", *script, version.codec_config_name],
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=install.environment(),
            timeout=CHECKPOINTS_TIMEOUT_S,
        )
    if result.returncode != 0:
        raise FishSpeechEnvError(f"tiny checkpoints failed\n{_tail(log)}")
    return checkpoint_flags(dest, version)


def checkpoint_flags(folder: Path, version: ServerVersion = PYPI_0_1_0) -> dict[str, str]:
    return {
        "llama_checkpoint_path": str(folder),
        "decoder_checkpoint_path": str(folder / "codec.pth"),
        "decoder_config_name": version.codec_config_name,
    }


def cached_tiny_checkpoints(version: ServerVersion = PYPI_0_1_0) -> Path:
    """Build the tiny checkpoints once per recipe, source and generator script (~10 s saved)."""
    install = ensure_install(version)
    key = hashlib.sha256(recipe_hash().encode() + TINY_CHECKPOINTS_SCRIPT.read_bytes())
    key.update(f"{version.generation}|{install.source}".encode())
    key.update((RECIPE_DIR / f"{version.codec_config_name}.yaml").read_bytes())
    folder = CHECKPOINT_CACHE / f"{version.name}-{key.hexdigest()[:16]}"
    if folder.is_dir():
        return folder
    CHECKPOINT_CACHE.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(dir=CHECKPOINT_CACHE, prefix=".partial-"))
    build_tiny_checkpoints(partial, version)
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
    (or in the git source on PYTHONPATH) and -P keeps the cwd off sys.path. References are read
    from (and, for an unknown reference_id, created in) `./references/<id>/` relative to the cwd.
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
    version: ServerVersion = PYPI_0_1_0,
) -> Iterator[RunningServer]:
    """Start the real server in workdir on a free loopback port; always stop it on exit."""
    install = ensure_install(version)
    port = free_loopback_port()
    flags = [*extra_flags, *(["--api-key", api_key] if api_key else [])]
    command = launch_command(install.python, checkpoints, port=port, extra_flags=flags)
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
            env=install.environment(),
            start_new_session=True,
            # SIGTERM if the test process dies without a teardown.
            preexec_fn=functools.partial(die_with_parent, os.getpid(), signal.SIGTERM),
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
    ensure = commands.add_parser("ensure", help="build or reuse the env (and a git source)")
    commands.add_parser("path", help="print the server venv's python (no build)")
    checkpoints = commands.add_parser("checkpoints", help="write tiny checkpoints into DIR")
    checkpoints.add_argument("dir", type=Path)
    checkpoints.add_argument("--shape", default="tiny", help="a SHAPES key of tiny_checkpoints.py")
    for command in (ensure, checkpoints):
        command.add_argument("version", nargs="?", choices=VERSIONS, default=PYPI_0_1_0.name)
    args = parser.parse_args(argv)
    try:
        if args.command == "ensure":
            install = ensure_install(VERSIONS[args.version])
            print(install.python, *([f"PYTHONPATH={install.source}"] if install.source else []))
        elif args.command == "path":
            print(env_python())
        else:
            flags = build_tiny_checkpoints(args.dir.resolve(), VERSIONS[args.version], args.shape)
            print(json.dumps(flags, indent=2))
    except FishSpeechEnvError as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
