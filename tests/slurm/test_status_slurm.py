"""Issue 14 on the real Slurm test cluster (2 CPUs, ~21 GB, 2 fake GPUs): planning with the
default Slurm profile fails with the numbers and the key to change, and plans with resources
that fit; a job that can never start is called out by `fishflow status`; and `status` of a
`fishflow submit` run shows its generation jobs on their node, then the finished run."""

import json
import re
import signal
import time

import pytest

from tests.helpers import REPO
from tests.slurm.conftest import slurm
from tests.slurm.test_submit import finish, fishflow, submit
from tests.slurm.test_workflow_slurm import TEXTS4
from tests.workflow_runner import assert_ok, kill_group

pytestmark = pytest.mark.slurm

DEFAULT_PROFILE = REPO / "profiles" / "slurm"
# The default profile on this node: its 8 CPUs and 68000 MB are more than the node has.
TOO_BIG = re.compile(
    r"rule speak: no node could ever run its Slurm job: it asks for 8 CPUs, 68000 MB, 1 GPU\(s\); "
    r"partition gpu has 1 node\(s\) with 2 CPUs, \d+ MB, 2 GPU\(s\); change "
    r"set-resources\.speak\.cpus_per_task, set-resources\.speak\.mem_mb in the Slurm profile"
)


def status_json(project) -> dict | None:
    """The status, or None before the run's snakemake has planned (no run record yet)."""
    result = fishflow(project, "status", "--json", str(project.out))
    if result.returncode == 2 and "no run record" in result.stderr:
        return None
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def poll(project, condition, what: str, timeout: float) -> dict:
    """`fishflow status --json` until `condition` holds for it."""
    deadline = time.monotonic() + timeout
    while True:
        status = status_json(project)
        if status is not None and condition(status):
            return status
        assert time.monotonic() < deadline, f"no {what} after {timeout} s: {status}"
        time.sleep(1)


def never_starting(status: dict) -> bool:
    """Both batches (de, en) submitted, and Slurm says PartitionConfig for each."""
    pending = status["jobs"]["pending"]
    return len(pending) == 2 and all(job["reason"] == "PartitionConfig" for job in pending)


def test_partition_check_and_status_on_slurm(slurm_project, slurm_cluster, tmp_path):
    project = slurm_project(TEXTS4, voices=("alice",), shard_size=2, shards_per_job=2)
    test_profile = project.profile

    # Planning: the default profile's request fits no node; the test-sized one plans.
    project.profile = DEFAULT_PROFILE
    result = project.run("-n", timeout=300)
    assert result.returncode != 0 and TOO_BIG.search(result.stdout), result.stdout[-3000:]
    project.profile = test_profile
    assert_ok(project.run("-n", timeout=300))

    # A run whose planning could not ask sinfo (a stand-in that fails as an unreachable
    # controller does: planning warns and goes on) submits the default profile's job, which
    # Slurm keeps pending for ever; status says why, with the numbers.
    stand_in = tmp_path / "bin"
    stand_in.mkdir()
    (stand_in / "sinfo").write_text(
        "#!/bin/sh\necho 'Unable to contact slurm controller' >&2\nexit 1\n"
    )
    (stand_in / "sinfo").chmod(0o755)
    project.profile = DEFAULT_PROFILE
    project.env["PATH"] = f"{stand_in}:{project.environment()['PATH']}"
    process = project.start()
    try:
        del project.env["PATH"]
        status = poll(project, never_starting, "jobs pending (PartitionConfig)", timeout=180)
        job = status["jobs"]["pending"][0]
        assert job["rule"] == "speak" and job["lang"] in ("de", "en")
        assert job["asks"] == {"cpus": 8, "mem_mb": 68000, "gpus": 1}
        assert "it asks for 8 CPUs, 68000 MB, 1 GPU(s)" in job["never_starts"]
        text = fishflow(project, "status", str(project.out)).stdout
        assert f"!! job {job['slurm_job_id']} can never start: it asks for 8 CPUs" in text
        assert "set-resources.speak.cpus_per_task" in text
    finally:
        kill_group(process, signal.SIGINT)
        output, _ = process.communicate(timeout=120)
        # Snakemake cancels its jobs on Ctrl-C, unless the signal caught it mid-fork (seen).
        if left := project.queued_jobs():
            slurm("scancel", *left)
    assert "Unable to contact slurm controller" in output  # the planning warning

    # `fishflow submit` with resources that fit: its jobs run on the node, then all is done.
    project.profile = test_profile
    project.config["server"]["demo"].update(latency_s=6.0)
    assert submit(project).returncode == 0
    status = poll(
        project,
        lambda s: any(job["slurm_job_id"] for job in s["jobs"]["running"]),
        "running Slurm job",
        timeout=300,
    )
    job = next(job for job in status["jobs"]["running"] if job["slurm_job_id"])
    assert job["node"] == slurm_cluster.node and job["checked"] and job["gpus"] == 1
    assert status["run"]["controller"]["slurm_state"] == "RUNNING"
    assert finish(project)["status"] == "completed"
    status = status_json(project)
    assert status["items"] == {"total": 8, "done": 8, "failed": 0, "todo": 0}
    assert status["jobs"] == {"running": [], "pending": []}
    assert status["gpu_hours"]["finished"] > 0  # each job held one (fake) GPU
    text = fishflow(project, "status", str(project.out)).stdout
    assert "items: 8 of 8 done (100.0%)" in text and "running jobs: none" in text
    assert f"controller: Slurm job {status['run']['controller']['job_id']} (COMPLETED)" in text
