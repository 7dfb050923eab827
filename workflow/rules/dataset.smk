# The output folder as a Hugging Face dataset: per language the rows `datasets` reads beside the
# WAVs, and the dataset card that names them (one config per language).
rule dataset:
    input:
        metadata=language_manifests("metadata"),
        summary=str(LAYOUT.summary()),
    output:
        card=str(LAYOUT.dataset_card()),
        rows=[str(LAYOUT.dataset_metadata(lang)) for lang in LANGUAGES],
    log:
        str(LAYOUT.log("dataset")),
    conda:
        "../../envs/fishflow.yaml"
    params:
        languages=LANGUAGES,
        license=config["dataset"]["license"],
    script:
        "../scripts/dataset.py"
