"""The command line that starts `python -m rdd`: the interpreter itself for one process, torchrun for
data parallelism (one process per GPU, the batch split across them, as the released multi-GPU runs).
Free of torch, so that the workflow can import it while it plans."""


def rdd_command(processes=1, python="python", torchrun=None):
    """`[python, ..., "-m", "rdd"]` on `processes` processes; `torchrun` (default: more than one
    process) starts even one process through torchrun, as a run on several would be."""
    if processes < 1:
        raise ValueError(f"rdd_command needs at least one process, got {processes}")
    if not (processes > 1 if torchrun is None else torchrun):
        return [python, "-m", "rdd"]
    return [python, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(int(processes)),
            "-m", "rdd"]
