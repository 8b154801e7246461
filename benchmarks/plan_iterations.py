"""One training iteration of a study's stage, built from its plan: what every training benchmark times.

The stage is the production one (rdd.train.teacher.build_stage or rdd.train.round.round_stage with the
plan's settings, networks and per-GPU batch) and the iteration the production step
(rdd.train.loop.train_step: lr schedule, zero_grad, backward, head gradients, clipping, every
optimiser). Networks have random weights and the batch is random: speed does not depend on them.
"""

import copy
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "workflow" / "scripts"))
import configcheck  # noqa: E402
import studyplan  # noqa: E402
from rdd import io  # noqa: E402


def load_plans(names, tiny=False, overlay=None):
    """The StudyPlans of `names`, from config/config.yaml (config/tiny.yaml merged over it with `tiny`,
    then `overlay`, a config mapping)."""
    config = io.read_yaml(REPO / "config" / "config.yaml")
    if tiny:
        config = studyplan.deep_merge(config, io.read_yaml(REPO / "config" / "tiny.yaml"))
    config = studyplan.deep_merge(config, overlay or {})
    checked, ablations = configcheck.checked_config(config, REPO)
    return studyplan.build_plans(checked["studies"], ablations, names)


def timed_stages(plan):
    """{kind: Stage} of what is timed: the teacher, the chain's first round, each method's first round."""
    stages, rounds = {}, {}
    for stage in plan.stages.values():
        labels = stage.labels
        if stage.rule == "train_teacher":
            stages["teacher"] = stage
        elif labels.get("stage") == "pd_chain":
            stages.setdefault("pd_chain", stage)
        elif labels.get("stage") == "round" and not labels.get("ablation") and not labels.get("replicate"):
            rounds.setdefault(labels["method"], stage)
    return {**stages, **rounds}


def per_gpu_batch(plan, stage):
    return stage.settings["train"]["batch_size"] // max(1, plan.resources(stage.rule)["gpu"])


def build_iteration(plan, kind, device, overrides=None):
    """A closure running one training iteration of `kind` (a key of `timed_stages`) at its per-GPU
    batch on `device`, with `overrides` (a settings mapping, e.g. {"speed": {...}}) merged over the
    stage's settings; it returns the step's loss terms. Every build starts from the same weights."""
    import torch

    from rdd.data import num_classes
    from rdd.diffusion import TimeGrid
    from rdd.nets import build_classifier, build_unet
    from rdd.train import speed_settings, teacher as teacher_mod
    from rdd.train.checks import classifier_kwargs, unet_kwargs
    from rdd.train.loop import train_step
    from rdd.train.round import check_relation_groups, round_stage

    stages = timed_stages(plan)
    stage = stages[kind]
    torch.manual_seed(0)
    dev = torch.device(device)
    settings = studyplan.deep_merge(copy.deepcopy(stage.settings), {"device": {"device": device}}, overrides)
    batch_size = per_gpu_batch(plan, stage)
    net_kwargs = unet_kwargs(stages["teacher"].settings)
    speed_settings.configure(settings["speed"], dev)
    if kind == "teacher":
        built, _ = teacher_mod.build_stage(settings, dev, None)
    else:
        check_relation_groups({**settings, "train": {**settings["train"], "batch_size": batch_size}})
        classifier = None
        if stage.classifier:
            kwargs = classifier_kwargs(plan.stages[stage.classifier].settings)
            classifier = build_classifier(kwargs.pop("name"), kwargs.pop("num_classes"), kwargs.pop("in_channels"),
                                          **kwargs).to(dev).eval().requires_grad_(False)
        teacher_T = int(stage.labels["round"].split("->")[0])
        teacher = build_unet(**net_kwargs).to(dev).eval()
        built, _ = round_stage(settings, dev, teacher, net_kwargs, TimeGrid(teacher_T, plan.config["T_base"]),
                               classifier)
    classes = num_classes(settings["data"]) if net_kwargs["num_classes"] else 1
    shape = (batch_size, net_kwargs["in_channels"], net_kwargs["img_resolution"], net_kwargs["img_resolution"])
    generator = torch.Generator().manual_seed(0)
    batch = (torch.rand(shape, generator=generator) * 2 - 1, torch.randint(0, classes, (batch_size,),
                                                                           generator=generator))
    steps = iter(range(1, 1 << 30))

    def iteration():
        # Process-wide flags: set for this case, as cases of other settings interleave with it.
        speed_settings.configure(settings["speed"], dev)
        terms = train_step(built, batch, next(steps), settings["seed"])
        if dev.type == "cuda":
            torch.cuda.synchronize()
        return terms

    return iteration


def time_cases(cases, repeats):
    """Time the iterations `cases` ({name: closure}) in one process: each called once (its first call
    timed: compilation, allocation) and once more to settle, then `repeats` rounds calling every case
    once, in an order rotated each round so that a slow spell of the machine falls on all alike.
    Returns {name: {"first_value", "first_call_seconds", "last_value", "seconds": [one per round],
    "seconds_per_iteration" (median), "min", "max"}}; a value is what the closure returned."""
    timed = {}
    for name, iteration in cases.items():
        started = time.perf_counter()
        value = iteration()
        timed[name] = {"first_value": value, "first_call_seconds": time.perf_counter() - started, "seconds": []}
    for iteration in cases.values():
        iteration()
    names = list(cases)
    for repeat in range(repeats):
        shift = repeat % len(names)
        for name in names[shift:] + names[:shift]:
            started = time.perf_counter()
            timed[name]["last_value"] = cases[name]()
            timed[name]["seconds"].append(time.perf_counter() - started)
    for row in timed.values():
        row.update(seconds_per_iteration=statistics.median(row["seconds"]), min=min(row["seconds"]),
                   max=max(row["seconds"]))
    return timed
