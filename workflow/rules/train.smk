# Training: the base teacher, the feature classifier(s) and every distillation round.
# Each job reads a settings file that is rewritten only when its content changes (and carries its
# digest as a param), so editing one setting retrains only the stages that depend on it. The study's
# speed settings come from a second file that is a param, not an input: they change results by
# rounding only, so a change of them retrains nothing. Resume state lives under resume/, apart from
# the outputs: a killed job continues from it on the next run (Snakemake deletes only outputs).
# Paths: rdd/layout.py.


rule train_teacher:
    input:
        unpack(training_inputs("train_teacher")),
    output:
        model=layout.TEACHER,
        record=layout.training_record(layout.TEACHER),
        curves=layout.curves(layout.TEACHER),
    log:
        layout.log(layout.TEACHER),
    params:
        resume=resume_dir,
        settings=settings_digest("train_teacher"),
        launch=launcher("train_teacher"),
        speed=speed_settings,
    threads: res("train_teacher", "threads")
    resources:
        mem_mb=res("train_teacher", "mem_mb"),
        runtime=res("train_teacher", "runtime"),
        gpu=res("train_teacher", "gpu"),
    shell:
        "rdd_claim_gpu {resources.gpu}; "
        "{params.launch} train-teacher --settings {input.settings} --settings {params.speed} --out {output.model}"
        " --resume-dir {params.resume} > {log} 2>&1"


rule train_classifier:
    input:
        unpack(training_inputs("train_classifier")),
    output:
        model=layout.CLASSIFIER,
        record=layout.training_record(layout.CLASSIFIER),
        curves=layout.curves(layout.CLASSIFIER),
    log:
        layout.log(layout.CLASSIFIER),
    params:
        resume=resume_dir,
        settings=settings_digest("train_classifier"),
        launch=launcher("train_classifier"),
        speed=speed_settings,
    threads: res("train_classifier", "threads")
    resources:
        mem_mb=res("train_classifier", "mem_mb"),
        runtime=res("train_classifier", "runtime"),
        gpu=res("train_classifier", "gpu"),
    shell:
        "rdd_claim_gpu {resources.gpu}; "
        "{params.launch} train-classifier --settings {input.settings} --settings {params.speed} --out {output.model}"
        " --resume-dir {params.resume} > {log} 2>&1"


rule distill:
    input:
        unpack(training_inputs("distill")),
    output:
        model=layout.STUDENT,
        record=layout.training_record(layout.STUDENT),
        curves=layout.curves(layout.STUDENT),
    log:
        layout.log(layout.STUDENT),
    params:
        options=distill_options,
        resume=resume_dir,
        settings=settings_digest("distill"),
        launch=launcher("distill"),
        speed=speed_settings,
    threads: res("distill", "threads")
    resources:
        mem_mb=res("distill", "mem_mb"),
        runtime=res("distill", "runtime"),
        gpu=res("distill", "gpu"),
    shell:
        "rdd_claim_gpu {resources.gpu}; "
        "{params.launch} distill --settings {input.settings} --settings {params.speed} --teacher {input.teacher:q} {params.options}"
        " --out {output.model} --resume-dir {params.resume} > {log} 2>&1"
