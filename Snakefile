# fishflow: JSONL text -> verified voices -> checked WAVs -> merged manifests -> report.
# Run: snakemake (local, profiles/default) or snakemake --profile profiles/slurm.


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/model.smk"
include: "workflow/rules/speak.smk"
include: "workflow/rules/merge.smk"
include: "workflow/rules/dataset.smk"
include: "workflow/rules/report.smk"


localrules:
    all,
    provide_model,
    merge,
    summary,
    dataset,
    report,


rule all:
    default_target: True
    input:
        all_targets(),
