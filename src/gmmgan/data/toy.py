"""2-D (and general) Gaussian-mixture toy datasets: the ring and grid of docs/protocols.md, section '2-D mixtures'.

- Ring: 8 Gaussians, means (cos 2*pi*k/8, sin 2*pi*k/8) for k = 0..7, isotropic sigma = 0.01.
- Grid: 25 Gaussians, means {-4, -2, 0, 2, 4}^2, isotropic sigma = 0.05.

Both use equal weights. ``RING`` and ``GRID`` expose the true ``means`` and ``sigma`` so that metrics
(high-quality samples within 3 sigma, modes captured, reverse KL) use exactly the generating values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

__all__ = ["MixtureSpec", "RING", "GRID", "TOY_NAMES", "ring", "grid", "ring_means", "grid_means", "toy_spec"]


def _as_f64(x, name: str) -> torch.Tensor:
    try:
        t = torch.as_tensor(x, dtype=torch.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name} must be array-like of numbers: {e}") from e
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} contains NaN or inf.")
    return t.detach().cpu().clone()


class MixtureSpec:
    """A Gaussian mixture with known parameters, used to generate toy data.

    Parameters
    ----------
    means : array-like of shape (n_components, n_features)
    covariances : array-like of shape (n_components, n_features, n_features)
        Symmetric positive-definite matrices.
    weights : array-like of shape (n_components,), optional
        Non-negative, summing to 1 (tolerance 1e-6). Default: equal weights.
    sigma : float, optional
        The common isotropic standard deviation, if all covariances are sigma^2 * I. Set by
        :meth:`isotropic`; checked against ``covariances`` when given.

    Attributes
    ----------
    means, covariances, weights : float64 Tensors (on CPU)
    sigma : float or None
    """

    def __init__(self, means, covariances, weights=None, *, sigma: float | None = None):
        means = _as_f64(means, "means")
        if means.ndim != 2 or means.shape[0] < 1 or means.shape[1] < 1:
            raise ValueError(f"means must have shape (n_components, n_features), got {tuple(means.shape)}.")
        k, d = means.shape
        covariances = _as_f64(covariances, "covariances")
        if covariances.shape != (k, d, d):
            raise ValueError(
                f"covariances must have shape (n_components, n_features, n_features) = {(k, d, d)}, "
                f"got {tuple(covariances.shape)}."
            )
        if not torch.allclose(covariances, covariances.transpose(1, 2), rtol=1e-8, atol=1e-12):
            raise ValueError("covariances must be symmetric; symmetrise with (C + C^T) / 2.")
        chol, info = torch.linalg.cholesky_ex(covariances)
        if (info != 0).any():
            bad = torch.nonzero(info != 0).flatten().tolist()
            raise ValueError(f"covariances of components {bad} are not positive definite.")
        if weights is None:
            weights = torch.full((k,), 1.0 / k, dtype=torch.float64)
        weights = _as_f64(weights, "weights")
        if weights.shape != (k,):
            raise ValueError(f"weights must have shape (n_components,) = ({k},), got {tuple(weights.shape)}.")
        if (weights < 0).any() or abs(float(weights.sum()) - 1.0) > 1e-6:
            raise ValueError(f"weights must be non-negative and sum to 1, got sum {float(weights.sum()):.8g}.")
        if sigma is not None:
            sigma = float(sigma)
            iso = sigma**2 * torch.eye(d, dtype=torch.float64).expand(k, d, d)
            if not sigma > 0 or not torch.allclose(covariances, iso, rtol=1e-9, atol=0.0):
                raise ValueError(f"sigma={sigma} given but covariances are not all sigma^2 * I.")
        self.means, self.covariances, self.weights, self.sigma = means, covariances, weights, sigma
        self._chol = chol

    @classmethod
    def isotropic(cls, means, sigma: float, weights=None) -> "MixtureSpec":
        """Mixture whose components all have covariance ``sigma**2 * I``."""
        means = _as_f64(means, "means")
        if means.ndim != 2:
            raise ValueError(f"means must have shape (n_components, n_features), got {tuple(means.shape)}.")
        if not float(sigma) > 0:
            raise ValueError(f"sigma must be > 0, got {sigma}.")
        k, d = means.shape
        cov = float(sigma) ** 2 * torch.eye(d, dtype=torch.float64).expand(k, d, d).clone()
        return cls(means, cov, weights, sigma=float(sigma))

    @property
    def n_components(self) -> int:
        return self.means.shape[0]

    @property
    def n_features(self) -> int:
        return self.means.shape[1]

    def sample(
        self, n: int, seed: int | None = 0, *, dtype: torch.dtype = torch.float32, device=None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw ``n`` points; the same ``seed`` always gives the same points.

        Returns
        -------
        X : Tensor of shape (n, n_features), ``dtype``
        labels : int64 Tensor of shape (n,), the component of each point
        """
        if not isinstance(n, int) or n < 0:
            raise ValueError(f"n must be a non-negative int, got {n!r}.")
        g = torch.Generator()
        if seed is None:
            g.seed()  # fresh entropy for this generator only; the global RNG is left alone
        else:
            g.manual_seed(int(seed))
        # Sampled in float64 on CPU so the data do not depend on the device or dtype asked for.
        labels = torch.zeros(0, dtype=torch.long)
        if n:
            labels = torch.multinomial(self.weights, n, replacement=True, generator=g)
        eps = torch.randn(n, self.n_features, generator=g, dtype=torch.float64)
        x = self.means[labels] + torch.einsum("nij,nj->ni", self._chol[labels], eps)
        return x.to(device=device, dtype=dtype), labels.to(device)

    def to_distribution(self, device=None, dtype: torch.dtype = torch.float32):
        """The mixture as ``torch.distributions.MixtureSameFamily`` (for exact log-densities)."""
        D = torch.distributions
        kw = dict(device=device, dtype=dtype)
        return D.MixtureSameFamily(
            D.Categorical(probs=self.weights.to(**kw)),
            D.MultivariateNormal(self.means.to(**kw), scale_tril=self._chol.to(**kw)),
        )

    def __repr__(self) -> str:
        s = f", sigma={self.sigma}" if self.sigma is not None else ""
        return f"MixtureSpec(n_components={self.n_components}, n_features={self.n_features}{s})"


