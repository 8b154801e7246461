"""FID, KID and IS of generated images against reference statistics.

The mathematics is torch-fidelity's own (metric_fid, metric_kid, metric_isc);
this module feeds it and returns the values with the settings that produced
them (rdd.records.metric turns that into the metric record). A metric that
cannot be computed is None with its reason, never a number.
"""

import numpy as np
import torch
from torch_fidelity.defaults import DEFAULTS
from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_statistics_to_metric
from torch_fidelity.metric_isc import KEY_METRIC_ISC_MEAN, KEY_METRIC_ISC_STD, isc_features_to_metric
from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD, kid_features_to_metric

from rdd.metrics import bootstrap, kid_bootstrap
from rdd.metrics.features import default_device, extract_features
from rdd.metrics.inception import DEFAULT_INCEPTION_INPUT, LOGITS
from rdd.metrics.reference import NO_FEATURES_REASON, features_to_statistics
from rdd.settings import DEFAULT_ISC_SPLIT_ORDER, ISC_SPLIT_ORDERS, check_choice

KID_MAX_SUBSET_SIZE = DEFAULTS["kid_subset_size"]  # 1000
KID_SUBSETS = DEFAULTS["kid_subsets"]  # 100
ISC_SPLITS = DEFAULTS["isc_splits"]  # 10
RNG_SEED = DEFAULTS["rng_seed"]  # torch-fidelity's seed for KID subsets and the IS shuffle
KID_KERNEL = {k: DEFAULTS[k] for k in ("kid_kernel", "kid_kernel_poly_degree", "kid_kernel_poly_gamma",
                                       "kid_kernel_poly_coef0")}  # gamma None means 1 / feature dimension
IMPLEMENTATION = ("torch_fidelity.metric_fid.fid_statistics_to_metric, metric_kid.kid_features_to_metric, "
                  "metric_isc.isc_features_to_metric")


def _checked_reference(ref_stats, handle):
    """The reference arrays, after checking they were made with `handle`'s weights and input (before any
    expensive work)."""
    if ref_stats.record.get("source") == "computed":
        made_with = ref_stats.record["extractor"]
        if made_with["sha256"] != handle.sha256:
            raise ValueError(
                f"reference statistics {ref_stats.path} were computed with weights sha256 "
                f"{made_with['sha256']}, not those of {handle.path} ({handle.sha256})"
            )
        made_input = made_with.get("inception_input", DEFAULT_INCEPTION_INPUT)
        if made_input != handle.inception_input:
            raise ValueError(f"reference statistics {ref_stats.path} were computed with {made_input} Inception "
                             f"input, not {handle.inception_input}: compute them with the same input")
    return ref_stats.arrays()


def metrics_from_features(features, logits, ref_stats, handle, **kwargs):
    """FID, KID and IS from already extracted generated-image features (and logits or None);
    kwargs: KID and IS settings, the bootstrap's seed, and the device of KID's interval."""
    ref = _checked_reference(ref_stats, handle)
    return _score(features, logits, ref, ref_stats, handle, **kwargs)


def compute_metrics(gen_images, ref_stats, handle, batch_size=64, device=None, **kwargs):
    """Features of `gen_images` (uint8 NHWC array or batches), scored; kwargs go to metrics_from_features."""
    ref = _checked_reference(ref_stats, handle)
    features, logits = extract_features(gen_images, handle, batch_size=batch_size, device=device)
    return _score(features, logits, ref, ref_stats, handle, device=device, **kwargs)


