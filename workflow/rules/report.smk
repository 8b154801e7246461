# Tidy tables (CSV) and the HTML report of a study, built by `python -m rdd.report` from the
# study's manifest (results/<study>/manifest.json: every record the study produces, with its
# labels), and an index of the studies in `run`. The report's code and templates are inputs of
# these rules only: editing them rebuilds the reports and retrains nothing.

localrules:
    all,
    report,
    report_index,
    unknown_study,


rule report:
    input:
        manifest=manifest_file,
        records=report_inputs,
        code=REPORT_CODE,
        paper_values=PAPER_VALUES,
    output:
        # Marked for Snakemake's own report (`snakemake --report report.zip`) too.
        report=report(layout.REPORT, category="{study}", subcategory="Report", labels={"file": "report"}),
        summary=layout.summary(layout.REPORT),
        **{name: report(layout.path(layout.TABLE, study="{study}", table=name), category="{study}",
                        subcategory="Tables", labels={"table": label}) for name, label in layout.TABLES.items()},
    log:
        layout.log(layout.REPORT),
    params:
        tables_dir=lambda wc: layout.path(layout.TABLES_DIR, study=wc.study),
        manifest=lambda wc: text_digest(manifest_text(wc.study)),
    shell:
        "python -m rdd.report build --manifest {input.manifest} --tables-dir {params.tables_dir}"
        " --out {output.report} --paper-values {input.paper_values} > {log} 2>&1"


rule report_index:
    input:
        reports=expand(layout.REPORT, study=CONFIG["run"]),
        summaries=expand(layout.summary(layout.REPORT), study=CONFIG["run"]),
        code=REPORT_CODE,
    output:
        layout.INDEX,
    log:
        layout.log(layout.INDEX),
    shell:
        "python -m rdd.report index --reports {input.reports} --out {output} > {log} 2>&1"


rule unknown_study:
    # Matches only the report of a study the config lacks, to stop the run naming the studies it has
    # (otherwise Snakemake would say only that no rule produces the file). Its input function raises,
    # so it has nothing to run.
    wildcard_constraints:
        study=rf"(?!(?:{STUDIES}|{Path(layout.INDEX).stem})\.html$)[^/]+",
    input:
        unknown_study,
    output:
        layout.REPORT,
