"""gmmgan: Gaussian mixture models and GANs that work together, in PyTorch."""

from gmmgan.mixture import GaussianMixture

__all__ = ["GaussianMixture"]
__version__ = "0.1.0"
