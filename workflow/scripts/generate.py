from pathlib import Path

from fishflow import rulekit
from fishflow.speaking.batch import generate_shard

rulekit.run(
    snakemake,
    lambda: generate_shard(
        shard=snakemake.params.shard,
        out=snakemake.params.settings.out,
        config=snakemake.params.settings.config,
        endpoint=Path(snakemake.input.endpoint),
        output=Path(snakemake.output[0]),
    ),
)
