"""The workflow on the real Slurm test cluster with a test-sized copy of profiles/slurm: one GPU
batch job per batch of shards, resumed after `scancel`, a failed shard rerun alone, the plan of a
dry run and the account check (issue 3's acceptance)."""

import hashlib
import re
import subprocess
import time
from collections import Counter

import pytest
import yaml

from fishflow import atomic
from fishflow.planning.plan import Plan
from tests.e2e.conftest import TEXTS
from tests.e2e.test_replicas import requests_per_replica
from tests.workflow_runner import Project, assert_ok, kill_group

pytestmark = pytest.mark.slurm

SUBMITTED = re.compile(r"submitted with SLURM jobid (\d+)")
STARTING = re.compile(
    r"fishflow: \[r0\] starting \w+ server on (\S+):\d+ .*\(Slurm job (\d+), CUDA"
)
PINNED = re.compile(r"\[(r\d)\] starting .*\(Slurm job (\d+), CUDA_VISIBLE_DEVICES=(\w+)\)")
USING = re.compile(r"using servers on (\S+) \(launcher pid (\d+), Slurm job (\d+)\)")
# 2 languages x 2 voices x 2 shards: one batch (Slurm job) per language, both running at once on
# the two fake GPUs. Small: each process a job starts costs seconds on the 2-core test node.
TEXTS4 = {lang: rows[:4] for lang, rows in TEXTS.items()}
BATCHED = {"shard_size": 2, "shards_per_job": 4}


def submitted(result) -> list[str]:
    return SUBMITTED.findall(result.stdout)


def requested(project) -> Counter:
    return Counter((r["reference_id"], r["text"]) for r in project.tts_requests())


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


def test_batches_run_as_gpu_jobs_with_their_server_and_match_a_local_run(
    slurm_project, slurm_cluster, tmp_path
):
    project = slurm_project(TEXTS4, **BATCHED)
    result = project.run(timeout=240)
    assert_ok(result)
    plan = Plan(project.config)
    batch_of = {key: plan.batch(*key) for key in plan.shard_keys()}
    batches = sorted(set(batch_of.values()))
    jobs = submitted(result)
    assert len(jobs) == len(batches) == 2

    # Slurm ran exactly the submitted jobs, each with a GPU.
    records = project.slurm_jobs()
    assert sorted(records) == sorted(jobs)
    for record in records.values():
        assert record["State"] == "COMPLETED", record
        assert "gres/gpu=1" in record["AllocTRES"].split(","), record
        assert record["NodeList"] == slurm_cluster.node

    # One server start per batch, each in its own job; `host, pid, job` identify that server.
    servers = {}
    for batch in batches:
        [(host, job)] = STARTING.findall((project.out / "logs/server" / f"{batch}.log").read_text())
        [workdir] = (project.out / "work/servers").glob(f"{batch}-*")
        servers[batch] = (host, workdir.name.rsplit("-", 1)[1], job)
    assert sorted(job for _, _, job in servers.values()) == sorted(jobs)
    assert {host for host, _, _ in servers.values()} == {slurm_cluster.node}

    # Each shard was generated inside its batch's job, by that job's server.
    for (lang, voice, shard), batch in batch_of.items():
        log = (project.out / "logs/generate" / lang / voice / f"{shard}.log").read_text()
        assert USING.findall(log) == [servers[batch]], (lang, voice, shard)

    local_out = str(tmp_path / "local" / "out")
    local = Project(tmp_path / "local", {**project.config, "output_dir": local_out})
    local.root.mkdir()
    assert_ok(local.run())
    assert digests(project) == digests(local)
    assert len(digests(project)) == 16
    for lang in TEXTS:
        for kind in ("metadata", "failed"):
            assert untimed(project.manifest(kind, lang)) == untimed(local.manifest(kind, lang))
    assert project.summary() == local.summary()


