# Samples and metrics of every (model, steps, seed) the plan evaluates, the
# held-out real images scored the same way (the report's real-data row), the sampling speed of
# every main model measured by one job alone on the machine, and the relational losses' memory
# sweep that the report's memory claim reads.
# {method}/{variant}: see rdd/layout.py (ddim/teacher, pd/chain, <method>/default, <method>/<ablation>-<variant>).


rule sample:
    input:
        model=lambda wc: evaluation(wc).model,
    output:
        samples=layout.SAMPLES,
        record=layout.samples_record(layout.SAMPLES),
        grid=report(layout.GRID, category="{study}", subcategory="Samples",
                    labels={"model": "{method}/{variant}", "steps": "{steps}", "seed": "{seed}"}),
    log:
        layout.log(layout.SAMPLES),
    params:
        options=sample_options,
        speed=sampling_speed,
    threads: res("sample", "threads")
    resources:
        mem_mb=res("sample", "mem_mb"),
        runtime=res("sample", "runtime"),
        gpu=res("sample", "gpu"),
    shell:
        "rdd_claim_gpu {resources.gpu}; "
        "python -m rdd sample @{params.speed:q} --model {input.model:q} --steps {wildcards.steps} {params.options}"
        " --out {output.samples} --grid {output.grid} > {log} 2>&1"


rule real_samples:
    input:
        data=ref_data_file,
    output:
        samples=layout.REAL_SAMPLES,
        record=layout.samples_record(layout.REAL_SAMPLES),
    log:
        layout.log(layout.REAL_SAMPLES),
    params:
        seeds=lambda wc: PLANS[wc.study].image_seeds(int(wc.seed)),
    threads: res("real_samples", "threads")
    resources:
        mem_mb=res("real_samples", "mem_mb"),
        runtime=res("real_samples", "runtime"),
        gpu=res("real_samples", "gpu"),
    shell:
        "python -m rdd real-samples --data-settings {input.data} --split {wildcards.split} --seeds {params.seeds}"
        " --out {output.samples} > {log} 2>&1"


rule evaluate:
    input:
        samples=lambda wc: evaluation(wc).samples,
        ref=lambda wc: PLANS[wc.study].ref_stats(),
    output:
        layout.METRIC,
    log:
        layout.log(layout.METRIC),
    params:
        labels=metric_labels,
        inception=inception_option,
        isc_split_order=isc_split_order_option,
        device=lambda wc: PLANS[wc.study].config["device"],
    threads: res("evaluate", "threads")
    resources:
        mem_mb=res("evaluate", "mem_mb"),
        runtime=res("evaluate", "runtime"),
        gpu=res("evaluate", "gpu"),
    shell:
        "rdd_claim_gpu {resources.gpu}; "
        "python -m rdd evaluate --samples {input.samples} --ref-stats {input.ref} --out {output}"
        " {params.inception} {params.isc_split_order} --device {params.device} {params.labels} > {log} 2>&1"


rule speed_benchmark:
    # Every core of a local run, so that nothing else runs beside it; after every model it times exists.
    input:
        cases=speed_cases_file,
        models=lambda wc: sorted({case["model"] for case in PLANS[wc.study].speed_cases()}),
    output:
        layout.SPEED_BENCHMARK,
    log:
        layout.log(layout.SPEED_BENCHMARK),
    params:
        batch_size=lambda wc: PLANS[wc.study].config["evaluate"]["batch_size"],
        net_batch=lambda wc: PLANS[wc.study].config["evaluate"]["net_batch"],
        precision=lambda wc: PLANS[wc.study].config["evaluate"]["sampling_precision"],
        repeats=lambda wc: PLANS[wc.study].config["evaluate"]["speed_benchmark"]["repeats"],
        min_seconds=lambda wc: PLANS[wc.study].config["evaluate"]["speed_benchmark"]["min_seconds"],
        device=lambda wc: PLANS[wc.study].config["device"],
        cases=lambda wc: text_digest(speed_cases_text(wc.study)),
        # torch's threads: the job's, but no more than the machine has (--cores may exceed them).
        torch_threads=lambda wc, threads: min(threads, os.cpu_count() or 1),
    threads: all_cores("speed_benchmark")
    resources:
        mem_mb=res("speed_benchmark", "mem_mb"),
        runtime=res("speed_benchmark", "runtime"),
        gpu=res("speed_benchmark", "gpu"),
    shell:
        "rdd_claim_gpu {resources.gpu}; "
        "python -m rdd speed-benchmark --cases {input.cases} --out {output} --batch-size {params.batch_size}"
        " --net-batch {params.net_batch} --precision {params.precision} --repeats {params.repeats}"
        " --min-seconds {params.min_seconds} --threads {params.torch_threads} --device {params.device} > {log} 2>&1"


rule memory_benchmark:
    output:
        layout.MEMORY_BENCHMARK,
    log:
        layout.log(layout.MEMORY_BENCHMARK),
    params:
        limit_gb=lambda wc: PLANS[wc.study].config["evaluate"]["memory_benchmark"]["limit_gb"],
        device=lambda wc: PLANS[wc.study].config["device"],
    threads: res("memory_benchmark", "threads")
    resources:
        mem_mb=res("memory_benchmark", "mem_mb"),
        runtime=res("memory_benchmark", "runtime"),
        gpu=res("memory_benchmark", "gpu"),
    shell:
        "rdd_claim_gpu {resources.gpu}; "
        "python -m benchmarks.bench_relational_memory --limit-gb {params.limit_gb} --device {params.device}"
        " --json {output} > {log} 2>&1"
