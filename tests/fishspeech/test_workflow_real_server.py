"""The whole workflow through the REAL fish-speech 0.1.0 server: the `snakemake` command, the
server launched by the `server` rule, real WAVs read back; and its failures, each within its
timeout with the cause in the message. The server starts in about 20 s here: runs are few."""

import copy
import json
import re
import shutil
import time
from pathlib import Path

import pytest

from tests.fishspeech.conftest import ITEMS, assert_complete_output, fish_project, sha
from tests.workflow_runner import Project, assert_ok

pytestmark = pytest.mark.fishspeech

RUN_TIMEOUT_S = 300
PLAN_TIMEOUT_S = 60
# For the start-up failures: far above the time they take, far below a hang.
STARTUP_TIMEOUT_S = 60


def logs(project: Project, kind: str) -> str:
    return "".join(p.read_text() for p in sorted((project.out / "logs" / kind).rglob("*.log")))


def server_workdirs(project: Project) -> list[Path]:
    """The working folders of the run's generation jobs' servers (one per job)."""
    return sorted(p for p in (project.out / "work" / "servers").glob("*/*") if p.is_dir())


def running(pid: int) -> bool:
    """Alive and not a zombie (a container's init may never reap it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def processes_in(folder: Path) -> list[int]:
    """Live processes whose working directory is inside `folder`."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and running(int(proc.name)):
                if (proc / "cwd").resolve().is_relative_to(folder.resolve()):
                    found.append(int(proc.name))
        except OSError:
            continue
    return found


@pytest.fixture(scope="module")
def first_run(fish_speech, tmp_path_factory) -> Project:
    project = fish_project(tmp_path_factory.mktemp("real-server"), fish_speech)
    started = time.monotonic()
    assert_ok(project.run(timeout=RUN_TIMEOUT_S))
    startup = re.search(r"server ready at \S+ after ([\d.]+) s", logs(project, "speak"))
    print(
        f"\nfull run through the real server: {time.monotonic() - started:.1f} s "
        f"(server start-up {startup[1]} s)"
    )
    return project


def test_full_run_through_the_real_server(first_run, fish_speech):
    project = first_run
    assert_complete_output(project)
    wavs = project.wavs()
    assert {"audio/en/alice/en0.wav", "audio/en/bob/en5.wav"} <= set(wavs)
    assert sha(wavs["audio/en/alice/en0.wav"]) != sha(wavs["audio/en/bob/en0.wav"])

    # 0.1.0 has no /v1/references/*: the voices went into the server's working directory.
    server_log = logs(project, "speak")
    ready = r"\[r0\] server ready at .* 2 voice\(s\) verified \(folder registry\)"
    assert re.search(ready, server_log)
    assert "Finished server process" in server_log  # stopped cleanly when its shards were done
    (workdir,) = server_workdirs(project)
    for voice, spec in project.config["voices"].items():
        folder = workdir / "r0" / "references" / voice
        assert sha(folder / f"{voice}.wav") == sha(Path(spec["audio"]))
        assert (folder / f"{voice}.lab").read_text() == spec["text"]

    files = json.loads((project.out / "provenance" / "checkpoint.json").read_text())["files"]
    assert files["model.pth"]["sha256"] == sha(fish_speech.checkpoint_dir / "model.pth")
    assert files["decoder"]["path"] == str(fish_speech.checkpoint_dir / "codec.pth")

    again = project.run("-n", timeout=PLAN_TIMEOUT_S)
    assert_ok(again)
    assert "Nothing to be done" in again.stdout, again.stdout[-3000:]


def test_same_config_twice_gives_identical_wavs(first_run):
    second = Project(root=first_run.root, config=copy.deepcopy(first_run.config))
    second.config["output_dir"] = str(first_run.root / "out-again")
    assert_ok(second.run(timeout=RUN_TIMEOUT_S))
    first = {name: sha(path) for name, path in first_run.wavs().items()}
    assert len(first) == ITEMS
    assert {name: sha(path) for name, path in second.wavs().items()} == first
    provenance = [p.out / "provenance" / "checkpoint.json" for p in (first_run, second)]
    assert provenance[0].read_text() == provenance[1].read_text()


