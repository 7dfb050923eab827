from pathlib import Path

from fishflow import rulekit
from fishflow.speaking.validation import validate_shard

rulekit.run(
    snakemake,
    lambda: validate_shard(
        generated=Path(snakemake.input[0]),
        validated=Path(snakemake.output[0]),
        out=snakemake.params.settings.out,
        limits=snakemake.params.limits,
    ),
)
