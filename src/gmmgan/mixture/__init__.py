"""Gaussian mixture models in PyTorch with scikit-learn's API."""

from gmmgan.mixture._estimator import ConvergenceWarning, NotFittedError
from gmmgan.mixture.bayesian_mixture import BayesianGaussianMixture
from gmmgan.mixture.gaussian_mixture import GaussianMixture
from gmmgan.mixture.model_selection import select_n_components

__all__ = [
    "GaussianMixture",
    "BayesianGaussianMixture",
    "select_n_components",
    "ConvergenceWarning",
    "NotFittedError",
]
