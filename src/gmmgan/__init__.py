"""gmmgan: Gaussian mixture models and GANs that work together, in PyTorch.

Two layers: ``gmmgan.mixture`` is the Gaussian mixture library (EM on CPU or GPU, scikit-learn's
API); ``gmmgan.gan`` is the GAN application built on it. The estimators are exported here and
loaded on first use, so ``import gmmgan`` (and ``gmmgan --help``) does not wait for torch.
"""

from __future__ import annotations

from gmmgan._lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "GaussianMixture": "gmmgan.mixture",
    "BayesianGaussianMixture": "gmmgan.mixture",
    "select_n_components": "gmmgan.mixture",
}

__all__ = ["GaussianMixture", "BayesianGaussianMixture", "select_n_components"]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
