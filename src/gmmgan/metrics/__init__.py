"""Evaluation metrics (docs/protocols.md, sections '2-D mixtures', 'Stacked MNIST', 'Image metrics').

- :func:`mode_coverage`: 2-D mixtures, high-quality fraction, modes captured, reverse KL.
- :class:`FeatureClassifier`, :func:`train_classifier`, :func:`load_classifier`: the feature network.
- :func:`stacked_mnist_modes`: Stacked-MNIST modes (digit triples) and reverse KL.
- :func:`frechet_distance`, :func:`kernel_distance`, :func:`prdc` on features; :func:`fid_metric`,
  :func:`kid_metric` (torchmetrics, from images); :func:`image_metrics`: all of them, with the
  real-train vs real-test reference.
- :func:`clustering_scores`, :func:`component_clustering`: Hungarian accuracy and NMI.
"""

from gmmgan.metrics._common import kl_floor, kl_to_uniform
from gmmgan.metrics.classifier import (
    ClassifierConfig,
    FeatureClassifier,
    default_cache_dir,
    load_classifier,
    prepare_images,
    train_classifier,
)
from gmmgan.metrics.clustering import (
    ClusteringScores,
    clustering_accuracy,
    clustering_scores,
    component_clustering,
    normalized_mutual_info,
)
from gmmgan.metrics.evaluate import (
    ImageMetrics,
    ImageReport,
    feature_metrics,
    image_metrics,
)
from gmmgan.metrics.fid import (
    ClassifierFeatures,
    fid_metric,
    frechet_distance,
    kernel_distance,
    kid_metric,
)
from gmmgan.metrics.modes2d import ModeCoverage, mode_coverage
from gmmgan.metrics.prdc import PRDC, prdc
from gmmgan.metrics.stacked import (
    StackedModes,
    classify_channels,
    modes_from_digits,
    stacked_mnist_modes,
)

__all__ = [
    "PRDC",
    "ClassifierConfig",
    "ClassifierFeatures",
    "ClusteringScores",
    "FeatureClassifier",
    "ImageMetrics",
    "ImageReport",
    "ModeCoverage",
    "StackedModes",
    "classify_channels",
    "clustering_accuracy",
    "clustering_scores",
    "component_clustering",
    "default_cache_dir",
    "feature_metrics",
    "fid_metric",
    "frechet_distance",
    "image_metrics",
    "kernel_distance",
    "kid_metric",
    "kl_floor",
    "kl_to_uniform",
    "load_classifier",
    "mode_coverage",
    "modes_from_digits",
    "normalized_mutual_info",
    "prdc",
    "prepare_images",
    "stacked_mnist_modes",
    "train_classifier",
]
