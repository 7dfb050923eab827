"""The workflow on the real Slurm test cluster with a test-sized copy of profiles/slurm: each batch
is one Slurm job (one sbatch call: the profile asks for no job arrays) that holds its GPU and runs
its own servers, resumed after `scancel`, a failed shard failing its job while the rerun speaks only
what is missing, the plan of a dry run and the account check (issue 3's and issue 12's
acceptance)."""

import hashlib
import json
import re
import subprocess
import time
from collections import Counter

import pytest
import yaml

from fishflow import atomic
from fishflow.layout import Layout
from fishflow.planning.plan import Plan
from tests.e2e.conftest import TEXTS
from tests.helpers import REPO
from tests.slurm.conftest import sbatch_calls, submitted
from tests.workflow_runner import Project, assert_ok, kill_group

pytestmark = pytest.mark.slurm

STARTING = re.compile(
    r"\[(r\d)\] starting demo server on (\S+):\d+ in (\S+) \(CUDA_VISIBLE_DEVICES=(\w+)\)"
)
# 2 languages x 2 voices x 2 shards of 2 items, 2 shards per job (one per voice): four batches
# (Slurm jobs) for the two fake GPUs.
# Small: each process a job starts costs seconds on the 2-core test node.
TEXTS4 = {lang: rows[:4] for lang, rows in TEXTS.items()}
BATCHED = {"shard_size": 2, "shards_per_job": 2}


def requested(project) -> Counter:
    return Counter((r["reference_id"], r["text"]) for r in project.tts_requests())


def requests_per_replica(project) -> Counter:
    """Replica folder name (r0, r1, ...) -> TTS requests its demo server answered."""
    return Counter(
        log.parent.name
        for log in (project.out / "work" / "servers").rglob("requests.jsonl")
        for r in atomic.read_jsonl(log)
        if r["path"] == "/v1/tts"
    )


def journaled(project) -> list[dict]:
    return [
        r
        for j in (project.out / "work" / "progress").rglob("*.jsonl")
        for r in atomic.read_jsonl(j)
    ]


def wait_for(condition, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"no {what} after {timeout} s"
        time.sleep(0.1)


def digests(project) -> dict[str, str]:
    return {name: hashlib.sha256(p.read_bytes()).hexdigest() for name, p in project.wavs().items()}


def untimed(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "generation_s"} for r in records]


def servers_record(project, key) -> dict:
    return json.loads(Layout(project.out).servers_record(*key).read_text())


def local_twin(project, tmp_path) -> Project:
    """The same config run locally (profiles/default), for the audio to compare with."""
    local = Project(
        tmp_path / "local", {**project.config, "output_dir": str(tmp_path / "local/out")}
    )
    local.root.mkdir()
    assert_ok(local.run())
    return local


def test_each_batch_is_one_gpu_slurm_job_running_its_servers_and_matches_a_local_run(
    slurm_project, slurm_cluster, tmp_path
):
    project = slurm_project(TEXTS4, **BATCHED)
    result = project.run(timeout=300)
    assert_ok(result)
    plan = Plan(project.config)
    batches = plan.batch_keys()
    jobs = submitted(result.stdout)
    assert len(jobs) == len(batches) == 4
    # One sbatch call per batch: the profile asks for no job arrays (see the test below).
    assert sbatch_calls(result.stdout) == 4, result.stdout[-5000:]

    # Slurm ran exactly the submitted jobs, each with a GPU of its own allocation.
    records = project.slurm_jobs()
    assert sorted(records) == sorted(jobs)
    for record in records.values():
        assert record["State"] == "COMPLETED", record
        assert "gres/gpu=1" in record["AllocTRES"].split(","), record
        assert record["NodeList"] == slurm_cluster.node
    by_raw_id = {record["JobIDRaw"]: record for record in records.values()}

    # Each batch ran in one Slurm job of its own, which started its one server replica on the
    # GPU Slurm gave it; that server answered every request of the batch's items, once each.
    batch_jobs = []
    for key in batches:
        record = servers_record(project, key)
        assert record["slurm_job_id"] in by_raw_id, (key, record)
        assert record["host"] == slurm_cluster.node
        assert record["servers"]["replicas"] == 1
        [(tag, host, workdir, gpu)] = STARTING.findall(
            Layout(project.out).speak_log(*key).read_text()
        )
        assert (tag, host, gpu) == (
            "r0",
            slurm_cluster.node,
            record["servers"]["cuda_visible_devices"],
        )
        assert gpu in {"0", "1"}
        home = Layout(project.out).server_home(*key, host, record["pid"])
        assert workdir == str(home.resolve() / "r0")
        answered = Counter(
            (r["reference_id"], r["text"])
            for r in atomic.read_jsonl(home / "r0" / "requests.jsonl")
            if r["path"] == "/v1/tts"
        )
        items = [item for shard in plan.batch(*key).shards for item in shard.items]
        assert answered == Counter((item.voice, item.text) for item in items), key
        batch_jobs.append(record["slurm_job_id"])
    assert sorted(batch_jobs) == sorted(by_raw_id)

    local = local_twin(project, tmp_path)
    assert digests(project) == digests(local)
    assert len(digests(project)) == 16
    for lang in TEXTS:
        for kind in ("metadata", "failed"):
            assert untimed(project.manifest(kind, lang)) == untimed(local.manifest(kind, lang))
    assert project.summary() == local.summary()


