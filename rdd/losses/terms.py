"""The loss terms of a round, each a builder named by its entry in `rdd.methods.TERMS`.

A builder takes the round's settings and a `TermContext` and returns an `nn.Module` whose forward
takes one `RoundBatch` and returns the term's scalar loss. A term with state (M-P2P's memory and
head) keeps it in that module: the round saves it in the resume state under the term's name and
trains its parameters with their own Adam.
"""

import functools
import importlib
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import nn

from rdd.losses.cfd import cfd_loss
from rdd.losses.dataset import class_diversity_loss, prediction_entropy
from rdd.losses.relational import MP2PLoss, is_p2p_loss
from rdd.losses.truncated_snr import truncated_snr_loss


@dataclass
class TermContext:
    """What a builder may need besides the settings."""

    feature_channels: Optional[int]  # channels of the classifier's relational map (None: no classifier)
    gather: Callable                 # maps this process's tensor to every process's (all_gather)


@dataclass
class RoundBatch:
    """One batch of a round: the noisy input, the teacher's two-step target, the student's x0,
    and the classifier's features of both, computed once and only when a term reads them."""

    grid: object
    z_t: torch.Tensor
    t: torch.Tensor
    x0_student: torch.Tensor
    x_target: torch.Tensor
    eps_target: torch.Tensor
    features: Callable  # images -> (relational map, pooled vector)
    logits: Optional[Callable]  # pooled vector -> the classifier's class logits (None: no classifier)
    shared_generator: Optional[torch.Generator] = None  # draws every process makes alike (None: global)

    @functools.cached_property
    def teacher_features(self):
        with torch.no_grad():
            return self.features(self.x_target)

    @functools.cached_property
    def student_features(self):
        return self.features(self.x0_student)

    @functools.cached_property
    def student_logits(self):
        return self.logits(self.student_features[1])


class _Stateless(nn.Module):
    def __init__(self, loss):
        super().__init__()
        self.loss = loss

    def forward(self, batch):
        return self.loss(batch)


def pd(settings, context):
    return _Stateless(lambda b: truncated_snr_loss(b.grid, b.z_t, b.t, b.x0_student, b.x_target,
                                                   b.eps_target).mean())


def cfd(settings, context):
    tau = settings["tau"]
    return _Stateless(lambda b: cfd_loss(b.student_features[1], b.teacher_features[1], tau))


def is_p2p(settings, context):
    temperature, group_size = settings["is_p2p_temperature"], settings["is_p2p_group_size"]
    return _Stateless(lambda b: is_p2p_loss(b.student_features[0], b.teacher_features[0],
                                            temperature=temperature, group_size=group_size))


def entropy(settings, context):
    return _Stateless(lambda b: prediction_entropy(b.student_logits))


def diversity(settings, context):
    return _Stateless(lambda b: class_diversity_loss(b.student_logits))


class _MP2PTerm(MP2PLoss):
    def forward(self, batch):
        return super().forward(batch.student_features[0].float(), batch.teacher_features[0].float(),
                               generator=batch.shared_generator)


def m_p2p(settings, context):
    return _MP2PTerm(
        context.feature_channels, memory_size=settings["memory_size"], num_anchors=settings["num_anchors"],
        enqueue_per_step=settings["enqueue_per_step"], contrast_temperature=settings["contrast_temperature"],
        kd_temperature=settings["kd_temperature"], gather=context.gather, enqueue=settings["m_p2p_enqueue"],
        wrap=settings["m_p2p_wrap"], anchor_slots=settings["m_p2p_anchors"], head_bias=settings["m_p2p_head_bias"])


def build_term(term, settings, context):
    """The loss module of `term` (an `rdd.methods.Term`)."""
    module_name, function = term.build.split(":")
    return getattr(importlib.import_module(module_name), function)(settings, context)
