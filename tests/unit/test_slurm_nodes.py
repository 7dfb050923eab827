"""Slurm's answers as fishflow reads them: `sinfo` nodes, `squeue` jobs and `scontrol show job`,
from outputs recorded on the Slurm 22.05 test cluster (tests/unit/data/slurm: a node with 2 CPUs,
21694 MB and 2 GPUs; a job asking for the profile's 8 CPUs and 68000 MB, pending with reason
PartitionConfig), and whether a request fits a partition."""

from pathlib import Path

import pytest

from fishflow.cluster import slurm_jobs
from fishflow.cluster.resources import PlannedJob, check_jobs_fit
from fishflow.cluster.slurm_nodes import (
    Node,
    Request,
    exceeded,
    gres_gpus,
    misfit,
    parse_sinfo,
    partition_nodes,
)
from fishflow.errors import ConfigError

DATA = Path(__file__).parent / "data" / "slurm"
PROFILE = {
    "cpus": "set-resources.speak.cpus_per_task",
    "mem_mb": "set-resources.speak.mem_mb",
    "gpus": "set-resources.speak.gpu",
}


def recorded(name: str) -> str:
    return (DATA / name).read_text()


def test_sinfo_of_the_test_cluster():
    assert parse_sinfo(recorded("sinfo_nodes.txt")) == [
        Node("gpu", "vm", cpus=2, mem_mb=21694, gpus=2, default=True)
    ]


@pytest.mark.parametrize(
    ("gres", "gpus"),
    [
        ("gpu:a100:2", 2),
        ("gpu:4(S:0-3)", 4),  # with socket affinity, as sinfo prints it on larger clusters
        ("gpu:a100:2(S:0),gpu:v100:1(S:1)", 3),
        ("shard:8,gpu:1", 1),
        ("(null)", 0),
    ],
)
def test_gpus_in_a_gres_list(gres, gpus):
    assert gres_gpus(gres) == gpus


def test_a_partition_is_named_or_the_default_one():
    nodes = parse_sinfo("debug|a|4|8000|(null)\nnormal*|b|64|256000|gpu:4(S:0-3)\n")
    assert [n.name for n in partition_nodes(nodes, "debug")] == ["a"]
    assert [n.name for n in partition_nodes(nodes, None)] == ["b"]


def test_the_profile_request_does_not_fit_the_test_node():
    nodes = parse_sinfo(recorded("sinfo_nodes.txt"))
    request = Request(cpus=8, mem_mb=68000, gpus=1)
    assert misfit(request, "gpu", nodes) == (
        "it asks for 8 CPUs, 68000 MB, 1 GPU(s); partition gpu has 1 node(s) with "
        "2 CPUs, 21694 MB, 2 GPU(s)"
    )
    assert exceeded(request, nodes) == ["cpus", "mem_mb"]
    assert misfit(Request(2, 21694, 2), "gpu", nodes) is None
    assert misfit(Request(1, 1000, 3), "gpu", nodes) is not None  # GPUs count too
    assert "partition big has no nodes (sinfo knows gpu)" in misfit(Request(1, 1, 0), "big", nodes)


def test_a_request_fits_if_one_node_holds_all_of_it():
    nodes = parse_sinfo("p*|small|2|64000|gpu:1\np*|large|64|8000|gpu:1\n")
    # Each figure fits some node, but no node holds all of them.
    assert misfit(Request(8, 32000, 1), "p", nodes) is not None
    assert exceeded(Request(8, 32000, 1), nodes) == []


def test_planning_fails_with_the_numbers_and_the_keys_to_change():
    nodes = parse_sinfo(recorded("sinfo_nodes.txt"))
    job = PlannedJob("speak", "gpu", Request(8, 68000, 1), PROFILE)
    with pytest.raises(ConfigError) as error:
        check_jobs_fit([job], nodes)
    message = str(error.value)
    assert "rule speak: no node could ever run its Slurm job" in message
    assert "asks for 8 CPUs, 68000 MB, 1 GPU(s)" in message and "2 CPUs, 21694 MB" in message
    assert "change set-resources.speak.cpus_per_task, set-resources.speak.mem_mb in" in message
    check_jobs_fit([PlannedJob("speak", "gpu", Request(1, 1000, 1), PROFILE)], nodes)


def test_squeue_of_the_test_cluster():
    jobs = slurm_jobs.parse_squeue(recorded("squeue.txt"))
    assert [(j.id, j.state, j.reason, j.cpus, j.mem_mb, j.nodes) for j in jobs] == [
        ("595", "PENDING", "PartitionConfig", 8, 68000, ""),
        ("598", "PENDING", "Resources", 1, 1000, ""),
        ("596", "RUNNING", "None", 1, 1000, "vm"),
        ("597", "RUNNING", "None", 1, 1000, "vm"),
    ]
    # The plugin's comment: the rule, then the wildcard values joined by "_".
    assert (jobs[0].rule, jobs[0].wildcard_values) == ("speak", ["en", "b00000"])
    assert [j.may_never_start for j in jobs] == [True, False, False, False]
    assert {j.name for j in jobs} == {"4c1b9f32-run"}  # the plugin names jobs after the run


@pytest.mark.parametrize(
    ("comment", "rule", "values"),
    [("rule_provide_model", "provide_model", []), ("rule_x_wildcards_a_b_c", "x", ["a", "b", "c"])],
)
def test_plugin_comments(comment, rule, values):
    job = slurm_jobs.QueuedJob("1", "PENDING", "run", comment, "", "None", 1, 1, "p", "N/A")
    assert (job.rule, job.wildcard_values) == (rule, values)


def test_scontrol_show_job_gives_the_gpus_asked_for():
    pending, running = recorded("scontrol_show_job.txt").splitlines()  # jobs 595 and 597
    record = slurm_jobs.parse_job_record(pending)
    assert record["JobState"] == "PENDING" and record["Reason"] == "PartitionConfig"
    assert slurm_jobs.requested_gpus(record) == 1
    assert slurm_jobs.parse_job_record(running)["NodeList"] == "vm"
    assert slurm_jobs.requested_gpus({"TRES": "cpu=1,mem=1000M,node=1"}) == 0


@pytest.mark.parametrize(
    ("text", "mb"), [("68000M", 68000), ("2G", 2048), ("512K", 0), ("1.5T", 1572864), ("", 0)]
)
def test_slurm_memory_figures(text, mb):
    assert slurm_jobs.memory_mb(text) == mb
