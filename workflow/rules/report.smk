# Tidy tables (CSV) and the HTML report of a study, built by `python -m rdd.report` from the
# study's manifest (results/<study>/manifest.json: every record the study produces, with its
# labels), and an index of the studies in `run`. The report's code and templates are inputs of
# these rules only: editing them rebuilds the reports and retrains nothing.

localrules:
    all,
    report,
    report_index,


rule report:
    input:
        manifest=manifest_file,
        records=report_inputs,
        code=REPORT_CODE,
        paper_values=PAPER_VALUES,
    output:
        # Marked for Snakemake's own report (`snakemake --report report.zip`) too.
        report=report("reports/{study}.html", category="{study}", subcategory="Report", labels={"file": "report"}),
        summary="reports/{study}.summary.json",
        metrics=report("results/{study}/tables/metrics.csv", category="{study}", subcategory="Tables",
                       labels={"table": "metrics"}),
        speed=report("results/{study}/tables/speed.csv", category="{study}", subcategory="Tables",
                     labels={"table": "sampling speed"}),
        curves=report("results/{study}/tables/curves.csv", category="{study}", subcategory="Tables",
                      labels={"table": "training curves"}),
        stages=report("results/{study}/tables/stages.csv", category="{study}", subcategory="Tables",
                      labels={"table": "stages"}),
    log:
        "logs/reports/{study}.log",
    params:
        tables_dir=lambda wc: f"results/{wc.study}/tables",
        manifest=lambda wc: text_digest(manifest_text(wc.study)),
    shell:
        "python -m rdd.report build --manifest {input.manifest} --tables-dir {params.tables_dir}"
        " --out {output.report} --paper-values {input.paper_values} > {log} 2>&1"


rule report_index:
    input:
        reports=expand("reports/{study}.html", study=CONFIG["run"]),
        summaries=expand("reports/{study}.summary.json", study=CONFIG["run"]),
        code=REPORT_CODE,
    output:
        "reports/index.html",
    log:
        "logs/reports/index.log",
    shell:
        "python -m rdd.report index --reports {input.reports} --out {output} > {log} 2>&1"
