"""What a Slurm partition's nodes hold (`sinfo`), and whether a job's request fits on one.

A job that asks for more CPUs, memory or GPUs than any node of its partition has waits forever
(reason PartitionConfig, or Resources on some versions): the planning check and `fishflow status`
both compare the request with the nodes here.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass

from fishflow.cluster.slurm_jobs import call

# One line per node and partition: partition (the default one marked "*"), node, CPUs,
# memory (MB), generic resources ("gpu:a100:2", "gpu:4(S:0-3)", "(null)").
SINFO_FORMAT = "%P|%N|%c|%m|%G"
GPU_GRES = re.compile(r"^gpu(?::[^:(,]+)?:(\d+)")


@dataclass(frozen=True)
class Node:
    partition: str
    name: str
    cpus: int
    mem_mb: int
    gpus: int
    default: bool = False  # in the cluster's default partition


@dataclass(frozen=True)
class Request:
    """What one job asks Slurm for, per node (fishflow's jobs use one node)."""

    cpus: int
    mem_mb: int
    gpus: int

    def describe(self) -> str:
        return f"{self.cpus} CPUs, {self.mem_mb} MB, {self.gpus} GPU(s)"


def gres_gpus(gres: str) -> int:
    """GPUs in a gres list: "gpu:a100:2(S:0-1)" -> 2, "gpu:4,shard:8" -> 4, "(null)" -> 0."""
    return sum(int(m[1]) for part in gres.split(",") if (m := GPU_GRES.match(part.strip())))


def parse_sinfo(text: str) -> list[Node]:
    """Nodes from `sinfo -h -N -o SINFO_FORMAT`."""
    nodes = []
    for line in text.splitlines():
        if not line.strip():
            continue
        partition, name, cpus, mem, gres = line.split("|", 4)
        nodes.append(
            Node(
                partition=partition.rstrip("*"),
                name=name,
                cpus=int(cpus.rstrip("+")),
                mem_mb=int(mem.rstrip("+")),
                gpus=gres_gpus(gres),
                default=partition.endswith("*"),
            )
        )
    return nodes


def cluster_nodes() -> list[Node] | None:
    """Every node of every partition; None where Slurm is not installed (a laptop)."""
    if shutil.which("sinfo") is None:
        return None
    return parse_sinfo(call("sinfo", "-h", "-N", "-o", SINFO_FORMAT))


def partition_nodes(nodes: list[Node], partition: str | None) -> list[Node]:
    """The nodes of a partition, or of the default partition when none is named."""
    return [n for n in nodes if (n.partition == partition if partition else n.default)]


def fits(request: Request, node: Node) -> bool:
    return request.cpus <= node.cpus and request.mem_mb <= node.mem_mb and request.gpus <= node.gpus


def largest(nodes: list[Node]) -> str:
    """The partition's nodes in a line: each distinct size once, with its node count."""
    sizes: dict[tuple[int, int, int], int] = {}
    for node in nodes:
        key = (node.cpus, node.mem_mb, node.gpus)
        sizes[key] = sizes.get(key, 0) + 1
    return "; ".join(
        f"{count} node(s) with {cpus} CPUs, {mem} MB, {gpus} GPU(s)"
        for (cpus, mem, gpus), count in sorted(sizes.items(), reverse=True)
    )


def exceeded(request: Request, nodes: list[Node]) -> list[str]:
    """The figures ("cpus", "mem_mb", "gpus") of a request that no node has: the ones to lower."""
    figures = ("cpus", "mem_mb", "gpus")
    return [f for f in figures if nodes and all(getattr(request, f) > getattr(n, f) for n in nodes)]


def misfit(request: Request, partition: str | None, nodes: list[Node]) -> str | None:
    """Why no node of the partition could ever run the job, or None when one could."""
    members = partition_nodes(nodes, partition)
    where = f"partition {partition}" if partition else "the default partition"
    if not members:
        known = sorted({n.partition for n in nodes})
        return f"{where} has no nodes (sinfo knows {', '.join(known) or 'no partitions'})"
    if any(fits(request, node) for node in members):
        return None
    return f"it asks for {request.describe()}; {where} has {largest(members)}"
