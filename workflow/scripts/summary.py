from pathlib import Path

from fishflow import rulekit
from fishflow.merging.merge import write_summary

rulekit.run(
    snakemake,
    lambda: write_summary(
        [Path(path) for path in snakemake.input.metadata],
        [Path(path) for path in snakemake.input.failed],
        Path(snakemake.output[0]),
    ),
)
