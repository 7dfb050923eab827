from pathlib import Path

from fishflow import rulekit
from fishflow.formats.huggingface import write_dataset
from fishflow.report.provenance import config_sha256

rulekit.run(
    snakemake,
    lambda: write_dataset(
        Path(snakemake.config["output_dir"]),
        list(snakemake.params.languages),
        Path(snakemake.input.summary),
        config_sha256(snakemake.config),
        snakemake.params.license,
    ),
)
