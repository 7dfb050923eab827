rule merge:
    input:
        batch_records,
    output:
        metadata=str(LAYOUT.metadata("{lang}")),
        failed=str(LAYOUT.failed("{lang}")),
    log:
        str(LAYOUT.log("merge/{lang}")),
    conda:
        "../../envs/fishflow.yaml"
    script:
        "../scripts/merge.py"


rule summary:
    input:
        metadata=language_manifests("metadata"),
        failed=language_manifests("failed"),
    output:
        str(LAYOUT.summary()),
    log:
        str(LAYOUT.log("summary")),
    conda:
        "../../envs/fishflow.yaml"
    script:
        "../scripts/summary.py"
