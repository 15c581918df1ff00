"""Precision, recall, density and coverage (PRDC) of generated features against real features.

Naeem, Oh, Uh, Choi and Yoo, "Reliable fidelity and diversity metrics for generative models",
ICML 2020 (density and coverage), with precision and recall of Kynkäänniemi et al., NeurIPS 2019,
in the k-nearest-neighbour form of Naeem et al.'s reference code (``prdc``, k = 5): around each
real point a ball whose radius is the distance to its k-th nearest real neighbour (itself
excluded), and likewise around each fake point for recall, with strict inequalities.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from gmmgan.metrics._common import as_float_tensor

__all__ = ["PRDC", "knn_radii", "prdc"]


@dataclass(frozen=True)
class PRDC:
    """Result of :func:`prdc`. Precision, recall and coverage are in [0, 1]; density is >= 0
    (about 1 when fakes follow the real distribution; above 1 when they crowd dense real regions)."""

    precision: float
    recall: float
    density: float
    coverage: float
    nearest_k: int
    n_real: int
    n_fake: int

    def as_dict(self) -> dict:
        return asdict(self)


def knn_radii(x: torch.Tensor, k: int, block_size: int = 2048) -> torch.Tensor:
    """Distance from each row of ``x`` (n, F) to its k-th nearest other row; (n,) float64.

    Computed block by block so memory is O(block_size * n), not O(n^2).
    """
    n = x.shape[0]
    out = torch.empty(n, dtype=torch.float64, device=x.device)
    for i in range(0, n, block_size):
        d = torch.cdist(x[i : i + block_size], x)
        rows = torch.arange(d.shape[0], device=x.device)
        d[rows, rows + i] = 0.0  # the self-distance, exactly (cdist's matmul path may leave ~1e-8)
        out[i : i + block_size] = d.kthvalue(k + 1, dim=1).values  # k + 1: the point itself is the 1st
    return out


def prdc(real_features, fake_features, nearest_k: int = 5, *, block_size: int = 2048, device=None) -> PRDC:
    """Precision, recall, density and coverage with k-nearest-neighbour balls.

    With ``B(x, r)`` the open ball and ``NND_k`` the distance to the k-th nearest neighbour in the
    same set (itself excluded), for real points X (N) and fake points Y (M):

    - precision = (1/M) sum_j 1[exists i: Y_j in B(X_i, NND_k(X_i))]
    - recall    = (1/N) sum_i 1[exists j: X_i in B(Y_j, NND_k(Y_j))]
    - density   = (1/(kM)) sum_j sum_i 1[Y_j in B(X_i, NND_k(X_i))]
    - coverage  = (1/N) sum_i 1[exists j: Y_j in B(X_i, NND_k(X_i))]

    Parameters
    ----------
    real_features : array-like or Tensor of shape (n_real, F)
    fake_features : array-like or Tensor of shape (n_fake, F)
        Both from the same feature network; more than ``nearest_k`` rows each. Naeem et al. use
        10,000 of each and k = 5.
    nearest_k : int, default=5
    block_size : int, default=2048
        Rows per distance block; memory is about 8 * block_size * max(n_real, n_fake) bytes.
    device : torch device, optional
        Where to compute (default: CPU); results do not depend on it beyond float64 rounding.

    Returns
    -------
    PRDC

    References
    ----------
    Naeem et al., ICML 2020; Kynkäänniemi et al., "Improved precision and recall metric for
    assessing generative models", NeurIPS 2019.
    """
    x = as_float_tensor(real_features, "real_features", ndim=2)
    y = as_float_tensor(fake_features, "fake_features", ndim=2)
    if x.shape[1] != y.shape[1]:
        raise ValueError(
            f"real_features have {x.shape[1]} columns but fake_features have {y.shape[1]}: both must come "
            "from the same feature network."
        )
    if not isinstance(nearest_k, int) or nearest_k < 1:
        raise ValueError(f"nearest_k must be a positive int, got {nearest_k!r}.")
    for name, t in (("real_features", x), ("fake_features", y)):
        if t.shape[0] <= nearest_k:
            raise ValueError(
                f"{name} has {t.shape[0]} rows; more than nearest_k={nearest_k} are needed for the "
                "k-nearest-neighbour radii."
            )
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}.")
    if device is not None:
        x, y = x.to(device), y.to(device)

    r_real = knn_radii(x, nearest_k, block_size)
    r_fake = knn_radii(y, nearest_k, block_size)
    n, m = x.shape[0], y.shape[0]
    fake_in_some_ball = torch.zeros(m, dtype=torch.bool, device=x.device)
    balls_per_fake = torch.zeros(m, dtype=torch.float64, device=x.device)
    real_recalled = torch.zeros(n, dtype=torch.bool, device=x.device)
    real_covered = torch.zeros(n, dtype=torch.bool, device=x.device)
    for i in range(0, n, block_size):
        d = torch.cdist(x[i : i + block_size], y)  # (b, m)
        inside = d < r_real[i : i + block_size, None]
        fake_in_some_ball |= inside.any(dim=0)
        balls_per_fake += inside.sum(dim=0)
        real_covered[i : i + block_size] = inside.any(dim=1)
        real_recalled[i : i + block_size] = (d < r_fake[None, :]).any(dim=1)
    return PRDC(
        precision=float(fake_in_some_ball.double().mean()),
        recall=float(real_recalled.double().mean()),
        density=float(balls_per_fake.sum() / (nearest_k * m)),
        coverage=float(real_covered.double().mean()),
        nearest_k=nearest_k,
        n_real=n,
        n_fake=m,
    )
