"""gmmgan: Gaussian mixture models and GANs that work together, in PyTorch.

Two layers: ``gmmgan.mixture`` is the Gaussian mixture library (EM on CPU or GPU, scikit-learn's
API); ``gmmgan.gan`` is the GAN application built on it. The estimators are exported here and
loaded on first use, so ``import gmmgan`` (and ``gmmgan --help``) does not wait for torch.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "GaussianMixture": "gmmgan.mixture",
    "BayesianGaussianMixture": "gmmgan.mixture",
    "select_n_components": "gmmgan.mixture",
}

__all__ = ["GaussianMixture", "BayesianGaussianMixture", "select_n_components"]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
