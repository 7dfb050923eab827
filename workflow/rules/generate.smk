rule generate:
    input:
        endpoint=endpoint_file,
    output:
        f"{OUT}/work/generated/{{lang}}/{{voice}}/{{shard}}.json",
    log:
        f"{OUT}/logs/generate/{{lang}}/{{voice}}/{{shard}}.log",
    group:
        "tts"
    conda:
        "../../envs/fishflow.yaml"
    # I/O-bound client: the server does the work, and the group's threads are summed.
    threads: 0
    params:
        # A changed text, voice reference, parameter or model changes this: Snakemake reruns
        # exactly the affected shards (rerun trigger "params").
        fingerprint=shard_fingerprint,
        shard=shard_spec,
        settings=SETTINGS,
    script:
        "../scripts/generate.py"


rule validate:
    input:
        f"{OUT}/work/generated/{{lang}}/{{voice}}/{{shard}}.json",
    output:
        f"{OUT}/work/validated/{{lang}}/{{voice}}/{{shard}}.jsonl",
    log:
        f"{OUT}/logs/validate/{{lang}}/{{voice}}/{{shard}}.log",
    # A failure here means an incomplete shard whose record was just removed: retrying cannot
    # help (it would wait for the record, then stop the whole run); the next run regenerates it.
    retries: 0
    conda:
        "../../envs/fishflow.yaml"
    params:
        settings=SETTINGS,
        limits=config["validation"],
    script:
        "../scripts/validate.py"
