"""FID and KID in the feature space of gmmgan's classifier, computed by torchmetrics.

FID (Heusel et al., 2017) and KID (Binkowski et al., 2018) are usually computed on Inception-v3
pool features; for 28x28 grey images gmmgan uses its own classifier's 128-unit penultimate layer
instead (docs/protocols.md, section 'Image metrics'), through torchmetrics' ``feature=<nn.Module>`` hook. Such FIDs are
only comparable within one feature network: always report the real-train vs real-test value
beside the model's (see :func:`gmmgan.metrics.evaluate.image_metrics`).

Two ways in:

- from images, streaming (e.g. inside a training loop): :func:`fid_metric` / :func:`kid_metric`
  return torchmetrics objects whose ``update(images, real=...)`` takes uint8 or [0, 1] images;
- from features already computed (cheaper when several metrics share them):
  :func:`frechet_distance` and :func:`kernel_distance`, which run the same torchmetrics code.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import torch
from torch import nn

from gmmgan.metrics._common import as_float_tensor
from gmmgan.metrics.classifier import FeatureClassifier

if TYPE_CHECKING:  # torchmetrics costs ~3 s of CPU to import: only pay for it when a metric is built
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.kid import KernelInceptionDistance

__all__ = ["ClassifierFeatures", "fid_metric", "frechet_distance", "kernel_distance", "kid_metric"]


class ClassifierFeatures(nn.Module):
    """A :class:`FeatureClassifier` as a torchmetrics feature extractor.

    ``forward`` accepts what torchmetrics may pass it: float images in [0, 1] (torchmetrics >= 1.3
    hands a custom module the images untouched) or uint8 in [0, 255] (older versions convert
    to uint8 when ``normalize=True``), of shape (N, 1, 28, 28) or (N, 28, 28), and returns the
    classifier's penultimate features, float32 (N, ``num_features``). The classifier always runs
    in eval mode, whatever mode the metric is put in.
    """

    def __init__(self, classifier: FeatureClassifier):
        super().__init__()
        if not isinstance(classifier, FeatureClassifier):
            raise ValueError(  # noqa: TRY004 - the CLI reports ValueErrors as bad input
                f"classifier must be a gmmgan FeatureClassifier (from load_classifier), got {type(classifier).__name__}."
            )
        self.classifier = classifier
        self.num_features = classifier.num_features  # so torchmetrics need not run a dummy image

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier.features(images)


class _Passthrough(nn.Module):
    """Feature "extractor" for inputs that already are features (N, num_features)."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def fid_metric(classifier: FeatureClassifier, **kwargs) -> FrechetInceptionDistance:
    """A torchmetrics ``FrechetInceptionDistance`` on the classifier's features.

    Feed it with ``m.update(images, real=True/False)`` (images uint8 or float in [0, 1], shape
    (N, 1, 28, 28) or (N, 28, 28)) and read ``m.compute()``. ``kwargs`` go to torchmetrics
    (e.g. ``reset_real_features=False`` to keep the real statistics across resets).
    """
    from torchmetrics.image.fid import FrechetInceptionDistance

    kwargs.setdefault("normalize", True)
    return FrechetInceptionDistance(feature=ClassifierFeatures(classifier), **kwargs)


def kid_metric(classifier: FeatureClassifier, **kwargs) -> KernelInceptionDistance:
    """A torchmetrics ``KernelInceptionDistance`` on the classifier's features (see :func:`fid_metric`).

    torchmetrics' defaults apply (100 subsets of 1,000 samples, cubic polynomial kernel); its
    ``compute`` draws subsets from torch's global RNG, so seed it for a reproducible value.
    """
    from torchmetrics.image.kid import KernelInceptionDistance

    kwargs.setdefault("normalize", True)
    with warnings.catch_warnings():  # its memory warning is about Inception's 2048-D features; ours are 128-D
        warnings.filterwarnings("ignore", message=".*save all extracted features.*")
        return KernelInceptionDistance(feature=ClassifierFeatures(classifier), **kwargs)


