"""Gaussian mixture models in PyTorch with scikit-learn's API."""

from gmmgan.mixture._base import ConvergenceWarning, NotFittedError
from gmmgan.mixture.gaussian_mixture import GaussianMixture

__all__ = ["GaussianMixture", "ConvergenceWarning", "NotFittedError"]
