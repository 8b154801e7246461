"""RCFD's optional dataset-oriented terms on the classifier's predictions for the student's x0.

The RCFD paper adds to CFD the information entropy of each sample's class
probabilities (low: the classifier is confident about every generated image)
and a diversity term, the negative entropy of the batch's mean class
probabilities (low: the batch covers the classes evenly). The released code
weighs them as `alpha * (beta * entropy + (1 - beta) * diversity)`, with
alpha 0 in the released DenseNet-201 setting; here each is a loss term of its
own, so RCFD's (alpha, beta) are the weights (alpha*beta, alpha*(1-beta)).
Under data parallelism the diversity term's batch is each process's own (no gather).
"""

import torch
import torch.nn.functional as F


def _check_logits(logits, name):
    if logits.ndim != 2:
        raise ValueError(f"{name} expects [B, classes] logits, got {tuple(logits.shape)}")


def prediction_entropy(logits):
    """Batch mean of H(softmax(logits)) per sample, in nats."""
    _check_logits(logits, "prediction_entropy")
    log_p = F.log_softmax(logits, dim=1)
    return -(log_p.exp() * log_p).sum(dim=1).mean()


def class_diversity_loss(logits):
    """sum_c pbar_c log pbar_c = -H(pbar), pbar the batch mean of softmax(logits); in [-log C, 0].

    xlogy gives 0 for a class whose mean probability underflows to 0, where the released p * log(p)
    would give NaN; the values agree wherever that is finite.
    """
    _check_logits(logits, "class_diversity_loss")
    p_mean = F.softmax(logits, dim=1).mean(dim=0)
    return torch.special.xlogy(p_mean, p_mean).sum()
