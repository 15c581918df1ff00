"""gmmgan: Gaussian mixture models and GANs that work together, in PyTorch."""

from gmmgan.mixture import BayesianGaussianMixture, GaussianMixture, select_n_components

__all__ = ["GaussianMixture", "BayesianGaussianMixture", "select_n_components"]
__version__ = "0.1.0"
