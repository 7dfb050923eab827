from pathlib import Path

from fishflow import rulekit
from fishflow.report import write_report

rulekit.run(
    snakemake,
    lambda: write_report(
        # index.html is <out>/report/index.html
        Path(snakemake.output.html).parents[1],
        snakemake.params.languages,
        snakemake.config,
        Path(snakemake.output.html).parent,
    ),
)
