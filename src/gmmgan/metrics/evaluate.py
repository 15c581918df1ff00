"""All image metrics in one call, with the real-vs-real reference beside the model's values.

Classifier-based FID/KID/PRDC only compare within one feature network, so every report carries
the same metrics computed for held-out real images (real-test) against the real training images
(docs/protocols.md, section 'Image metrics'): that value is the best a generator can be expected to reach.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

import torch

from gmmgan.metrics._common import as_float_tensor
from gmmgan.metrics.classifier import FeatureClassifier
from gmmgan.metrics.fid import frechet_distance, kernel_distance
from gmmgan.metrics.prdc import prdc

__all__ = ["ImageMetrics", "ImageReport", "feature_metrics", "image_metrics"]

_FIELDS = ("fid", "kid_mean", "kid_std", "precision", "recall", "density", "coverage")


@dataclass(frozen=True)
class ImageMetrics:
    """FID, KID (mean and std over subsets), and PRDC of one feature set against the real one."""

    fid: float
    kid_mean: float
    kid_std: float
    precision: float
    recall: float
    density: float
    coverage: float
    n_real: int
    n_fake: int
    n_prdc: int  # rows of each set used for PRDC (a seeded random subset)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ImageReport:
    """``model``: generated vs real; ``reference``: real held-out vs real (or None)."""

    model: ImageMetrics
    reference: ImageMetrics | None
    feature_network: dict

    def as_dict(self) -> dict:
        return {
            "model": self.model.as_dict(),
            "reference": None if self.reference is None else self.reference.as_dict(),
            "feature_network": dict(self.feature_network),
        }

    def format(self) -> str:
        """A plain-text table: one row per metric, model and reference side by side."""
        lines = [f"{'metric':<10} {'model':>12} {'real-vs-real':>14}"]
        for name in _FIELDS:
            ref = "" if self.reference is None else f"{getattr(self.reference, name):14.4f}"
            lines.append(f"{name:<10} {getattr(self.model, name):12.4f} {ref}")
        lines.append(
            f"n: model {self.model.n_fake} fake vs {self.model.n_real} real"
            + ("" if self.reference is None else f"; reference {self.reference.n_fake} held-out vs {self.reference.n_real} real")
        )
        fn = self.feature_network
        if fn:
            lines.append(
                f"features: {fn.get('dataset', '?')} classifier, test accuracy {fn.get('test_accuracy', float('nan')):.4f}, "
                f"sha256 {str(fn.get('sha256', '?'))[:12]}"
            )
        return "\n".join(lines)


def _subset(x: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    if x.shape[0] <= n:
        return x
    g = torch.Generator().manual_seed(seed)
    return x[torch.randperm(x.shape[0], generator=g)[:n]]


def feature_metrics(
    real_features,
    fake_features,
    *,
    nearest_k: int = 5,
    prdc_samples: int = 10_000,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    seed: int = 0,
) -> ImageMetrics:
    """FID, KID and PRDC of ``fake_features`` against ``real_features``.

    Parameters
    ----------
    real_features, fake_features : array-like or Tensor of shape (n_real, F), (n_fake, F)
    nearest_k : int, default=5
        k of PRDC (Naeem et al., 2020).
    prdc_samples : int, default=10,000
        PRDC uses ``min(prdc_samples, n_real, n_fake)`` rows of each set (seeded random subsets):
        equal counts, 10,000 each at most, as Naeem et al. (for two samples of one distribution,
        coverage is then about 1 - 2**-k = 0.97). FID and KID use all rows.
    kid_subsets, kid_subset_size : int
        See :func:`gmmgan.metrics.fid.kernel_distance`.
    seed : int, default=0

    Returns
    -------
    ImageMetrics
    """
    r = as_float_tensor(real_features, "real_features", ndim=2)
    f = as_float_tensor(fake_features, "fake_features", ndim=2)
    fid = frechet_distance(r, f)  # validates widths and sizes
    kid_mean, kid_std = kernel_distance(r, f, subsets=kid_subsets, subset_size=kid_subset_size, seed=seed)
    # Equal sizes, as Naeem et al.: coverage and recall depend on the ratio of the two counts.
    n_prdc = min(int(prdc_samples), r.shape[0], f.shape[0])
    p = prdc(_subset(r, n_prdc, seed), _subset(f, n_prdc, seed + 1), nearest_k)
    return ImageMetrics(
        fid=fid, kid_mean=kid_mean, kid_std=kid_std, precision=p.precision, recall=p.recall,
        density=p.density, coverage=p.coverage, n_real=r.shape[0], n_fake=f.shape[0], n_prdc=n_prdc,
    )


def image_metrics(
    fake_images,
    real_images,
    classifier: FeatureClassifier,
    reference_images=None,
    *,
    batch_size: int = 1024,
    **kwargs,
) -> ImageReport:
    """FID, KID and PRDC of generated images, and the same for held-out real images.

    Parameters
    ----------
    fake_images : Tensor or array of shape (n_fake, 28, 28) or (n_fake, 1, 28, 28)
        Generated images, uint8 or float in [0, 1].
    real_images : same form, (n_real, ...)
        The real training images (the distribution the generator learns), e.g. MNIST train.
    classifier : FeatureClassifier
        ``load_classifier(dataset)`` for the dataset the images come from.
    reference_images : same form, optional
        Held-out real images, e.g. the test split; their metrics against ``real_images`` are
        reported as ``reference``. FID and KID depend on the sample size, so use as many
        generated images as reference images (10,000 for the MNIST test split); a warning is
        given otherwise.
    batch_size : int, default=1024
    **kwargs
        Passed to :func:`feature_metrics` (``nearest_k``, ``prdc_samples``, ``kid_subsets``,
        ``kid_subset_size``, ``seed``).

    Returns
    -------
    ImageReport
        ``report.format()`` gives a printable table.

    Examples
    --------
    >>> clf = load_classifier("mnist")                                   # doctest: +SKIP
    >>> train, _ = load_mnist(root, "train"); test, _ = load_mnist(root, "test")  # doctest: +SKIP
    >>> print(image_metrics(fake, train, clf, reference_images=test).format())    # doctest: +SKIP
    """
    if not isinstance(classifier, FeatureClassifier):
        raise ValueError(  # noqa: TRY004 - the CLI reports ValueErrors as bad input
            f"classifier must be a gmmgan FeatureClassifier (from load_classifier), got {type(classifier).__name__}."
        )
    real_f = classifier.features(real_images, batch_size).cpu()
    fake_f = classifier.features(fake_images, batch_size).cpu()
    model = feature_metrics(real_f, fake_f, **kwargs)
    reference = None
    if reference_images is not None:
        ref_f = classifier.features(reference_images, batch_size).cpu()
        if ref_f.shape[0] != fake_f.shape[0]:
            warnings.warn(
                f"{fake_f.shape[0]} generated vs {ref_f.shape[0]} reference images: FID and KID depend on the "
                "sample size, so the two are only comparable at equal counts.",
                stacklevel=2,
            )
        reference = feature_metrics(real_f, ref_f, **kwargs)
    info = getattr(classifier, "info", {}) or {}
    keep = {k: info[k] for k in ("dataset", "test_accuracy", "sha256") if k in info}
    return ImageReport(model=model, reference=reference, feature_network=keep)
