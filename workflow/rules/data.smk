# Reference statistics of the real images (FID/KID), one record per study and split. The record
# names the statistics file, cached by content under cache/ (shared by studies with the same data).


rule ref_stats:
    input:
        data=ref_data_file,
    output:
        layout.REFERENCE,
    log:
        layout.log(layout.REFERENCE),
    params:
        limit=lambda wc: f"--limit {n}" if (n := PLANS[wc.study].config["evaluate"]["reference"]["limit"]) else "",
        inception=inception_option,
        inception_input=inception_input_option,
        device=lambda wc: PLANS[wc.study].config["device"],
        data=lambda wc: text_digest(PLANS[wc.study].ref_data_text()),
    threads: res("ref_stats", "threads")
    resources:
        mem_mb=res("ref_stats", "mem_mb"),
        runtime=res("ref_stats", "runtime"),
        gpu=res("ref_stats", "gpu"),
    shell:
        "rdd_claim_gpu {resources.gpu}; "
        "python -m rdd ref-stats --data-settings {input.data} --split {wildcards.split} --out {output}"
        " {params.limit} {params.inception} {params.inception_input} --device {params.device} > {log} 2>&1"
