"""Planning with the real Slurm profile against the nodes `sinfo` reports: `snakemake -n` fails
with the numbers and the profile keys when no node could hold a generation job, plans when one
can, and does not check at all without `sinfo` or without the Slurm profile. `sinfo` here is a
script that prints the output recorded on the Slurm test cluster (tests/unit/data/slurm)."""

import os
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO
from tests.workflow_runner import assert_ok

SINFO = Path(__file__).parents[1] / "unit" / "data" / "slurm" / "sinfo_nodes.txt"


def without_sinfo(folder: Path) -> Path:
    """A folder of links to the system's commands but `sinfo`: where the Slurm test cluster is
    installed its `sinfo` is in /usr/bin (and /bin), and answers while the cluster runs. The
    rest of Slurm's client stays: the executor plugin needs squeue or sacct."""
    folder.mkdir()
    for system in (Path("/usr/local/bin"), Path("/usr/bin")):
        for command in system.iterdir() if system.is_dir() else ():
            link = folder / command.name
            if command.name != "sinfo" and not link.exists():
                link.symlink_to(command)
    return folder


@pytest.fixture
def planning(project, tmp_path):
    """`snakemake -n` of the project; with the Slurm profile and a recorded `sinfo` on PATH
    unless told otherwise."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    sinfo = bin_dir / "sinfo"
    sinfo.write_text(f"#!/bin/sh\ncat {SINFO}\n")
    sinfo.chmod(0o755)

    system = without_sinfo(tmp_path / "system")

    def plan(*args: str, slurm: bool = True, with_sinfo: bool = True):
        # Without sinfo: the venv's and the system's commands, but not sinfo.
        path = [str(Path(sys.executable).parent), str(system)]
        project.env = {
            "FISHFLOW_SLURM_ACCOUNT": "fishflow-test",
            "FISHFLOW_SLURM_PARTITION": "gpu",
            "PATH": os.pathsep.join(([str(bin_dir)] if with_sinfo else []) + path),
        }
        profile = ["--profile", str(REPO / "profiles" / "slurm")] if slurm else []
        return project.run(*profile, "-n", *args, timeout=180)

    return plan


def test_the_default_profile_does_not_fit_the_test_node(planning):
    result = planning()
    assert result.returncode != 0
    assert (
        "rule speak: no node could ever run its Slurm job: it asks for 8 CPUs, 68000 MB, "
        "1 GPU(s); partition gpu has 1 node(s) with 2 CPUs, 21694 MB, 2 GPU(s); change "
        "set-resources.speak.cpus_per_task, set-resources.speak.mem_mb in the Slurm profile"
    ) in result.stdout


def test_resources_that_fit_plan(planning):
    assert_ok(planning("--set-resources", "speak:cpus_per_task=2", "speak:mem_mb=20000"))


def test_no_check_without_sinfo_or_without_the_slurm_profile(planning):
    assert_ok(planning(with_sinfo=False))
    # A local run that asks for as much as the Slurm profile: nothing goes to Slurm.
    assert_ok(
        planning("--set-resources", "speak:cpus_per_task=8", "speak:mem_mb=68000", slurm=False)
    )
