# Tidy tables (CSV) and the HTML report of a study, built by `python -m rdd.report` from the
# study's manifest (results/<study>/manifest.json: every record the study produces, with its
# labels), and an index of the studies in `run`. The report's code and templates are inputs of
# these rules only: editing them rebuilds the reports and retrains nothing.

localrules:
    all,
    report,
    report_index,
    unknown_study,
    unknown_study_file,


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


# A target of a study the config lacks: these two rules match only such a target (a report, or any
# file under results/<study>/) and their input function raises, naming the studies the config has;
# without them Snakemake would say only that no rule produces the file. They have nothing to run.
rule unknown_study:
    wildcard_constraints:
        study=rf"(?!(?:{STUDIES}|{Path(layout.INDEX).stem})\.html$)[^/]+",
    input:
        unknown_study(layout.REPORT),
    output:
        layout.REPORT,


rule unknown_study_file:
    wildcard_constraints:
        study=rf"(?!(?:{STUDIES})/)[^/]+",  # the look-ahead sees the rest of the path
        file=".+",
    input:
        unknown_study(layout.STUDY_FILE),
    output:
        layout.STUDY_FILE,
