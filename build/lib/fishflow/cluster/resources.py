"""Slurm profile checks that must fail at planning time, on the login node."""

from __future__ import annotations

import os
import re

from fishflow.errors import ConfigError

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
