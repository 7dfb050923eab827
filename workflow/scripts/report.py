from pathlib import Path

from fishflow import rulekit
from fishflow.report import ReportInputs, write_report
from fishflow.report.provenance import judge_models

rulekit.run(
    snakemake,
    lambda: write_report(
        ReportInputs(
            metadata=[Path(path) for path in snakemake.input.metadata],
            failed=[Path(path) for path in snakemake.input.failed],
            summary=Path(snakemake.input.summary),
            servers=[Path(path) for path in snakemake.input.servers],
            checkpoint=Path(snakemake.input.checkpoint[0]) if snakemake.input.checkpoint else None,
            # The models behind the files the rule declares as input.judge_models.
            judge_models=judge_models(snakemake.params.settings.config),
        ),
        snakemake.params.settings.config,
        html=Path(snakemake.output.html),
        json=Path(snakemake.output.json),
        csv=Path(snakemake.output.csv),
    ),
)
