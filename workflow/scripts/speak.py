from pathlib import Path

from fishflow import rulekit
from fishflow.speaking.batch import speak_batch

rulekit.run(
    snakemake,
    lambda: speak_batch(
        batch=snakemake.params.batch,
        config=snakemake.params.settings.config,
        batch_record=Path(snakemake.output.shards),
        servers_record=Path(snakemake.output.servers),
    ),
)
