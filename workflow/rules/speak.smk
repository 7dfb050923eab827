# One generation job per batch (about shards_per_job shards of one language, spread over its
# voices): on a cluster one Slurm job, which starts its server replicas on its node, speaks
# what is missing and stops them (see README, design notes).
rule speak:
    input:
        checkpoint_provenance,
    output:
        shards=str(LAYOUT.batch_record("{lang}", "{batch}")),
        servers=str(LAYOUT.servers_record("{lang}", "{batch}")),
    log:
        str(LAYOUT.speak_log("{lang}", "{batch}")),
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


# The generation job is the one rule that runs as a Slurm job (the others are localrules): with
# the Slurm profile, a request no node of the partition can hold fails the plan, not the queue.
check_slurm_jobs(rules.speak.rule)
