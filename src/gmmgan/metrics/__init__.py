"""Evaluation metrics (DESIGN.md sections 5-6).

- :func:`mode_coverage`: 2-D mixtures, high-quality fraction, modes captured, reverse KL.
- :class:`FeatureClassifier`, :func:`train_classifier`, :func:`load_classifier`: the feature network.
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
from gmmgan.metrics.modes2d import ModeCoverage, mode_coverage

__all__ = [
    "ModeCoverage",
    "mode_coverage",
    "kl_floor",
    "kl_to_uniform",
    "ClassifierConfig",
    "FeatureClassifier",
    "train_classifier",
    "load_classifier",
    "default_cache_dir",
    "prepare_images",
]