def test_a_job_given_two_gpus_runs_a_pinned_replica_on_each_with_the_audio_of_one(
    slurm_project, slurm_profile, tmp_path
):
    # One language x voice in one batch: a single batch goes in as a plain job, not an array.
    project = slurm_project({"en": TEXTS["en"]}, voices=("alice",), shard_size=2, shards_per_job=8)
    project.config["server"]["demo"].update(latency_s=0.5)
    profile = yaml.safe_load((slurm_profile / "config.yaml").read_text())
    profile["set-resources"]["speak"]["gpu"] = 2
    project.profile = tmp_path / "two-gpus"
    project.profile.mkdir()
    (project.profile / "config.yaml").write_text(yaml.safe_dump(profile))
    result = project.run(timeout=240)
    assert_ok(result)
    [job] = submitted(result.stdout)
    record = project.slurm_jobs()[job]
    assert "gres/gpu=2" in record["AllocTRES"].split(",")

    [key] = Plan(project.config).batch_keys()
    servers = servers_record(project, key)
    assert servers["slurm_job_id"] == record["JobIDRaw"]
    assert servers["servers"]["replicas"] == 2
    log = Layout(project.out).speak_log(*key).read_text()
    pinned = sorted((tag, gpu) for tag, _, _, gpu in STARTING.findall(log))
    assert pinned == [("r0", "0"), ("r1", "1")], log
    assert set(requests_per_replica(project)) == {"r0", "r1"}
    assert set(requested(project).values()) == {1} and len(requested(project)) == 5

    local = local_twin(project, tmp_path)
    assert digests(project) == digests(local) and len(digests(local)) == 5


def test_cancelled_job_resumes_without_redoing_finished_items(slurm_project):
    # One batch, one job: two shards (3 + 2 items), slow enough to cancel mid-batch.
    project = slurm_project({"en": TEXTS["en"]}, voices=("alice",), shard_size=3, shards_per_job=2)
    project.config["server"]["demo"].update(latency_s=1.0)
    process = project.start()
    try:
        wait_for(lambda: journaled(project), "journaled item")
        [job] = project.queued_jobs()
    finally:
        # Snakemake goes first, as with a lost login session: the new run alone must recover.
        # (Left running, plugin 2.8.0 would wait forever: sacct says "CANCELLED by 0".)
        kill_group(process)
        process.communicate()
    subprocess.run(["scancel", job], check=True, timeout=30)
    wait_for(lambda: not project.queued_jobs(), "end of the cancelled job")
    before = requested(project)  # its server is gone: the request log is final
    finished = {(r["voice"], r["text"]) for r in journaled(project)}
    assert 1 <= len(finished) < 5

    assert_ok(project.run("--unlock"))
    project.config["server"]["demo"].update(latency_s=0)
    result = project.run(timeout=180)
    assert_ok(result)
    assert len(submitted(result.stdout)) == 1
    everything = {("alice", row["text"]) for row in TEXTS["en"]}
    counts, after = requested(project), requested(project) - before
    assert all(counts[item] == 1 for item in finished)
    assert set(after) == everything - finished and all(n == 1 for n in after.values())
    metadata = project.manifest("metadata", "en")
    assert sorted((r["voice"], r["text"]) for r in metadata) == sorted(everything)


