from pathlib import Path

from fishflow import rulekit
from fishflow.merging.merge import merge_language

rulekit.run(
    snakemake,
    lambda: merge_language(
        [Path(path) for path in snakemake.input],
        Path(snakemake.output.metadata),
        Path(snakemake.output.failed),
    ),
)
