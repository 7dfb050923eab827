# fish-speech only: the `speak` rule needs this, so the checkpoint is complete (downloaded if
# asked) before any server starts, and its exact files are on record for benchmark reports.
# Local: the login node has the network for a download; hashing needs no GPU.
rule provide_model:
    input:
        # Existing files only (none before a download): replaced files rerun it (mtime).
        checkpoint_inputs,
    output:
        str(LAYOUT.checkpoint_provenance()),
    log:
        str(LAYOUT.log("provide_model")),
    conda:
        "../../envs/fishflow.yaml"
    params:
        # A different checkpoint folder or decoder reruns it (rerun trigger "params").
        files=checkpoint_paths(),
        settings=SETTINGS,
    script:
        "../scripts/provide_model.py"