def ring_means(n_modes: int = 8, radius: float = 1.0) -> torch.Tensor:
    """Means (r cos 2 pi k/n, r sin 2 pi k/n), k = 0..n-1 (no repeated end point); float64 (n, 2)."""
    angles = torch.arange(n_modes, dtype=torch.float64) * (2 * math.pi / n_modes)
    return radius * torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)


def grid_means(values: Sequence[float] = (-4.0, -2.0, 0.0, 2.0, 4.0)) -> torch.Tensor:
    """Cartesian product values x values, row-major (x varies slowest); float64 (len^2, 2)."""
    v = torch.as_tensor(values, dtype=torch.float64)
    return torch.cartesian_prod(v, v)


RING = MixtureSpec.isotropic(ring_means(8, 1.0), sigma=0.01)
GRID = MixtureSpec.isotropic(grid_means(), sigma=0.05)
_BUILT_IN = {"ring": RING, "grid": GRID}
TOY_NAMES = tuple(_BUILT_IN)  # the data-set names of the built-in 2-D mixtures


def toy_spec(name) -> MixtureSpec | None:
    """The MixtureSpec of a built-in 2-D data set ('ring', 'grid'), else None.

    The one test of "is this the ring or the grid" (training, sampling, ``gmmgan fit``/``sample``/
    ``eval``): ``toy_spec(name) is not None``. Names are matched exactly, as data-set names are
    written in configs and on the command line.
    """
    return _BUILT_IN.get(name) if isinstance(name, str) else None


def ring(n: int = 100_000, seed: int = 0, **kw) -> torch.Tensor:
    """``n`` points from the 8-Gaussian ring (docs/protocols.md, section '2-D mixtures'); Tensor (n, 2) float32."""
    return RING.sample(n, seed, **kw)[0]


def grid(n: int = 100_000, seed: int = 0, **kw) -> torch.Tensor:
    """``n`` points from the 25-Gaussian grid (docs/protocols.md, section '2-D mixtures'); Tensor (n, 2) float32."""
    return GRID.sample(n, seed, **kw)[0]
