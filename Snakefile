# The RDD benchmark as one workflow: data and reference statistics -> teacher -> classifier ->
# shared PD chain -> each method's rounds -> ablations -> samples and metrics -> tables -> report.
#
#   snakemake --cores 8 all                                 the embedded default (Fashion-MNIST, CPU)
#   snakemake --cores 8 reports/cifar10.html                the paper's protocol on CIFAR-10
#   snakemake --profile profiles/slurm all                  the same on a SLURM cluster
#   snakemake --cores 2 all --configfile config/tiny.yaml   a few-minute run of the whole DAG
#
# The rules only call the library's command line (`python -m rdd ...`); config/config.yaml
# says what runs, workflow/schemas/ what it may say, ablations/ which variants run.

import os

configfile: os.path.join(workflow.basedir, "config", "config.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        all_targets,
    default_target: True
