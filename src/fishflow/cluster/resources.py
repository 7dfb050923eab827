"""Slurm profile checks that must fail at planning time, on the login node: unset variables, and
jobs that no node of their partition could hold."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from fishflow.cluster.slurm_nodes import (
    Node,
    Request,
    cluster_nodes,
    exceeded,
    gres_gpus,
    misfit,
    partition_nodes,
)
from fishflow.errors import ConfigError, FishflowError

UNSET = re.compile(r"\$\{?(FISHFLOW_SLURM_[A-Z_]+)\}?")


def check_resources_expanded(default_resources: list[str]) -> None:
    """The Slurm profile reads account and partition from the environment; an unset variable
    would reach sbatch as the literal `$NAME`, to be rejected only at submission."""
    # Snakemake expands variables when it evaluates a resource; what survives is unset.
    expanded = [os.path.expandvars(arg) for arg in default_resources]
    missing = sorted({m.group(1) for arg in expanded for m in UNSET.finditer(arg)})
    if missing:
        raise ConfigError(
            f"the Slurm profile needs {', '.join(missing)} in the environment "
            "(e.g. export FISHFLOW_SLURM_ACCOUNT=<your project> "
            "FISHFLOW_SLURM_PARTITION=<GPU partition>), or pass "
            "--default-resources slurm_account=... slurm_partition=..."
        )


@dataclass(frozen=True)
class PlannedJob:
    """A rule's Slurm job as the profile asks for it (its first attempt), and the profile key
    that set each figure: the key to change when no node can hold the job."""

    rule: str
    partition: str | None
    request: Request
    keys: dict[str, str]  # "cpus" / "mem_mb" / "gpus" -> "set-resources.speak.mem_mb", ...


def _value(rule, name: str, workflow):
    """A rule's resource as its first job would get it (attempt 1); None when unset or when
    it depends on the job's input (known only once the DAG is built)."""
    resource = rule.resources.get(name)
    if resource is None:
        return None
    try:
        resource = resource.evaluate(
            {}, input=[], attempt=1, threads=1, rulename=rule.name, async_run=workflow.async_run
        )
        return resource.value
    except Exception:  # noqa: BLE001 - a resource of the job's input: not checkable now
        return None


def _key(rule: str, name: str, workflow) -> str:
    overrides = workflow.resource_settings.overwrite_resources or {}
    if name in overrides.get(rule, {}):
        return f"set-resources.{rule}.{name}"
    return f"default-resources.{name}"


def planned_job(rule, workflow) -> PlannedJob | None:
    """The Slurm request of a rule, the way snakemake-executor-plugin-slurm builds it
    (--cpus-per-task from cpus_per_task else threads, --mem from mem_mb, --gpus from gpu or a
    gpu gres); None unless the rule goes to Slurm (a slurm_partition or slurm_account resource:
    the Slurm profile's)."""

    def get(name: str):
        return _value(rule, name, workflow)

    if get("slurm_partition") is None and get("slurm_account") is None:
        return None
    cpus = get("cpus_per_task") or get("_cores") or 1
    gpus = get("gpu") or gres_gpus(str(get("gres") or ""))
    keys = {
        # Without cpus_per_task the plugin asks for the rule's threads (--set-threads).
        "cpus": _key(rule.name, "cpus_per_task", workflow)
        if get("cpus_per_task")
        else f"set-threads.{rule.name}",
        "mem_mb": _key(rule.name, "mem_mb", workflow),
        "gpus": _key(rule.name, "gpu" if get("gpu") else "gres", workflow),
    }
    request = Request(cpus=int(cpus), mem_mb=int(get("mem_mb") or 0), gpus=int(gpus))
    return PlannedJob(rule.name, get("slurm_partition"), request, keys)


def check_jobs_fit(jobs: list[PlannedJob], nodes: list[Node]) -> None:
    """Fail the plan for a job that no node of its partition could ever hold: Slurm would
    keep it pending forever (reason PartitionConfig)."""
    problems = []
    for job in jobs:
        why = misfit(job.request, job.partition, nodes)
        if why is None:
            continue
        # The figures no node has: those are the keys to change.
        members = partition_nodes(nodes, job.partition)
        short = [job.keys[what] for what in exceeded(job.request, members)]
        change = ", ".join(short) or ", ".join(job.keys.values())
        problems.append(
            f"rule {job.rule}: no node could ever run its Slurm job: {why}; "
            f"change {change} in the Slurm profile (profiles/slurm/config.yaml, or "
            "--set-resources), or pick a partition with larger nodes (slurm_partition)"
        )
    if problems:
        raise ConfigError("\n".join(problems))


def check_slurm_jobs_fit(jobs: list[PlannedJob | None]) -> str | None:
    """The planning check: fails the plan (ConfigError) for a Slurm job no node can hold.
    Returns a warning when it cannot check; nothing to do without Slurm jobs or `sinfo`."""
    jobs = [job for job in jobs if job is not None]
    if not jobs:
        return None  # a local run
    try:
        nodes = cluster_nodes()
    except FishflowError as exc:
        return f"cannot compare the Slurm jobs' resources with the partition's nodes: {exc}"
    if nodes is not None:
        check_jobs_fit(jobs, nodes)
    return None
