rule merge:
    input:
        validated_shards,
    output:
        metadata=f"{OUT}/metadata_{{lang}}.jsonl",
        failed=f"{OUT}/failed_{{lang}}.jsonl",
    log:
        f"{OUT}/logs/merge/{{lang}}.log",
    conda:
        "../../envs/fishflow.yaml"
    params:
        # Dropped rows shrink the set of shards without touching any mtime.
        shards=validated_shards,
    script:
        "../scripts/merge.py"


rule summary:
    input:
        metadata=language_manifests("metadata"),
        failed=language_manifests("failed"),
    output:
        f"{OUT}/summary.json",
    log:
        f"{OUT}/logs/summary.log",
    conda:
        "../../envs/fishflow.yaml"
    script:
        "../scripts/summary.py"
