from pathlib import Path

from fishflow import rulekit
from fishflow.serving.checkpoints import provide

rulekit.run(
    snakemake,
    lambda: provide(
        fish=snakemake.params.settings.config["server"]["fish_speech"],
        output=Path(snakemake.output[0]),
    ),
)