def test_a_job_given_two_gpus_runs_a_pinned_replica_on_each_with_the_audio_of_one(
    slurm_project, slurm_profile, tmp_path
):
    project = slurm_project(TEXTS4, shard_size=2, shards_per_job=8)  # one batch, one job
    profile = yaml.safe_load((slurm_profile / "config.yaml").read_text())
    profile["set-resources"]["server"]["gpu"] = 2
    project.profile = tmp_path / "two-gpus"
    project.profile.mkdir()
    (project.profile / "config.yaml").write_text(yaml.safe_dump(profile))
    result = project.run(timeout=240)
    assert_ok(result)
    [job] = submitted(result)
    assert "gres/gpu=2" in project.slurm_jobs()[job]["AllocTRES"].split(",")

    [log] = (project.out / "logs/server").glob("*.log")
    pinned = PINNED.findall(log.read_text())
    assert sorted(pinned) == [("r0", job, "0"), ("r1", job, "1")], log.read_text()
    assert set(requests_per_replica(project)) == {"r0", "r1"}
    assert set(requested(project).values()) == {1} and len(requested(project)) == 16

    local = Project(
        tmp_path / "local", {**project.config, "output_dir": str(tmp_path / "local/out")}
    )
    local.root.mkdir()
    assert_ok(local.run())
    assert digests(project) == digests(local) and len(digests(local)) == 16


def test_cancelled_job_resumes_without_redoing_finished_items(slurm_project):
    # One job: two shards of 5 items, slow enough to cancel mid-shard.
    project = slurm_project({"en": TEXTS["en"]}, shard_size=5, shards_per_job=2)
    project.config["server"]["demo"] = {"latency_s": 0.5}
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
    assert 1 <= len(finished) < 10

    assert_ok(project.run("--unlock"))
    project.config["server"]["demo"] = {"latency_s": 0}
    result = project.run(timeout=180)
    assert_ok(result)
    assert len(submitted(result)) == 1
    everything = {(voice, row["text"]) for voice in ("alice", "bob") for row in TEXTS["en"]}
    counts, after = requested(project), requested(project) - before
    assert all(counts[item] == 1 for item in finished)
    assert set(after) == everything - finished and all(n == 1 for n in after.values())
    metadata = project.manifest("metadata", "en")
    assert sorted((r["voice"], r["text"]) for r in metadata) == sorted(everything)


def test_failed_shard_fails_alone_and_reruns_as_one_job(slurm_project):
    # One voice, so one shard fails: de/alice and en/alice, one job each; en/alice/00001 holds
    # the question.
    project = slurm_project(TEXTS4, voices=("alice",), shard_size=2, shards_per_job=2)
    project.config["server"]["demo"] = {"fail_pattern": "^Is this a question"}
    first = project.run(timeout=180)
    assert first.returncode != 0
    assert len(submitted(first)) == 2
    validated = project.out / "work/validated"
    assert sorted(str(p.relative_to(validated)) for p in validated.rglob("*.jsonl")) == [
        "de/alice/00000.jsonl",
        "de/alice/00001.jsonl",
        "en/alice/00000.jsonl",
    ]
    assert not (project.out / "work/generated/en/alice/00001.json").exists()
    assert (project.out / "metadata_de.jsonl").exists()
    assert not (project.out / "metadata_en.jsonl").exists()
    before, jobs_before = requested(project), set(project.slurm_jobs())

    project.config["server"]["demo"] = {"fail_pattern": None}
    second = project.run(timeout=180)
    assert_ok(second)
    new_jobs = set(project.slurm_jobs()) - jobs_before
    assert sorted(submitted(second)) == sorted(new_jobs) and len(new_jobs) == 1
    assert requested(project) - before == Counter({("alice", "Is this a question?"): 1})
    assert len(project.manifest("metadata", "en")) == 4


def test_dry_run_prints_plan_and_submits_nothing(slurm_project):
    project = slurm_project(
        TEXTS4, **BATCHED, planning={"seconds_per_item": 36, "server_startup_s": 360}
    )
    result = project.run("-n")
    assert_ok(result)
    # 16 items x 36 s + 2 server starts x 360 s = 0.36 GPU-hours
    assert (
        "fishflow plan: generation jobs (one server start each, one Slurm job on a cluster): "
        "2 of up to 4 shards; estimated GPU-hours: 0.36"
    ) in result.stdout
    assert not submitted(result)
    assert project.slurm_jobs() == {}


def test_planning_without_account_names_the_variable(slurm_project):
    project = slurm_project(TEXTS4)
    project.env["FISHFLOW_SLURM_ACCOUNT"] = None
    result = project.run("-n")
    assert result.returncode != 0
    assert "needs FISHFLOW_SLURM_ACCOUNT in the environment" in result.stdout
    assert "fishflow plan:" not in result.stdout
