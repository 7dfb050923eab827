# fishflow: JSONL text -> verified voices -> validated WAVs -> merged manifests.
# Run: snakemake (local, profiles/default) or snakemake --profile profiles/slurm.


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/checkpoint.smk"
include: "workflow/rules/server.smk"
include: "workflow/rules/generate.smk"
include: "workflow/rules/merge.smk"
include: "workflow/rules/report.smk"


localrules:
    all,
    checkpoint,
    validate,
    merge,
    summary,


rule all:
    default_target: True
    input:
        all_targets(),