def test_failing_shard_fails_its_slurm_job_and_the_rerun_speaks_only_what_is_missing(
    slurm_project,
):
    # One voice: two batches (de, en) of two shards each, two Slurm jobs. The question is in
    # en/alice/00001; its sibling en/alice/00000 finishes and is journaled.
    project = slurm_project(TEXTS4, voices=("alice",), shard_size=2, shards_per_job=2)
    project.config["server"]["demo"].update(fail_pattern="^Is this a question")
    first = project.run(timeout=300)
    assert first.returncode != 0
    layout = Layout(project.out)
    de, en = ("de", "b00000"), ("en", "b00000")

    # The en batch's Slurm job failed (each of the profile's retries too), naming the shard;
    # the de batch's job completed.
    jobs = project.slurm_jobs()
    assert sorted(jobs) == sorted(submitted(first.stdout))
    states = Counter(record["State"] for record in jobs.values())
    assert states["COMPLETED"] == 1 and states["FAILED"] == len(jobs) - 1 >= 1, jobs
    log = layout.speak_log(*en).read_text()
    assert "shard en/alice/00001:" in log and "shard en/alice/00000" not in log, log
    assert layout.batch_record(*de).exists() and not layout.batch_record(*en).exists()
    assert {r["text"] for r in atomic.read_jsonl(layout.journal("en", "alice", "00000"))} == {
        row["text"] for row in TEXTS4["en"][:2]
    }
    assert (project.out / "metadata_de.jsonl").exists()
    assert not (project.out / "metadata_en.jsonl").exists()
    before, jobs_before = requested(project), set(jobs)

    project.config["server"]["demo"].update(fail_pattern=None)
    second = project.run(timeout=180)
    assert_ok(second)
    new_jobs = set(project.slurm_jobs()) - jobs_before
    assert sorted(submitted(second.stdout)) == sorted(new_jobs) and len(new_jobs) == 1
    assert requested(project) - before == Counter({("alice", "Is this a question?"): 1})
    assert len(project.manifest("metadata", "en")) == 4


def test_dry_run_prints_plan_and_submits_nothing(slurm_project):
    project = slurm_project(
        TEXTS4, **BATCHED, planning={"seconds_per_item": 36, "server_startup_s": 360}
    )
    result = project.run("-n")
    assert_ok(result)
    # 16 items x 36 s + 4 server starts x 360 s = 0.56 GPU-hours
    assert (
        "fishflow plan: generation jobs with work (one server start each, one Slurm job on a "
        "cluster): 4 of up to 1 shard(s) per voice; estimated GPU-hours: 0.56"
    ) in result.stdout
    assert not submitted(result.stdout)
    assert project.slurm_jobs() == {}


def test_planning_without_account_names_the_variable(slurm_project):
    project = slurm_project(TEXTS4)
    project.env["FISHFLOW_SLURM_ACCOUNT"] = None
    result = project.run("-n")
    assert result.returncode != 0
    assert "needs FISHFLOW_SLURM_ACCOUNT in the environment" in result.stdout
    assert "fishflow plan:" not in result.stdout


def test_profile_asks_for_no_job_arrays_and_bounds_the_jobs_at_once():
    """snakemake-executor-plugin-slurm 2.8.0's job arrays are not safe: with 100 ready batches
    every array task ran the same batch (its array script failed with
    "--slurm-jobstep-array-execs: not found"), and an array rule handed fewer jobs than are
    ready (any --jobs limit; seen here: --jobs 2 with 5 ready batches) is never submitted."""
    profile = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    assert "slurm-array-jobs" not in profile
    assert isinstance(profile["jobs"], int)
