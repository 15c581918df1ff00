"""Per-covariance-type pieces of Gaussian mixture EM, picked from a table.

Every function works on torch tensors in the (shifted) coordinates the EM loop uses. The
formulas follow scikit-learn's ``sklearn/mixture/_gaussian_mixture.py`` so that, from the same
initial parameters, both libraries take the same EM steps; where they differ it is to batch the
work into a few large matrix products instead of a Python loop over components.

Shapes (K components, D features):

========== ====================== ======================= ==========================
type       covariances            precisions_cholesky     per-chunk statistic
========== ====================== ======================= ==========================
full       (K, D, D)              (K, D, D) upper         sum r (x - a)(x - a)^T, (K, D, D)
tied       (D, D)                 (D, D) upper            sum x x^T, (D, D)
diag       (K, D)                 (K, D)                  sum r x*x, (K, D)
spherical  (K,)                   (K,)                    sum r x*x, (K, D)
========== ====================== ======================= ==========================

``a`` is an anchor (the means the E-step used): accumulating around it instead of around the
origin keeps float32 covariance estimates accurate when components sit far from the origin.

The table is also the one place that knows each type's layout: :meth:`shape`, the number of free
parameters (:meth:`n_cov_params`, :meth:`n_parameters`, as BIC and AIC count them) and the
expansion to full (K, D, D) matrices (:meth:`full_covariances`), which takes numpy arrays as well
as tensors so that numpy-only code (gmmgan.plotting) can use it too.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")
_LOG_2PI = math.log(2 * math.pi)


def _flip(a: torch.Tensor) -> torch.Tensor:
    return a.flip(-1).flip(-2)


def _not_positive_definite(cov, chol, info) -> torch.Tensor:
    """True where Cholesky failed or a pivot is at the dtype's rounding level (singular in effect)."""
    pivots = chol.diagonal(dim1=-2, dim2=-1).square().amin(-1)
    largest = cov.diagonal(dim1=-2, dim2=-1).amax(-1)
    return (info != 0) | ~(pivots > 4 * torch.finfo(cov.dtype).eps * largest)


# scikit-learn's error, word for word, for a covariance that cannot be factored with reg_covar=0.
ILL_DEFINED_COVARIANCE = (
    "Fitting the mixture model failed because some components have ill-defined empirical covariance "
    "(for instance caused by singleton or collapsed samples). Try to decrease the number of components, "
    "increase reg_covar, or scale the input data."
)


