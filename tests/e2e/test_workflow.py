"""End-to-end: the real `snakemake` command, the real demo server, real WAVs read back."""

import hashlib
import re
import signal
import time
from collections import Counter

import soundfile

from fishflow import atomic
from tests.helpers import write_jsonl, write_wav
from tests.workflow_runner import assert_ok, kill_group

ITEMS = 2 * 5 * 2  # languages x rows x voices


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def requested(project):
    return Counter((r["reference_id"], r["text"]) for r in project.tts_requests())


def test_fresh_run_layout_manifests_and_nothing_left_to_do(project):
    plan = project.run("-n")
    assert_ok(plan)
    # One generation job per language here (3 shards per voice, 8 shards per job: 4 per voice).
    assert re.search(r"speak\s+2\b", plan.stdout)
    assert not re.search(r"\b(server|generate|validate)\s+\d", plan.stdout)
    assert not project.out.exists()

    result = project.run()
    assert_ok(result)
    assert "fishflow plan: 2 language(s)" in result.stdout
    assert f"items: {ITEMS} total, 0 done, {ITEMS} to do" in result.stdout

    wavs = project.wavs()
    assert len(wavs) == ITEMS
    assert "audio/en/alice/en0.wav" in wavs and "audio/de/bob/de4.wav" in wavs
    for path in wavs.values():
        info = soundfile.info(str(path))
        assert (info.samplerate, info.channels, info.subtype) == (44100, 1, "PCM_16")
        assert info.frames / info.samplerate > 0.3
    assert sha(wavs["audio/en/alice/en0.wav"]) != sha(wavs["audio/en/bob/en0.wav"])

    metadata = project.manifest("metadata", "en")
    assert [(r["voice"], r["id"]) for r in metadata][:3] == [
        ("alice", "en0"),
        ("alice", "en1"),
        ("alice", "en2"),
    ]
    record = metadata[0]
    assert record["path"] == "audio/en/alice/en0.wav"
    assert record["sha256"] == sha(project.out / record["path"])
    assert record["sample_rate"] == 44100 and record["duration_s"] > 0.3
    assert record["backend"].startswith("demo/espeak/")
    assert set(record) >= {"text", "seed", "parameters", "generation_s", "attempts", "bytes"}
    assert project.manifest("failed", "en") == []
    assert project.summary()["total"] == {"ok": ITEMS, "failed": 0}
    assert (project.out / "logs").is_dir()
    assert sum(requested(project).values()) == ITEMS  # each item exactly once

    again = project.run("-n")
    assert_ok(again)
    assert "Nothing to be done" in again.stdout
    assert f"{ITEMS} done, 0 to do" in again.stdout


def test_second_run_generates_nothing_and_keeps_files(project):
    assert_ok(project.run())
    before = {name: (sha(p), p.stat().st_mtime_ns) for name, p in project.wavs().items()}
    assert_ok(project.run())
    assert sum(requested(project).values()) == ITEMS
    assert {n: (sha(p), p.stat().st_mtime_ns) for n, p in project.wavs().items()} == before


def test_changed_voice_reference_regenerates_exactly_that_voice(project):
    assert_ok(project.run())
    before = {name: sha(p) for name, p in project.wavs().items()}
    write_wav(project.root / "voices" / "bob.wav", freq=400, seconds=2.5)
    result = project.run()
    assert_ok(result)
    counts = requested(project)
    assert {voice for (voice, _), n in counts.items() if n == 2} == {"bob"}
    assert sum(counts.values()) == ITEMS + ITEMS // 2
    after = {name: sha(p) for name, p in project.wavs().items()}
    for name in before:
        changed = before[name] != after[name]
        assert changed == ("/bob/" in name), name
    metadata = {r["path"]: r["sha256"] for r in project.manifest("metadata", "de")}
    assert all(metadata[name] == after[name] for name in metadata)


def test_appended_rows_add_only_new_work(project):
    assert_ok(project.run())
    path = project.root / "en.jsonl"
    rows = atomic.read_jsonl(path) + [{"id": "en5", "text": "An appended sentence."}]
    write_jsonl(path, rows)
    assert_ok(project.run())
    counts = requested(project)
    assert sum(counts.values()) == ITEMS + 2
    assert counts[("alice", "An appended sentence.")] == 1
    assert [r["id"] for r in project.manifest("metadata", "en") if r["voice"] == "alice"][
        -1
    ] == "en5"


