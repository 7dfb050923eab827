# The benchmark report: speed and quality figures per language x voice, plots, samples and
# provenance, from the manifests and the generation jobs' servers records. Also registered for
# `snakemake --report`.
rule report:
    input:
        metadata=language_manifests("metadata"),
        failed=language_manifests("failed"),
        summary=str(LAYOUT.summary()),
        servers=servers_records,
        checkpoint=checkpoint_provenance,
        # Hashed into the report's provenance.
        texts=list(config["inputs"].values()),
        references=[voice["audio"] for voice in config["voices"].values()],
        judge_models=judge_model_files,
    output:
        html=report(
            str(LAYOUT.report("index.html")),
            caption="../report/index.rst",
            category="Benchmark report",
        ),
        json=report(
            str(LAYOUT.report("report.json")),
            caption="../report/report_json.rst",
            category="Benchmark report",
        ),
        csv=report(
            str(LAYOUT.report("items.csv")),
            caption="../report/items_csv.rst",
            category="Benchmark report",
        ),
    log:
        str(LAYOUT.log("report")),
    conda:
        "../../envs/fishflow.yaml"
    params:
        settings=SETTINGS,
    script:
        "../scripts/report.py"