def jitter_to_positive_definite(cov: torch.Tensor, reg_covar: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(cov, its lower Cholesky factor), with jitter added where ``cov`` does not factor.

    A matrix that is not numerically positive definite in its dtype (duplicate or collinear
    points, constant features, float32 rounding of an ill-conditioned matrix) gets a growing
    multiple of ``reg_covar`` added to its diagonal until it factors, with a warning, instead of
    failing the whole fit. ``reg_covar=0`` asks for no regularisation at all: then, as in
    scikit-learn, only a failed Cholesky counts, and it is a ValueError.
    """
    chol, info = torch.linalg.cholesky_ex(cov)
    if reg_covar == 0:
        if bool((info != 0).any()):
            raise ValueError(ILL_DEFINED_COVARIANCE)
        return cov, chol
    bad = _not_positive_definite(cov, chol, info)
    if not bool(bad.any()):
        return cov, chol
    batch = cov.reshape(-1, cov.shape[-2], cov.shape[-1]).clone()
    chol = chol.reshape(batch.shape).clone()
    info = bad.reshape(-1)
    eye = torch.eye(cov.shape[-1], dtype=cov.dtype, device=cov.device)
    scale = batch.diagonal(dim1=-2, dim2=-1).abs().mean(-1).clamp_min(1.0)
    for i in torch.nonzero(info).flatten().tolist():
        jitter = max(reg_covar, 1e-12)
        for _ in range(40):
            trial = batch[i] + jitter * scale[i] * eye
            c, fail = torch.linalg.cholesky_ex(trial)
            if not bool(_not_positive_definite(trial, c, fail)):
                break
            jitter *= 10.0
        else:  # pragma: no cover - only for matrices with non-finite entries
            raise ValueError(
                "A covariance matrix has non-finite entries; check the data for NaN/inf "
                "and increase reg_covar."
            )
        batch[i] += jitter * scale[i] * eye
        chol[i] = c
        warnings.warn(
            f"Covariance of component {i} was not positive definite in {str(cov.dtype)[6:]}; "
            f"added {jitter * float(scale[i]):.3g} to its diagonal. Increase reg_covar, scale "
            "the data, or use dtype='float64' to avoid this.",
            RuntimeWarning,
            stacklevel=3,
        )
    return batch.reshape(cov.shape), chol.reshape(cov.shape)


def _upper_inverse_of_lower(chol: torch.Tensor) -> torch.Tensor:
    # precisions_cholesky = (L^-1)^T, upper triangular, as scikit-learn stores it.
    eye = torch.eye(chol.shape[-1], dtype=chol.dtype, device=chol.device).expand_as(chol)
    return torch.linalg.solve_triangular(chol, eye, upper=False).mT


# Whether the CPU may skip ~0 responsibilities in the full-covariance scatter (a switch for
# benchmarks/em_kernels-style comparisons; results agree either way, see _sparse_scatter).
SPARSE_SCATTER = True


def _sparse_scatter(y: torch.Tensor, resp: torch.Tensor) -> torch.Tensor | None:
    """sum_n r_nk y_nk y_nk^T using only the (n, k) pairs with a non-negligible responsibility.

    Once components separate, most responsibilities are ~0 and the dense product spends most of
    its time multiplying by them. Pairs below 1e-3 eps of the dtype are skipped: even summed over
    a million rows they change a component's scatter by far less than rounding. Returns None
    (use the dense product) when more than a third of the pairs count; on a GPU the dense
    product is always used, since the per-component loop would cost more launches than it saves.
    """
    keep = resp > 1e-3 * torch.finfo(resp.dtype).eps
    counts = keep.sum(0).tolist()
    if sum(counts) * 3 > keep.numel():
        return None
    k, _, d = y.shape
    out = y.new_zeros(k, d, d)
    for j, count in enumerate(counts):
        if count:
            rows = keep[:, j].nonzero().squeeze(1)
            yj = y[j].index_select(0, rows)
            out[j] = (yj * resp.index_select(0, rows)[:, j : j + 1]).mT @ yj
    return out


def _eye_like(a, d: int):
    """The (D, D) identity as ``a`` is: a numpy array, or a tensor of its dtype and device."""
    if isinstance(a, torch.Tensor):
        return torch.eye(d, dtype=a.dtype, device=a.device)
    return np.eye(d, dtype=a.dtype)


def _broadcast_to(a, shape):
    """A read-only broadcast view of ``a`` (numpy array or tensor) with ``shape``."""
    return torch.broadcast_to(a, shape) if isinstance(a, torch.Tensor) else np.broadcast_to(a, shape)


class _Type:
    """Defaults for the EM hooks (the E-step keeps nothing for the M-step to reuse) and the
    parameter count that every type shares."""

    @classmethod
    def n_parameters(cls, k: int, d: int) -> int:
        """Free parameters of a K-component mixture in D dimensions: covariances, means, weights."""
        return cls.n_cov_params(k, d) + k * d + k - 1

    @classmethod
    def e_step_block(cls, X, means, prec_chol):
        """(log N(x | mu_k, Sigma_k) of shape (n, K), a cache for :meth:`accumulate_em`)."""
        return cls.log_prob(X, means, prec_chol), None

    @classmethod
    def accumulate_em(cls, X, resp, means, prec_chol, cache):
        return cls.accumulate(X, resp, means)

    @staticmethod
    def finalize_em(stat, prec_chol):
        return stat


class _Full(_Type):
    name = "full"

    @staticmethod
    def whiten(X, means, prec_chol):
        """y[k] = (X - mu_k) P_k, shape (K, n, D), as one batched product.

        The shift is folded into the product ([X, 1] times [[P_k], [-mu_k P_k]]), which saves a
        pass over the (K, n, D) result.
        """
        mu_p = torch.einsum("kd,kde->ke", means, prec_chol)
        p_aug = torch.cat([prec_chol, -mu_p.unsqueeze(1)], dim=1)
        x_aug = torch.cat([X, X.new_ones(X.shape[0], 1)], dim=1)
        return torch.matmul(x_aug, p_aug)

    @staticmethod
    def log_prob(X, means, prec_chol):
        return _Full.e_step_block(X, means, prec_chol)[0]

    @staticmethod
    def e_step_block(X, means, prec_chol):
        y = _Full.whiten(X, means, prec_chol)
        sq = torch.linalg.vector_norm(y, dim=-1).square().mT
        return -0.5 * (X.shape[1] * _LOG_2PI + sq) + _Full.log_det(prec_chol), y

    @staticmethod
    def accumulate_em(X, resp, means, prec_chol, cache):
        # Scatter in the whitened coordinates the E-step already computed: sum r y y^T, (K, D, D).
        # It is close to n_k I, so float32 sums lose nothing to cancellation; finalize_em maps it
        # back with P^-T (.) P^-1.
        if SPARSE_SCATTER and cache.device.type == "cpu":
            sparse = _sparse_scatter(cache, resp)
            if sparse is not None:
                return sparse
        ry = cache * resp.mT.unsqueeze(-1)
        return torch.bmm(ry.mT, cache)

    @staticmethod
    def finalize_em(stat, prec_chol):
        p = prec_chol.to(stat.dtype)
        eye = torch.eye(p.shape[-1], dtype=p.dtype, device=p.device).expand_as(p)
        p_inv = torch.linalg.solve_triangular(p, eye, upper=True)
        return p_inv.mT @ stat @ p_inv

    @staticmethod
    def log_det(prec_chol):
        return prec_chol.diagonal(dim1=-2, dim2=-1).log().sum(-1)

    @staticmethod
    def accumulate(X, resp, anchor):
        n, d = X.shape
        k = resp.shape[1]
        z = (X.unsqueeze(1) - anchor).mul_(resp.unsqueeze(-1))  # r (x - a), (n, k, d)
        s = (z.view(n, k * d).mT @ X).view(k, d, d)  # sum r (x - a) x^T
        s1c = z.sum(0)  # sum r (x - a)
        # sum r (x - a)(x - a)^T = sum r (x - a) x^T - (sum r (x - a)) a^T
        return s - s1c.unsqueeze(-1) * anchor.unsqueeze(-2)

    @staticmethod
    def covariances(stat, nk_raw, nk, means, sx, anchor, n_samples, reg_covar):
        delta = means - anchor
        s1c = sx - nk_raw.unsqueeze(-1) * anchor
        outer = delta.unsqueeze(-1) * s1c.unsqueeze(-2)
        scatter = stat - outer - outer.mT + nk_raw[:, None, None] * delta.unsqueeze(-1) * delta.unsqueeze(-2)
        cov = scatter / nk[:, None, None]
        cov = 0.5 * (cov + cov.mT)
        cov.diagonal(dim1=-2, dim2=-1).add_(reg_covar)
        return cov

    @staticmethod
    def precision_cholesky(cov, reg_covar):
        return _upper_inverse_of_lower(jitter_to_positive_definite(cov, reg_covar)[1])

    @staticmethod
    def to_dtype(cov, dtype, reg_covar):
        """``cov`` cast to ``dtype``, still positive definite there (float32 rounding can break it)."""
        return jitter_to_positive_definite(cov.to(dtype), reg_covar)[0]

    @staticmethod
    def from_precisions(prec):
        return _flip(torch.linalg.cholesky(_flip(prec)))

    @staticmethod
    def precisions(prec_chol):
        return prec_chol @ prec_chol.mT

    @staticmethod
    def covariances_from_precision_cholesky(prec_chol):
        inv = torch.linalg.solve_triangular(
            prec_chol, torch.eye(prec_chol.shape[-1], dtype=prec_chol.dtype, device=prec_chol.device).expand_as(prec_chol), upper=True
        )
        return inv @ inv.mT

    @staticmethod
    def full_covariances(cov, k, d):
        """``cov`` (numpy array or tensor, this type's shape) as (K, D, D) matrices, of its kind.

        May be ``cov`` itself or a view of it (tied); copy before writing to it.
        """
        return cov

    @staticmethod
    def n_cov_params(k, d):
        return k * d * (d + 1) // 2

    @staticmethod
    def shape(k, d):
        return (k, d, d)


class _Tied(_Type):
    name = "tied"

    @staticmethod
    def log_prob(X, means, prec_chol):
        d = X.shape[1]
        xp = X @ prec_chol
        mp = means @ prec_chol
        sq = (xp.square().sum(1, keepdim=True) - 2 * xp @ mp.T) + mp.square().sum(1)
        return -0.5 * (d * _LOG_2PI + sq) + _Tied.log_det(prec_chol)

    @staticmethod
    def log_det(prec_chol):
        return prec_chol.diagonal().log().sum()

    @staticmethod
    def accumulate(X, resp, anchor):
        return X.mT @ X

    @staticmethod
    def covariances(stat, nk_raw, nk, means, sx, anchor, n_samples, reg_covar):
        cov = (stat - (nk.unsqueeze(-1) * means).mT @ means) / nk.sum()
        cov = 0.5 * (cov + cov.mT)
        cov.diagonal().add_(reg_covar)
        return cov

    @staticmethod
    def precision_cholesky(cov, reg_covar):
        return _upper_inverse_of_lower(jitter_to_positive_definite(cov, reg_covar)[1])

    to_dtype = _Full.to_dtype
    from_precisions = _Full.from_precisions
    precisions = _Full.precisions
    covariances_from_precision_cholesky = _Full.covariances_from_precision_cholesky

    @staticmethod
    def full_covariances(cov, k, d):
        return _broadcast_to(cov, (k, d, d))

    @staticmethod
    def n_cov_params(k, d):
        return d * (d + 1) // 2

    @staticmethod
    def shape(k, d):
        return (d, d)


class _Diag(_Type):
    name = "diag"

    @staticmethod
    def log_prob(X, means, prec_chol):
        d = X.shape[1]
        prec = prec_chol.square()
        sq = (means.square() * prec).sum(1) - 2 * (X @ (means * prec).T) + X.square() @ prec.T
        return -0.5 * (d * _LOG_2PI + sq) + _Diag.log_det(prec_chol)

    @staticmethod
    def log_det(prec_chol):
        return prec_chol.log().sum(1)

    @staticmethod
    def accumulate(X, resp, anchor):
        return resp.mT @ X.square()

    @staticmethod
    def covariances(stat, nk_raw, nk, means, sx, anchor, n_samples, reg_covar):
        # Clamped at reg_covar: E[x^2] - E[x]^2 can round below zero for a constant feature.
        return (stat / nk.unsqueeze(-1) - means.square()).clamp_min(0.0) + reg_covar

    @staticmethod
    def precision_cholesky(cov, reg_covar):
        if reg_covar == 0 and bool((cov <= 0).any()):  # no regularisation asked for: as scikit-learn
            raise ValueError(ILL_DEFINED_COVARIANCE)
        return cov.clamp_min(torch.finfo(cov.dtype).tiny).rsqrt()

    @staticmethod
    def to_dtype(cov, dtype, reg_covar):
        return cov.to(dtype)

    @staticmethod
    def from_precisions(prec):
        return prec.sqrt()

    @staticmethod
    def precisions(prec_chol):
        return prec_chol.square()

    @staticmethod
    def covariances_from_precision_cholesky(prec_chol):
        return prec_chol.square().reciprocal()

    @staticmethod
    def full_covariances(cov, k, d):
        return cov[:, :, None] * _eye_like(cov, d)

    @staticmethod
    def n_cov_params(k, d):
        return k * d

    @staticmethod
    def shape(k, d):
        return (k, d)


class _Spherical(_Diag):
    name = "spherical"

    @staticmethod
    def log_prob(X, means, prec_chol):
        d = X.shape[1]
        prec = prec_chol.square()
        sq = (means.square().sum(1) * prec - 2 * (X @ means.T) * prec) + X.square().sum(1, keepdim=True) * prec
        return -0.5 * (d * _LOG_2PI + sq) + _Spherical.log_det(prec_chol, d)

    @staticmethod
    def log_det(prec_chol, d):
        return d * prec_chol.log()

    @staticmethod
    def covariances(stat, nk_raw, nk, means, sx, anchor, n_samples, reg_covar):
        return _Diag.covariances(stat, nk_raw, nk, means, sx, anchor, n_samples, reg_covar).mean(1)

    @staticmethod
    def full_covariances(cov, k, d):
        return cov[:, None, None] * _eye_like(cov, d)

    @staticmethod
    def n_cov_params(k, d):
        return k

    @staticmethod
    def shape(k, d):
        return (k,)


COVARIANCES = {c.name: c for c in (_Full, _Tied, _Diag, _Spherical)}


def log_det_precision(cov_type: str, prec_chol: torch.Tensor, d: int) -> torch.Tensor:
    """Log-determinant of the precision Cholesky factor, one value per component."""
    if cov_type == "spherical":
        return _Spherical.log_det(prec_chol, d)
    return COVARIANCES[cov_type].log_det(prec_chol)
