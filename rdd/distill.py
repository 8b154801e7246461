"""One distillation round T -> T/2: PD, RCFD or RDD, every loss term weighted by settings.

The student sees `z_t` at an even teacher time t = 2k and predicts x0; the
teacher's two DDIM steps give `x_target`. PD compares them in pixel space;
RCFD and RDD compare the frozen classifier's features of the two.
"""

import torch
import torch.nn.functional as F
from torch import nn

from rdd.data.input_norm import normalize_input
from rdd.diffusion import q_sample
from rdd.losses.cfd import cfd_loss
from rdd.losses.pd import pd_target
from rdd.losses.relational import MP2PLoss, is_p2p_loss
from rdd.losses.teacher import truncated_snr_loss

# Loss weights of each method as released: in RCFD/RDD the pixel PD loss is not added.
METHOD_WEIGHTS = {
    "pd": {"pd": 1.0, "cfd": 0.0, "is_p2p": 0.0, "m_p2p": 0.0},
    "rcfd": {"pd": 0.0, "cfd": 1.0, "is_p2p": 0.0, "m_p2p": 0.0},
    "rdd": {"pd": 0.0, "cfd": 1.0, "is_p2p": 1.0, "m_p2p": 0.1},
}


def loss_weights(settings):
    """The method's preset weights with the settings' explicit ones laid over them."""
    method = settings["method"]
    if method not in METHOD_WEIGHTS:
        raise ValueError(f"unknown method '{method}' (allowed: {', '.join(METHOD_WEIGHTS)})")
    weights = dict(METHOD_WEIGHTS[method])
    for term, value in settings["weights"].items():
        if term not in weights:
            raise ValueError(f"unknown loss term '{term}' (allowed: {', '.join(weights)})")
        if value is not None:
            weights[term] = float(value)
    if not any(weights.values()):
        raise ValueError("every loss weight is zero: the student would not be trained")
    return weights


class DistillObjective(nn.Module):
    """Computes one round's loss for a batch; holds M-P2P's memory and projection head."""

    def __init__(self, teacher, grid, settings, classifier=None, feature_channels=None,
                 gather=lambda v: v):
        super().__init__()
        self.teacher, self.grid, self.classifier = teacher, grid, classifier
        self.weights = loss_weights(settings)
        self.tau = settings["tau"]
        self.is_p2p_temperature = settings["is_p2p_temperature"]
        self.is_p2p_group_size = settings["is_p2p_group_size"]
        self.post_relu = settings["feature_map"] == "post_relu"
        self.as_trained = settings["classifier_input"] == "as_trained"
        if classifier is None and any(self.weights[k] for k in ("cfd", "is_p2p", "m_p2p")):
            raise ValueError("feature losses (cfd, is_p2p, m_p2p) need a classifier")
        self.m_p2p = None
        if self.weights["m_p2p"]:
            self.m_p2p = MP2PLoss(
                feature_channels, memory_size=settings["memory_size"],
                num_anchors=settings["num_anchors"], enqueue_per_step=settings["enqueue_per_step"],
                contrast_temperature=settings["contrast_temperature"],
                kd_temperature=settings["kd_temperature"], gather=gather,
                enqueue=settings["m_p2p_enqueue"], wrap=settings["m_p2p_wrap"],
                anchor_slots=settings["m_p2p_anchors"], head_bias=settings["m_p2p_head_bias"])

    def features(self, images):
        """The classifier's relational map and pooled vector of `images`.

        As released, the map is relu(F): the released classifier keeps F in a
        tensor that its next, in-place ReLU overwrites ("post_relu"); "pre_relu"
        relates F itself. The pooled vector is avgpool(relu(F)) either way.
        As released, the images go in raw, in [-1, 1], whatever normalisation
        the classifier was trained with ("raw"); "as_trained" applies it.
        """
        if self.as_trained:
            images = normalize_input(images, self.classifier.input_norm)
        feature_map, pooled = self.classifier.features(images)
        return (F.relu(feature_map) if self.post_relu else feature_map), pooled

    def forward(self, student, x, y=None):
        """Return (total loss, {term: value}) for clean images `x`."""
        k = torch.randint(1, self.grid.T // 2 + 1, (x.shape[0],), device=x.device)
        t = 2 * k
        z_t = q_sample(self.grid, x, t, torch.randn_like(x))
        x_target, eps_target, _ = pd_target(self.teacher, self.grid, z_t, t, y)
        # The student's time k on its own grid is the same network time as t here.
        x0_student = student(z_t, self.grid.net_time(t, x), y)

        terms = {}
        if self.weights["pd"]:
            terms["pd"] = truncated_snr_loss(self.grid, z_t, t, x0_student, x_target, eps_target).mean()
        if self.classifier is not None and any(self.weights[k] for k in ("cfd", "is_p2p", "m_p2p")):
            with torch.no_grad():
                F_t, f_t = self.features(x_target)
            F_s, f_s = self.features(x0_student)
            if self.weights["cfd"]:
                terms["cfd"] = cfd_loss(f_s, f_t, self.tau)
            if self.weights["is_p2p"]:
                terms["is_p2p"] = is_p2p_loss(F_s, F_t, temperature=self.is_p2p_temperature,
                                              group_size=self.is_p2p_group_size)
            if self.weights["m_p2p"]:
                terms["m_p2p"] = self.m_p2p(F_s.float(), F_t.float())
        total = sum(self.weights[k] * v for k, v in terms.items())
        return total, {k: float(v.detach()) for k, v in terms.items()}