def test_killed_run_resumes_with_only_missing_items(project):
    project.config["server"]["demo"] = {"latency_s": 0.4}
    process = project.start()
    journals = project.out / "work" / "progress"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        done = (
            sum(len(atomic.read_jsonl(j)) for j in journals.rglob("*.jsonl"))
            if journals.exists()
            else 0
        )
        if done >= 3:
            break
        time.sleep(0.1)
    kill_group(process, signal.SIGKILL)  # the node dies: no clean-up of any kind
    process.wait(timeout=30)
    finished = {
        (r["voice"], r["text"]) for j in journals.rglob("*.jsonl") for r in atomic.read_jsonl(j)
    }
    assert 3 <= len(finished) < ITEMS

    assert_ok(project.run("--unlock"))
    project.config["server"]["demo"] = {"latency_s": 0.0}
    assert_ok(project.run())
    counts = requested(project)
    assert len(counts) == ITEMS
    # Items finished before the kill were never asked for again; the others at most once more
    # (the one in flight per shard when the kill came).
    assert all(counts[key] == 1 for key in finished)
    assert all(n <= 2 for n in counts.values())
    assert (
        len(project.manifest("metadata", "en")) + len(project.manifest("metadata", "de")) == ITEMS
    )
    assert len({r["id"] + r["voice"] for r in project.manifest("metadata", "en")}) == ITEMS // 2


def test_failing_shard_fails_its_job_siblings_kept_and_only_missing_items_rerun(project):
    project.config["server"]["demo"] = {"fail_pattern": "^Is this a question"}
    result = project.run()
    assert result.returncode != 0
    # The job fails the normal way and names the shard; its siblings finished and journaled.
    log = (project.out / "logs" / "speak" / "en" / "b00000.log").read_text()
    for voice in ("alice", "bob"):
        assert f"shard en/{voice}/00001: en3: " in log
    assert "HTTP 500" in log and "2 of 6 shard(s) did not complete" in log
    assert "2 of 6 shard(s) did not complete" in result.stdout
    journals = project.out / "work" / "progress"
    kept = {
        (j.parent.parent.name, j.parent.name, j.stem): {r["id"] for r in atomic.read_jsonl(j)}
        for j in journals.rglob("*.jsonl")
    }
    for voice in ("alice", "bob"):
        assert kept[("en", voice, "00000")] == {"en0", "en1"}
        assert kept[("en", voice, "00002")] == {"en4"}
        assert kept[("en", voice, "00001")] == {"en2"}  # en3 failed, en2 beside it did not
    assert not (project.out / "work" / "batches" / "en" / "b00000.jsonl").exists()
    assert (project.out / "work" / "batches" / "de" / "b00000.jsonl").exists()
    assert not (project.out / "metadata_en.jsonl").exists()
    assert (project.out / "metadata_de.jsonl").exists()
    first = requested(project)

    project.config["server"]["demo"] = {"fail_pattern": None}
    assert_ok(project.run())
    new = requested(project) - first
    assert set(new) == {("alice", "Is this a question?"), ("bob", "Is this a question?")}
    assert len(project.manifest("metadata", "en")) == 10


def test_server_that_never_gets_healthy_fails_with_its_log(project):
    project.config["server"]["demo"] = {"warmup_s": 30}
    project.config["server"]["startup_timeout_s"] = 2
    started = time.monotonic()
    result = project.run(timeout=120)
    assert result.returncode != 0
    assert time.monotonic() - started < 60
    logs = "".join(p.read_text() for p in (project.out / "logs" / "speak").rglob("*.log"))
    assert "did not answer /v1/health within 2 s" in logs
    # The tail of the server's own output, which begins with its command line.
    assert "--- last lines of" in logs and "fishflow: command: " in logs
    assert project.tts_requests() == []
    assert not (project.out / "audio").exists()


def test_permanent_failures_are_recorded_with_their_reason(project):
    # The tone engine speaks 60 ms per character at voice-dependent rates (160-200 wpm): every
    # row but the long one stays under 3.2 s, the long one takes more than 6 s.
    long_text = "This deliberately long sentence runs well past the duration limit set below, " * 2
    path = project.root / "en.jsonl"
    write_jsonl(path, atomic.read_jsonl(path) + [{"id": "en5", "text": long_text.strip()}])
    project.config["server"]["demo"] = {"engine": "tone"}
    project.config["validation"]["max_duration_s"] = 5.0
    assert_ok(project.run())
    failed = project.manifest("failed", "en")
    assert [(r["id"], r["voice"]) for r in failed] == [("en5", "alice"), ("en5", "bob")]
    assert failed[0]["reason"] == "validation:too_long"
    assert "> 5.0 s" in failed[0]["last_error"]
    # One request per validation attempt, each with its own derived seed.
    retries = project.config["validation"]["retries"]
    assert failed[0]["attempts"] == retries + 1
    seeds = {r["seed"] for r in project.tts_requests() if r["text"] == long_text.strip()}
    assert len(seeds) == 2 * (retries + 1)
    assert not (project.out / "audio" / "en" / "alice" / "en5.wav").exists()
    assert len(project.manifest("metadata", "en")) == 10
    assert project.summary()["languages"]["en"]["alice"]["failures"] == {"validation:too_long": 1}
