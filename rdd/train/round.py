"""A distillation round: the student starts as a copy of the teacher and learns its two steps in one."""

import copy

import torch
from torch.nn.parallel import DistributedDataParallel

from rdd import dist
from rdd.distill import DistillObjective
from rdd.models import denoiser_payload, load_classifier, load_denoiser
from rdd.train.loop import Stage, cosine_decay
from rdd.train.runner import amp_context


def make_build_stage(teacher_path, classifier_path=None, authors_net=None):
    """A `build_stage` for the runner, for the teacher (and classifier) files given."""

    def build_stage(settings, device, dataset):
        teacher, kwargs, grid = load_denoiser(teacher_path, device, authors_net)
        teacher.requires_grad_(False)
        classifier = load_classifier(classifier_path, device)[0] if classifier_path else None
        channels = classifier.num_features if classifier is not None else None
        objective = DistillObjective(teacher, grid, settings, classifier, channels,
                                     gather=dist.all_gather_cat).to(device)
        student = copy.deepcopy(teacher).requires_grad_(True).train()
        train = settings["train"]
        optimizers = {"student": torch.optim.Adam(student.parameters(), lr=train["lr"])}
        modules = {"student": student}
        if objective.m_p2p is not None:
            # The projection head has its own Adam at the student's learning rate.
            optimizers["m_p2p_head"] = torch.optim.Adam(objective.m_p2p.head.parameters(), lr=train["lr"])
            modules["m_p2p"] = objective.m_p2p
        model = DistributedDataParallel(student) if dist.is_distributed() else student
        conditional = kwargs["num_classes"] > 0

        def train_step(batch, step):
            x, y = (v.to(device) for v in batch)
            with amp_context(settings, device):
                loss, terms = objective(model, x, y if conditional else None)
            for opt in optimizers.values():
                opt.zero_grad(set_to_none=True)
            loss.backward()
            if objective.m_p2p is not None:
                dist.average_gradients(objective.m_p2p.head.parameters())
            if train["grad_clip"]:
                torch.nn.utils.clip_grad_norm_(student.parameters(), train["grad_clip"])
            for opt in optimizers.values():
                opt.step()
            return {"loss": float(loss.detach()), **terms}

        stage = Stage("distill", modules, optimizers, cosine_decay(train["iters"]), train_step,
                      lambda: denoiser_payload(student, kwargs, grid.student()))
        extra = {"teacher": str(teacher_path), "classifier": str(classifier_path) if classifier_path else None,
                 "teacher_T": grid.T, "student_T": grid.student().T, "loss_weights": objective.weights}
        return stage, lambda: extra

    return build_stage
