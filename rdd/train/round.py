"""A distillation round: the student starts as a copy of the teacher and learns its two steps in one."""

import copy

from torch import nn

from rdd import dist, methods
from rdd.losses.objective import DistillObjective
from rdd.checkpoints import CheckpointError, denoiser_payload, data_problem, load_classifier, load_denoiser
from rdd.nets.sync_batchnorm import synchronised
from rdd.train import speed_settings
from rdd.train.loop import Stage, cosine_decay, shared_generator
from rdd.train.runner import amp_context


def round_student(teacher, net_kwargs, dropout):
    """`(student, its net kwargs)`: a trainable copy of `teacher` with the round's dropout.

    The released rounds run every student with dropout 0 whatever the teacher
    was trained with; `dropout` None keeps the teacher's.
    """
    student = copy.deepcopy(teacher).requires_grad_(True).train()
    if dropout is None:
        return student, dict(net_kwargs)
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"setting 'dropout' must be in [0, 1) or null, got {dropout!r}")
    for module in student.modules():
        if isinstance(module, nn.Dropout):
            module.p = float(dropout)
    return student, {**net_kwargs, "dropout": float(dropout)}


def check_relation_groups(settings):
    """IS-P2P groups must tile each process's share of the batch (checked before any loading)."""
    group = settings["is_p2p_group_size"]
    per_process = settings["train"]["batch_size"] // dist.world_size()
    if group and methods.loss_weights(settings)["is_p2p"] and per_process % group:
        raise ValueError(f"setting 'is_p2p_group_size' ({group}) must divide the batch per process "
                         f"({per_process} = train.batch_size / {dist.world_size()} processes)")


def check_classifier_given(settings, classifier_path):
    """A classifier file is given exactly when a loss term reads its features (checked before any
    loading): one given to a round that never reads it would look, in the record, as if it mattered."""
    weights = methods.loss_weights(settings)
    needing = methods.feature_terms(weights)
    if classifier_path is None and needing:
        raise ValueError(f"the loss terms {', '.join(needing)} of method {settings['method']} need a classifier "
                         "(--classifier)")
    if classifier_path is not None and not needing:
        used = [t for t, w in weights.items() if w]
        raise ValueError(f"--classifier {classifier_path}: the loss terms of method {settings['method']} "
                         f"({', '.join(used)}) read no classifier; leave it out")


def head_norm(objective, settings):
    """Synchronise the M-P2P head's BatchNorm across processes (as released); say what ran."""
    m_p2p = objective.terms["m_p2p"] if "m_p2p" in objective.terms else None
    if m_p2p is None:
        return None
    m_p2p.head, norm = synchronised(m_p2p.head, settings["m_p2p_sync_bn"], "m_p2p_sync_bn")
    return norm


def round_stage(settings, device, teacher, teacher_kwargs, grid, classifier=None):
    """The stage of one round from a loaded teacher (and classifier); returns (stage, record items).
    The caller checks the settings first (`check_relation_groups`)."""
    speed = settings["speed"]
    speed_settings.prepare(teacher.requires_grad_(False), speed)
    if classifier is not None:
        speed_settings.prepare(classifier, speed)
    channels = classifier.num_features if classifier is not None else None
    objective = DistillObjective(teacher, grid, settings, classifier, channels,
                                 gather=dist.all_gather_cat).to(device)
    norm = head_norm(objective, settings)
    student, kwargs = round_student(teacher, teacher_kwargs, settings["dropout"])
    train = settings["train"]
    optimizers = {"student": speed_settings.optimizer("adam", student.parameters(), speed, lr=train["lr"])}
    modules, heads = {"student": student}, []
    for name, term in objective.terms.items():
        if term.state_dict():
            modules[name] = term  # its state (M-P2P's memory too) is resumed
        parameters = list(term.parameters())
        if parameters:
            # A term's trained head has its own Adam at the round's lr, as released for M-P2P.
            heads += parameters
            optimizers[f"{name}_head"] = speed_settings.optimizer("adam", parameters, speed, lr=train["lr"])
    model = speed_settings.compiled(dist.data_parallel(student), speed)
    conditional = kwargs["num_classes"] > 0

    def loss(batch, step):
        x, y = speed_settings.to_device(batch, device, speed)
        with amp_context(settings, device):
            return objective(model, x, y if conditional else None, shared_generator(settings["seed"], step))

    # As released, only the student's lr follows the cosine and only its gradient is clipped; the
    # head's lr stays constant.
    constant = ("m_p2p_head",) if settings["m_p2p_head_lr"] == "constant" else ()
    stage = Stage("distill", modules, optimizers, cosine_decay(train["iters"]), loss,
                  lambda: denoiser_payload(student, kwargs, grid.student()),
                  clip_parameters=list(student.parameters()), grad_clip=train["grad_clip"],
                  unsynced_parameters=heads, constant_lr=constant)
    extra = {"teacher_T": grid.T, "student_T": grid.student().T, "loss_weights": objective.weights,
             "student_dropout": kwargs.get("dropout"), "m_p2p_head_norm": norm}
    return stage, extra


def make_build_stage(teacher_path, classifier_path=None, authors_net=None):
    """A `build_stage` for the runner, for the teacher (and classifier) files given."""

    def build_stage(settings, device, dataset):
        check_relation_groups(settings)  # before any file is loaded
        check_classifier_given(settings, classifier_path)
        teacher, teacher_kwargs, grid = load_denoiser(teacher_path, device, authors_net)
        classifier, classifier_kwargs = load_classifier(classifier_path, device) if classifier_path else (None, None)
        for path, kwargs in ((teacher_path, teacher_kwargs), (classifier_path, classifier_kwargs)):
            if kwargs and (problem := data_problem(kwargs, settings["data"])):
                raise CheckpointError(f"{path} {problem}")
        stage, extra = round_stage(settings, device, teacher, teacher_kwargs, grid, classifier)
        files = {"teacher": str(teacher_path), "classifier": str(classifier_path) if classifier_path else None}
        return stage, lambda: {**files, **extra}

    return build_stage