def without_model(root: Path, fish) -> dict:
    copied = shutil.copytree(fish.checkpoint_dir, root / "checkpoint-without-model")
    (copied / "model.pth").unlink()
    return {"checkpoint_dir": str(copied)}


PLANNING_FAILURES = {
    "missing-checkpoint-dir": (
        lambda root, fish: {"checkpoint_dir": str(root / "no-such-checkpoint")},
        r"server\.fish_speech\.checkpoint_dir: \S*no-such-checkpoint is not a directory",
    ),
    "missing-model-file": (
        without_model,
        r"server\.fish_speech\.checkpoint_dir: \S*checkpoint-without-model holds neither checkpoint"
        r" generation; S1 \(OpenAudio S1 / S1-mini\) needs model\.pth",
    ),
    "missing-server-env": (
        lambda root, fish: {"python": str(root / "no-env" / "bin" / "python")},
        r"server\.fish_speech\.python: \S*no-env/bin/python is not an executable Python",
    ),
}


@pytest.mark.parametrize("case", PLANNING_FAILURES)
def test_planning_fails_on_a_missing_checkpoint_or_environment(case, fish_speech, tmp_path):
    patch, message = PLANNING_FAILURES[case]
    project = fish_project(tmp_path, fish_speech, **patch(tmp_path, fish_speech))
    started = time.monotonic()
    result = project.run("-n", timeout=PLAN_TIMEOUT_S)
    elapsed = time.monotonic() - started
    print(f"\n{case}: planning failed after {elapsed:.1f} s")
    assert result.returncode != 0
    assert re.search(message, result.stdout), result.stdout[-3000:]
    assert not project.out.exists()


def truncated_model(root: Path, fish) -> dict:
    copied = shutil.copytree(fish.checkpoint_dir, root / "checkpoint-truncated")
    model = copied / "model.pth"
    model.write_bytes(model.read_bytes()[: model.stat().st_size // 2])
    return {"checkpoint_dir": str(copied)}


START_FAILURES = {
    # The model loader thread dies; the server itself would hang, never healthy, ignoring SIGTERM.
    "truncated-model": (
        truncated_model,
        "the server failed while loading (its log shows 'Exception in thread')",
        "RuntimeError: PytorchStreamReader failed reading zip archive",
    ),
    # The server exits at once.
    "crashing-extra-args": (
        lambda root, fish: {"extra_args": ["--no-such-flag"]},
        "the server process exited during start-up",
        "error: unrecognized arguments: --no-such-flag",
    ),
}


@pytest.mark.parametrize("case", START_FAILURES)
def test_a_server_that_dies_while_starting_fails_the_run_fast(case, fish_speech, tmp_path):
    patch, error, cause = START_FAILURES[case]
    project = fish_project(tmp_path, fish_speech, **patch(tmp_path, fish_speech))
    project.config["server"]["startup_timeout_s"] = STARTUP_TIMEOUT_S
    started = time.monotonic()
    result = project.run(timeout=2 * STARTUP_TIMEOUT_S)  # a hang would outlive both
    elapsed = time.monotonic() - started
    print(f"\n{case}: the run failed after {elapsed:.1f} s")
    assert result.returncode != 0
    assert elapsed < STARTUP_TIMEOUT_S
    speak_log = logs(project, "speak")
    for text in (speak_log, result.stdout):
        assert f"the servers failed: {error}" in text, text[-3000:]
        assert cause in text
        assert "--- last lines of" in text
    assert not (project.out / "audio").exists()
    (workdir,) = server_workdirs(project)
    assert not running(int(workdir.name.rsplit("-", 1)[1]))  # the generation job's pid
    assert not processes_in(workdir)  # nor any server replica
