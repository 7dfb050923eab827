# One generation job per batch (up to shards_per_job shards of one language x voice): on a
# cluster one Slurm job, which starts its server replicas on its node, speaks what is missing
# and stops them (see README, design notes).
rule speak:
    input:
        checkpoint_provenance,
    output:
        shards=str(LAYOUT.batch_record("{lang}", "{voice}", "{batch}")),
        servers=str(LAYOUT.servers_record("{lang}", "{voice}", "{batch}")),
    log:
        str(LAYOUT.speak_log("{lang}", "{voice}", "{batch}")),
    conda:
        "../../envs/fishflow.yaml"
    params:
        # A changed text, voice reference, parameter or model changes this: Snakemake reruns
        # exactly the affected batches (rerun trigger "params"), which speak what changed.
        fingerprint=batch_fingerprint,
        batch=batch_spec,
        settings=SETTINGS,
    script:
        "../scripts/speak.py"