def _check_pair(real, fake, min_samples: int) -> tuple[torch.Tensor, torch.Tensor]:
    r = as_float_tensor(real, "real_features", ndim=2)
    f = as_float_tensor(fake, "fake_features", ndim=2)
    if r.shape[1] != f.shape[1]:
        raise ValueError(
            f"real_features have {r.shape[1]} columns but fake_features have {f.shape[1]}: both must come "
            "from the same feature network (the same classifier's features())."
        )
    for name, t in (("real_features", r), ("fake_features", f)):
        if t.shape[0] < min_samples:
            raise ValueError(f"{name} has {t.shape[0]} rows; at least {min_samples} are needed.")
    return r, f


def frechet_distance(real_features, fake_features) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (FID on given features).

    .. math:: \\|\\mu_r - \\mu_f\\|^2 + \\mathrm{tr}(\\Sigma_r + \\Sigma_f - 2 (\\Sigma_r \\Sigma_f)^{1/2})

    with unbiased sample covariances, computed in float64 by torchmetrics'
    ``FrechetInceptionDistance`` (whose square-root trace uses the eigenvalues of
    :math:`\\Sigma_r \\Sigma_f`).

    Parameters
    ----------
    real_features, fake_features : array-like or Tensor of shape (n_real, F) and (n_fake, F)
        At least 2 rows each. FID is biased upward at small n: compare values only at equal n
        (10,000 is customary for 28x28 datasets).

    Returns
    -------
    float

    References
    ----------
    Heusel et al., "GANs trained by a two time-scale update rule converge to a local Nash
    equilibrium", NeurIPS 2017.
    """
    from torchmetrics.image.fid import FrechetInceptionDistance

    r, f = _check_pair(real_features, fake_features, 2)
    m = FrechetInceptionDistance(feature=_Passthrough(r.shape[1]))
    m.update(r, real=True)
    m.update(f, real=False)
    return float(m.compute())


def kernel_distance(
    real_features,
    fake_features,
    *,
    subsets: int = 100,
    subset_size: int = 1000,
    degree: int = 3,
    gamma: float | None = None,
    coef: float = 1.0,
    seed: int = 0,
) -> tuple[float, float]:
    """Kernel Inception Distance on given features: unbiased MMD^2 with a polynomial kernel.

    k(x, y) = (gamma x.y + coef)^degree, gamma = 1 / F by default (Binkowski et al.), averaged
    over ``subsets`` random subsets of ``subset_size`` rows of each set, by torchmetrics'
    ``KernelInceptionDistance``.

    Parameters
    ----------
    real_features, fake_features : array-like or Tensor of shape (n_real, F) and (n_fake, F)
    subsets : int, default=100
    subset_size : int, default=1000
        Lowered to ``min(n_real, n_fake)`` when a set is smaller.
    degree, gamma, coef : kernel parameters, torchmetrics' defaults
    seed : int, default=0
        Seeds the subset draws (the global torch RNG is left as it was).

    Returns
    -------
    kid_mean, kid_std : float
        Mean and standard deviation over subsets (the std is not a standard error).

    References
    ----------
    Binkowski et al., "Demystifying MMD GANs", ICLR 2018.
    """
    from torchmetrics.image.kid import KernelInceptionDistance

    r, f = _check_pair(real_features, fake_features, 2)
    size = min(int(subset_size), r.shape[0], f.shape[0])
    kw = {"subsets": int(subsets), "subset_size": size, "degree": int(degree), "coef": float(coef)}
    if gamma is not None:
        kw["gamma"] = float(gamma)
    with warnings.catch_warnings():  # "will save all extracted features": we hand it exactly those
        warnings.filterwarnings("ignore", message=".*save all extracted features.*")
        m = KernelInceptionDistance(feature=_Passthrough(r.shape[1]), **kw)
    m.update(r, real=True)
    m.update(f, real=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mean, std = m.compute()
    return float(mean), float(std)
