from pathlib import Path

from fishflow import atomic, rulekit
from fishflow.validation import validate_shard

rulekit.run(
    snakemake,
    lambda: atomic.write_jsonl(
        Path(snakemake.output[0]),
        validate_shard(
            atomic.read_jsonl(Path(snakemake.input[0])),
            snakemake.params.settings.out,
            snakemake.params.limits,
        ),
    ),
)
