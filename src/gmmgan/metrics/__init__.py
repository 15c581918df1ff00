"""Evaluation metrics (DESIGN.md sections 5-6).

- :func:`mode_coverage`: 2-D mixtures, high-quality fraction, modes captured, reverse KL.
- :class:`FeatureClassifier`, :func:`train_classifier`, :func:`load_classifier`: the feature network.
- :func:`stacked_mnist_modes`: Stacked-MNIST modes (digit triples) and reverse KL.
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
from gmmgan.metrics.stacked import StackedModes, classify_channels, modes_from_digits, stacked_mnist_modes

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
    "StackedModes",
    "stacked_mnist_modes",
    "classify_channels",
    "modes_from_digits",
]
