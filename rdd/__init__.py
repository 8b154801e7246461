"""Relational Diffusion Distillation benchmark library.

Teachers, the DDIM sampler, progressive distillation rounds (PD, RCFD, RDD),
the feature classifier, data, metrics and the command line used by the
Snakemake workflow.
"""

__version__ = "0.1.0"
