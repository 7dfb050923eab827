# The benchmark report: figures per language × voice, plots, samples and provenance, from the
# manifests and the server and generation logs. Also registered for `snakemake --report`.
localrules:
    report,


rule report:
    input:
        metadata=language_manifests("metadata"),
        failed=language_manifests("failed"),
        summary=f"{OUT}/summary.json",
    output:
        html=report(
            f"{OUT}/report/index.html",
            caption="../report/index.rst",
            category="Benchmark report",
        ),
        json=report(
            f"{OUT}/report/report.json",
            caption="../report/report_json.rst",
            category="Benchmark report",
        ),
        csv=report(
            f"{OUT}/report/items.csv",
            caption="../report/items_csv.rst",
            category="Benchmark report",
        ),
    log:
        f"{OUT}/logs/report.log",
    conda:
        "../../envs/fishflow.yaml"
    params:
        languages=sorted(PLAN.rows),
    script:
        "../scripts/report.py"