def _score(features, logits, ref, ref_stats, handle, kid_subset_size=KID_MAX_SUBSET_SIZE,
           kid_subsets=KID_SUBSETS, isc_splits=ISC_SPLITS, isc_split_order=DEFAULT_ISC_SPLIT_ORDER, rng_seed=RNG_SEED,
           bootstrap_seed=0, device=None):
    check_choice("isc_split_order", isc_split_order, ISC_SPLIT_ORDERS)
    if len(features) < 2:
        raise ValueError(f"FID and KID need at least 2 generated images, got {len(features)}")
    if ref["mu"].shape[0] != features.shape[1]:
        raise ValueError(f"{ref_stats.path} has {ref['mu'].shape[0]}-d statistics, features are {features.shape[1]}-d")
    device = device or default_device()  # of the intervals (FID: in its d x d form)
    values, unavailable, settings = {}, {}, {}

    fid = fid_statistics_to_metric(features_to_statistics(features), ref, verbose=False)
    values["fid"] = fid[KEY_METRIC_FID]
    # The sampling interval: the generated images resampled, the reference held fixed.
    replicates = bootstrap.fid_replicates(features, ref["mu"], ref["sigma"], seed=bootstrap_seed, device=device)
    (values["fid_ci95_low"], values["fid_ci95_high"]), settings["fid_interval"] = _interval(
        "fid", values["fid"], replicates, bootstrap_seed, "FID (reference fixed)",
        form="N x N eigenproblem" if len(features) <= bootstrap.MAX_GRAM_IMAGES else "d x d eigenproblem")

    if ref["features"] is None:
        values["kid_mean"] = values["kid_std"] = values["kid_ci95_low"] = values["kid_ci95_high"] = None
        unavailable["kid"] = NO_FEATURES_REASON.format(path=ref_stats.path)
    else:
        # torch-fidelity refuses a subset larger than either set: shrink it for small N.
        subset_size = min(kid_subset_size, len(features), len(ref["features"]))
        kid = kid_features_to_metric(
            torch.from_numpy(features), torch.from_numpy(ref["features"]), kid_subsets=kid_subsets,
            kid_subset_size=subset_size, rng_seed=rng_seed, verbose=False,
        )
        values["kid_mean"], values["kid_std"] = kid[KEY_METRIC_KID_MEAN], kid[KEY_METRIC_KID_STD]
        settings["kid"] = {"subset_size": subset_size, "subset_size_requested": kid_subset_size,
                           "subsets": kid_subsets, "rng_seed": rng_seed, **KID_KERNEL}
        # Its sampling interval as FID's: the generated images resampled (the same draws), reference fixed.
        # The replicates leave out KID's reference-only term, a constant that every use of them centres away.
        kid_reps = kid_bootstrap.kid_replicates(features, ref["features"], seed=bootstrap_seed, device=device)
        (values["kid_ci95_low"], values["kid_ci95_high"]), settings["kid_interval"] = _interval(
            "kid", values["kid_mean"], kid_reps, bootstrap_seed,
            "the unbiased MMD^2 against all reference features (reference fixed)")

    if logits is None:
        values["isc_mean"] = values["isc_std"] = values["isc_ci95_low"] = values["isc_ci95_high"] = None
        unavailable["isc"] = handle.logits_unavailable_reason or "no logits were given"
    else:
        splits = min(isc_splits, len(logits))
        shuffle = isc_split_order == "shuffled"
        isc = isc_features_to_metric(torch.from_numpy(logits), splits=splits, shuffle=shuffle, rng_seed=rng_seed)
        values["isc_mean"], values["isc_std"] = isc[KEY_METRIC_ISC_MEAN], isc[KEY_METRIC_ISC_STD]
        settings["isc"] = {"splits": splits, "split_order": isc_split_order, "rng_seed": rng_seed if shuffle else None,
                           "layer": LOGITS}
        # Its sampling interval as FID's (the std above is the spread over splits of these images).
        is_reps = isc_replicates(logits, splits, rng_seed, seed=bootstrap_seed, device=device, shuffle=shuffle)
        (values["isc_ci95_low"], values["isc_ci95_high"]), settings["is_interval"] = _interval(
            "is", values["isc_mean"], is_reps, bootstrap_seed,
            "torch-fidelity's IS (the estimate's splits and their order)")

    # values: fid, kid_mean/std, isc_mean/std and their intervals; unavailable: metric -> reason.
    return {"values": values, "unavailable": unavailable, "settings": settings,
            "num_generated": len(features), "num_reference": ref_stats.record.get("num_images"),
            "implementation": IMPLEMENTATION}


def _interval(metric, estimate, replicates, seed, of_what, **details):
    """The 95% interval of `estimate` from its bootstrap replicates, and the settings that record it
    (with every replicate: replicate r of every model resamples the same sample seeds, so differences
    pair)."""
    return bootstrap.interval(estimate, replicates), {
        "method": f"bootstrap over the generated images of {of_what}, "
                  f"{bootstrap.interval_method(len(replicates))}",
        "level": bootstrap.LEVEL, "replicates": len(replicates), "seed": seed, **details,
        f"{metric}_replicates": replicates.tolist()}


def isc_replicates(logits, splits, rng_seed, replicates=bootstrap.REPLICATES, seed=0, device="cpu", shuffle=True):
    """torch-fidelity's IS of bootstrap resamples of the images' logits (FID's draws for the same seed),
    split as the estimate is. Measured on 2 CPU cores: 21 to 23 s for 200 replicates of 5,000 images
    (linear in N)."""
    logits = torch.from_numpy(np.asarray(logits)).to(device)
    means = []
    for rep in range(replicates):
        idx = torch.from_numpy(bootstrap.resample_indices(len(logits), rep, seed)).to(device)
        means.append(isc_features_to_metric(logits[idx], splits=splits, shuffle=shuffle, rng_seed=rng_seed)[
            KEY_METRIC_ISC_MEAN])
    return np.array(means)
