"""The methods and the loss terms of the suite: one entry each, read by everything that names them.

The round's objective takes a method's default weights and each term's loss from here; the
settings check, the workflow (config check, wildcard constraints, which rounds need the
classifier), the report (labels, order, colours, the claims' baselines) and the benchmarks derive
their lists from here. Adding a method is one `Method` entry; adding a loss term is one `Term`
entry plus its loss (a builder in `rdd/losses/terms.py`, named by `Term.build`).

Torch-free, so the workflow's config check can read it before the library is imported.
"""

from dataclasses import dataclass

from rdd.values import is_number


@dataclass(frozen=True)
class Term:
    """A loss term of a distillation round."""

    name: str
    label: str
    needs_classifier: bool  # computed on the frozen classifier's features
    build: str              # "module:function" returning the term's loss (see rdd/losses/terms.py)
    help: str
    settings: tuple = ()    # the distillation settings only it (and other terms that list them) reads


@dataclass(frozen=True)
class Method:
    """A row of the report: the DDIM teacher, a distillation method (it has `weights`), or the floor
    that real images set (`floor`: evaluated once per seed, with 0 steps, shown beside every column)."""

    name: str
    label: str
    colour: str
    help: str
    weights: dict = None    # default weight of every term in its rounds; None: not distilled
    baseline: bool = False  # the claims compare RDD with every baseline
    floor: bool = False     # not a model: real images of the held-out split at the same sample count


def _by_name(entries):
    return {entry.name: entry for entry in entries}


# Settings read through the classifier's features (every term on them), and its relational map.
_FEATURES = ("classifier_input",)
_MAP = ("feature_map",)
TERMS = _by_name([
    Term("pd", "PD", False, "rdd.losses.terms:pd",
         "the truncated-SNR pixel loss to the teacher's two-step x_target (progressive distillation)"),
    Term("cfd", "CFD", True, "rdd.losses.terms:cfd",
         "KL between the classifier's softened outputs on x_target and on the student's x0", (*_FEATURES, "tau")),
    Term("is_p2p", "IS-P2P", True, "rdd.losses.terms:is_p2p",
         "inter-sample pixel-to-pixel relations of the classifier's feature map",
         (*_FEATURES, *_MAP, "is_p2p_temperature", "is_p2p_group_size")),
    Term("m_p2p", "M-P2P", True, "rdd.losses.terms:m_p2p",
         "pixel relations to a memory of teacher features, through a trained projection head",
         (*_FEATURES, *_MAP, "memory_size", "num_anchors", "enqueue_per_step", "contrast_temperature",
          "kd_temperature", "m_p2p_enqueue", "m_p2p_wrap", "m_p2p_anchors", "m_p2p_head_bias", "m_p2p_head_lr",
          "m_p2p_sync_bn")),
    # RCFD's optional dataset-oriented terms (off in every method, as released): RCFD's alpha, beta
    # are the weights entropy = alpha * beta, diversity = alpha * (1 - beta).
    Term("entropy", "Entropy", True, "rdd.losses.terms:entropy",
         "RCFD's information entropy of the classifier's class probabilities for the student's x0", _FEATURES),
    Term("diversity", "Diversity", True, "rdd.losses.terms:diversity",
         "RCFD's diversity term, minus the entropy of the batch's mean class probabilities", _FEATURES),
])

# Loss weights as released: in RCFD and RDD the pixel PD loss is not added.
METHODS = _by_name([
    Method("ddim", "DDIM (teacher)", "#7f7f7f", "the base teacher sampled with fewer DDIM steps"),
    Method("pd", "PD", "#1f77b4", "progressive distillation (Salimans & Ho)",
           weights={"pd": 1.0, "cfd": 0.0, "is_p2p": 0.0, "m_p2p": 0.0}, baseline=True),
    Method("rcfd", "RCFD", "#ff7f0e", "progressive distillation with classifier-based feature distillation",
           weights={"pd": 0.0, "cfd": 1.0, "is_p2p": 0.0, "m_p2p": 0.0}, baseline=True),
    Method("rdd", "RDD", "#d62728", "relational diffusion distillation: CFD with IS-P2P and M-P2P",
           weights={"pd": 0.0, "cfd": 1.0, "is_p2p": 1.0, "m_p2p": 0.1}),
    Method("real", "Real images (held out)", "#2ca02c",
           "real images of the split the reference statistics leave out, as many as each model's samples: "
           "the FID and KID a perfect generator would get at this sample count", floor=True),
])
# Which split real images are drawn from: the one the reference statistics do not use.
HELD_OUT_SPLIT = {"train": "test", "test": "train"}


def method_names(distilled=False, models=False):
    """Every method in report order; only those with rounds (`distilled`), or only models (no floor)."""
    return [m.name for m in METHODS.values()
            if (not distilled or m.weights is not None) and not (models and m.floor)]


def floor_names():
    return [m.name for m in METHODS.values() if m.floor]


def baselines():
    return [m.name for m in METHODS.values() if m.baseline]


def label(name):
    """A method's display name (an unknown name as it is)."""
    return METHODS[name].label if name in METHODS else name


def wildcard(distilled=False):
    """A regular expression matching the method names (for Snakemake's wildcard constraints)."""
    return "|".join(method_names(distilled))


def feature_terms(weights):
    """The terms with a weight that read the classifier's features."""
    return [name for name, term in TERMS.items() if weights.get(name) and term.needs_classifier]


def needs_classifier(weights):
    """Whether a round with these term weights reads the classifier's features."""
    return bool(feature_terms(weights))


def terms_reading(setting):
    """The terms that read a distillation setting; () for one that every round reads."""
    return tuple(name for name, term in TERMS.items() if setting in term.settings)


def unread_settings(weights):
    """The term settings that no term with a weight reads: a round with these weights trains alike
    whatever their values."""
    read = {key for name, term in TERMS.items() if weights.get(name) for key in term.settings}
    return sorted({key for term in TERMS.values() for key in term.settings} - read)


def gives_every_weight(weights):
    """Whether a settings block's `weights` give a number for every term, and name no other."""
    return isinstance(weights, dict) and set(weights) == set(TERMS) and all(map(is_number, weights.values()))


def only_renames(method, weights):
    """Whether a settings block's `weights` give every term, differently from `method`'s preset: the
    method then picks none of the weights (`loss_weights`) and only names the run."""
    entry = METHODS.get(method) if isinstance(method, str) else None
    if entry is None or entry.weights is None or not gives_every_weight(weights):
        return False
    return any(float(weights[term]) != float(entry.weights.get(term, 0.0)) for term in TERMS)


def loss_weights(settings):
    """The method's preset weights (0 for a term it does not name) with the settings' explicit ones laid over them."""
    method = settings["method"]
    if method not in method_names(distilled=True):
        raise ValueError(f"unknown method '{method}' (allowed: {', '.join(method_names(distilled=True))})")
    weights = {term: float(METHODS[method].weights.get(term, 0.0)) for term in TERMS}
    for term, value in settings["weights"].items():
        if term not in weights:
            raise ValueError(f"unknown loss term '{term}' (allowed: {', '.join(weights)})")
        if value is not None:
            weights[term] = float(value)
    if not any(weights.values()):
        raise ValueError("every loss weight is zero: the student would not be trained")
    return weights
