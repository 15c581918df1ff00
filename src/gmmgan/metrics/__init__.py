"""Evaluation metrics: 2-D mode coverage, Stacked-MNIST modes, the feature classifier, FID/KID/PRDC,
clustering accuracy/NMI (DESIGN.md section 6)."""

from gmmgan.metrics._common import kl_floor, kl_to_uniform
from gmmgan.metrics.modes2d import ModeCoverage, mode_coverage

__all__ = ["ModeCoverage", "mode_coverage", "kl_floor", "kl_to_uniform"]
