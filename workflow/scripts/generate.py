from pathlib import Path

from fishflow import rulekit
from fishflow.generate import generate_shard

rulekit.run(
    snakemake,
    lambda: generate_shard(
        shard=snakemake.params.shard,
        out=Path(snakemake.params.out),
        config=snakemake.params.config,
        backend_id=snakemake.params.backend_id,
        endpoint=Path(snakemake.input.endpoint),
        output=Path(snakemake.output[0]),
    ),
)
