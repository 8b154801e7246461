"""One distillation round T -> T/2: PD, RCFD or RDD, every loss term weighted by settings.

The student sees `z_t` at an even teacher time t = 2k and predicts x0; the
teacher's two DDIM steps give `x_target`. PD compares them in pixel space;
RCFD and RDD compare the frozen classifier's features of the two.
"""

import torch.nn.functional as F
from torch import nn

from rdd import dist, methods
from rdd.data.normalization import normalize_input
from rdd.diffusion import draw_times_and_noise, q_sample
from rdd.losses.pd import pd_target
from rdd.losses.terms import RoundBatch, TermContext, build_term
from rdd.train.batches import process_slice


class DistillObjective(nn.Module):
    """Computes one round's loss for a batch: the weighted sum of the terms (rdd.methods.TERMS) whose
    weight is not zero. `terms` holds each term's module (M-P2P's memory and projection head)."""

    def __init__(self, teacher, grid, settings, classifier=None, feature_channels=None,
                 gather=lambda v: v):
        super().__init__()
        self.teacher, self.grid, self.classifier = teacher, grid, classifier
        self.weights = methods.loss_weights(settings)
        self.noise_group_size, self.batch_size = settings["train"]["noise_group_size"], settings["train"]["batch_size"]
        self.post_relu = settings["feature_map"] == "post_relu"
        self.as_trained = settings["classifier_input"] == "as_trained"
        if classifier is None and (needing := methods.feature_terms(self.weights)):
            raise ValueError(f"the loss terms {', '.join(needing)} need a classifier")
        context = TermContext(feature_channels, gather)
        self.terms = nn.ModuleDict({name: build_term(methods.TERMS[name], settings, context)
                                    for name, weight in self.weights.items() if weight})

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

    def forward(self, student, x, y=None, shared_generator=None):
        """Return (total loss, {term: value}) for clean images `x`; `shared_generator` draws what every
        process must draw alike (None: the global generator)."""
        first_position = process_slice(self.batch_size, dist.rank(), dist.world_size())[0]
        k, eps = draw_times_and_noise(x, 1, self.grid.T // 2, self.noise_group_size, shared_generator,
                                      first_position)
        t = 2 * k
        z_t = q_sample(self.grid, x, t, eps)
        x_target, eps_target, _ = pd_target(self.teacher, self.grid, z_t, t, y)
        # The student's time k on its own grid is the same network time as t here.
        x0_student = student(z_t, self.grid.net_time(t, x), y)
        batch = RoundBatch(self.grid, z_t, t, x0_student, x_target, eps_target, self.features,
                           self.classifier.logits if self.classifier is not None else None, shared_generator)
        terms = {name: term(batch) for name, term in self.terms.items()}
        total = sum(self.weights[k] * v for k, v in terms.items())
        return total, {k: float(v.detach()) for k, v in terms.items()}
