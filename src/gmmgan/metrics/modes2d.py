"""Mode coverage of 2-D mixtures: high-quality samples, modes captured, reverse KL.

The protocol of VEEGAN (Srivastava et al., 2017, section 5.1) and PacGAN (Lin et al., 2018,
section 5.1, Table 1), as fixed in docs/protocols.md, section '2-D mixtures': 2,500 generated samples, a sample is
high quality (HQ) if its Euclidean distance to the nearest true mean is below 3 sigma, a mode is
captured if it is the nearest mean of at least one HQ sample, and the reverse KL is
KL(p_hat || uniform) over the nearest-mode histogram.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from gmmgan.metrics._common import as_float_tensor, kl_floor, kl_to_uniform

__all__ = ["ModeCoverage", "mode_coverage"]


@dataclass(frozen=True)
class ModeCoverage:
    """Result of :func:`mode_coverage`.

    Attributes
    ----------
    modes_captured : int
        Number of true means that are the nearest mean of at least one HQ sample.
    n_modes : int
        Number of true means K.
    hq_fraction : float
        Fraction of samples within ``threshold * sigma`` of their nearest mean, in [0, 1].
    reverse_kl : float
        KL(p_hat || uniform over K) in nats, p_hat the nearest-mode histogram of *all* samples.
    kl_floor : float
        (K - 1) / (2 N): the expected ``reverse_kl`` of a perfect sampler with the same N.
    n_samples : int
        Number of samples N.
    counts : list of int, length K
        Nearest-mode histogram of all samples (what ``reverse_kl`` is computed from).
    hq_counts : list of int, length K
        Nearest-mode histogram of the HQ samples only (what ``modes_captured`` counts).
    """

    modes_captured: int
    n_modes: int
    hq_fraction: float
    reverse_kl: float
    kl_floor: float
    n_samples: int
    counts: list[int]
    hq_counts: list[int]

    def as_dict(self) -> dict:
        """Plain-Python dict (JSON-serialisable)."""
        return asdict(self)


def mode_coverage(samples, means, sigma: float | None = None, *, threshold: float = 3.0) -> ModeCoverage:
    """Modes captured, high-quality fraction and reverse KL of samples from a 2-D mixture.

    Parameters
    ----------
    samples : array-like or Tensor of shape (n_samples, n_features)
        Generated points (the protocol uses 2,500 of them). Any device; computed in float64 on CPU.
    means : array-like or Tensor of shape (n_modes, n_features), or a spec
        The true component means. A :class:`gmmgan.data.toy.MixtureSpec` (e.g. ``RING``, ``GRID``)
        may be passed instead, in which case its ``.means`` and ``.sigma`` are used.
    sigma : float, optional
        The true isotropic standard deviation (ring 0.01, grid 0.05). Required unless ``means`` is
        a spec with a ``sigma``.
    threshold : float, default=3.0
        A sample is high quality if its distance to the nearest mean is below ``threshold * sigma``
        (strictly).

    Returns
    -------
    ModeCoverage

    Notes
    -----
    Which samples form the KL histogram: every sample is assigned to its nearest mean (Euclidean)
    and all N samples are counted, HQ or not. This is the reading under which a perfect sampler
    reproduces the floors quoted in docs/protocols.md, section 'KL floors': a 20,000-repeat simulation of exact samples
    at N = 2,500 gives 0.00141 (ring) and 0.00481 (grid) with all samples, versus 0.00143 and 0.00486
    with HQ samples only, and the quoted floors are 0.0014 and 0.0048, i.e. (K - 1) / (2 N).
    It also makes the KL well defined when no sample is HQ. ``modes_captured`` counts HQ samples
    only, as in VEEGAN/PacGAN. (PacGAN's released 2-D code builds one histogram from HQ samples for
    both; ``hq_counts`` is returned so that variant can be recomputed with
    :func:`gmmgan.metrics.kl_to_uniform`.)

    References
    ----------
    Srivastava et al., "VEEGAN: Reducing mode collapse in GANs using implicit variational
    learning", NeurIPS 2017. Lin et al., "PacGAN: The power of two samples in generative
    adversarial networks", NeurIPS 2018.

    Examples
    --------
    >>> from gmmgan.data.toy import RING
    >>> x, _ = RING.sample(2500, seed=0)
    >>> r = mode_coverage(x, RING)
    >>> r.modes_captured, r.n_modes
    (8, 8)
    """
    if sigma is None:
        if hasattr(means, "means") and getattr(means, "sigma", None) is not None:
            means, sigma = means.means, means.sigma
        else:
            raise ValueError(
                "sigma is required: pass the true isotropic standard deviation (ring 0.01, grid 0.05), "
                "or pass a MixtureSpec such as gmmgan.data.toy.RING as `means`."
            )
    x = as_float_tensor(samples, "samples", ndim=2)
    mu = as_float_tensor(means, "means", ndim=2)
    if x.shape[1] != mu.shape[1]:
        raise ValueError(
            f"samples have {x.shape[1]} features but means have {mu.shape[1]}; both must be points "
            f"in the same space (n_samples, {mu.shape[1]})."
        )
    sigma = float(sigma)
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma}.")
    if not float(threshold) > 0:
        raise ValueError(f"threshold must be > 0, got {threshold}.")

    n, k = x.shape[0], mu.shape[0]
    dist = torch.cdist(x, mu)  # (n, k), float64
    dmin, nearest = dist.min(dim=1)
    hq = dmin < threshold * sigma
    counts = torch.bincount(nearest, minlength=k)
    hq_counts = torch.bincount(nearest[hq], minlength=k)
    return ModeCoverage(
        modes_captured=int((hq_counts > 0).sum()),
        n_modes=k,
        hq_fraction=float(hq.double().mean()),
        reverse_kl=kl_to_uniform(counts),
        kl_floor=kl_floor(n, k),
        n_samples=n,
        counts=counts.tolist(),
        hq_counts=hq_counts.tolist(),
    )
