"""Validation of the GaussianMixture constructor parameters, in one place."""

from __future__ import annotations

import numbers

import numpy as np
import torch

from gmmgan.mixture._covariance import COVARIANCE_TYPES, COVARIANCES
from gmmgan.mixture._triton_em import BACKENDS

INIT_PARAMS = ("k-means++", "kmeans", "random", "random_from_data")


def _is_int(x) -> bool:
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def _is_real(x) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def check_parameters(est) -> None:
    """Check the scalar parameters of a GaussianMixture; raises ValueError naming the fix."""
    if not _is_int(est.n_components) or est.n_components < 1:
        raise ValueError(
            f"n_components must be a positive int or 'auto', got {est.n_components!r}."
        )
    if est.covariance_type not in COVARIANCE_TYPES:
        raise ValueError(
            f"Unknown covariance_type {est.covariance_type!r}; choose one of "
            f"{', '.join(repr(c) for c in COVARIANCE_TYPES)}."
        )
    if est.init_params not in INIT_PARAMS:
        raise ValueError(
            f"Unknown init_params {est.init_params!r}; choose one of "
            f"{', '.join(repr(c) for c in INIT_PARAMS)}."
        )
    # tol=0 and reg_covar=0 are allowed, as in scikit-learn: tol=0 runs exactly max_iter
    # iterations, reg_covar=0 adds nothing (a covariance that does not factor still gets jitter).
    if not _is_real(est.tol) or not est.tol >= 0 or not np.isfinite(est.tol):
        raise ValueError(
            f"tol must be a positive float or 0, got {est.tol!r}. To run a fixed number of "
            "iterations, set max_iter and tol=0."
        )
    if not _is_real(est.reg_covar) or not est.reg_covar >= 0 or not np.isfinite(est.reg_covar):
        raise ValueError(
            f"reg_covar must be a positive float or 0, got {est.reg_covar!r}; it is added to the "
            "covariance diagonals to keep them positive definite (the default is 1e-6)."
        )
    if not _is_int(est.max_iter) or est.max_iter < 0:
        raise ValueError(f"max_iter must be a non-negative int, got {est.max_iter!r}.")
    if not _is_int(est.n_init) or est.n_init < 1:
        raise ValueError(f"n_init must be a positive int, got {est.n_init!r}.")
    if est.chunk_size is not None and (not _is_int(est.chunk_size) or est.chunk_size < 1):
        raise ValueError(f"chunk_size must be None or a positive int, got {est.chunk_size!r}.")
    if est.callback is not None and not callable(est.callback):
        raise ValueError(f"callback must be callable or None, got {est.callback!r}.")
    if not isinstance(est.warm_start, (bool, np.bool_)):
        raise ValueError(f"warm_start must be True or False, got {est.warm_start!r}.")  # noqa: TRY004 - sklearn's type
    if not isinstance(est.verbose, (numbers.Integral, np.bool_)) or est.verbose < 0:  # True = 1, as sklearn
        raise ValueError(f"verbose must be a non-negative int (0, 1 or 2), got {est.verbose!r}.")
    if not _is_int(est.verbose_interval) or est.verbose_interval < 1:
        raise ValueError(f"verbose_interval must be a positive int, got {est.verbose_interval!r}.")
    if getattr(est, "backend", "auto") not in BACKENDS:
        raise ValueError(
            f"Unknown backend {est.backend!r}; choose one of {', '.join(repr(b) for b in BACKENDS)} "
            "('auto' uses the Triton kernels on CUDA float32 fits where they apply, the torch code elsewhere)."
        )


def _as_tensor(value, name, dtype, device, check_finite=True) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        t = value.detach().to(device=device, dtype=dtype)
    else:
        try:
            arr = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be an array of numbers, got {value!r}.") from None
        t = torch.as_tensor(arr, device=device).to(dtype)
    if check_finite and not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or infinity.")
    return t


def _check_shape(t: torch.Tensor, shape: tuple, name: str) -> None:
    if tuple(t.shape) != tuple(shape):
        raise ValueError(
            f"The parameter {name!r} should have the shape of {tuple(shape)}, but got {tuple(t.shape)}."
        )


def check_weights(value, k, dtype, device, name="weights_init", check_finite=True) -> torch.Tensor:
    """Mixture weights: shape (K,), finite, in [0, 1], summing to 1; ``name`` is what the user passed."""
    w = _as_tensor(value, name, dtype, device, check_finite)
    _check_shape(w, (k,), "weights")
    if bool((w < 0).any()) or bool((w > 1).any()):
        raise ValueError(
            f"The parameter 'weights' should be in the range [0, 1], but got min value "
            f"{float(w.min()):.5f}, max value {float(w.max()):.5f}."
        )
    total = float(w.double().sum())
    if abs(1.0 - total) > 1e-6:
        raise ValueError(
            f"The parameter 'weights' should be normalized, but got sum(weights) = {total:.5f}. "
            f"Divide {name} by its sum."
        )
    return w


def check_means(value, k, d, dtype, device, name="means_init") -> torch.Tensor:
    m = _as_tensor(value, name, dtype, device)
    _check_shape(m, (k, d), "means")
    return m


def _check_positive_definite(t: torch.Tensor, covariance_type: str, d: int, what: str) -> None:
    """``t`` (``covariance_type``'s layout) positive (diag, spherical) or symmetric positive definite."""
    if covariance_type in ("diag", "spherical"):
        bad = t <= 0
        if bool(bad.any()):
            comp = int(torch.nonzero(bad.reshape(t.shape[0], -1).any(1))[0, 0])
            raise ValueError(f"'{what}' should be positive (component {comp} has {float(t[comp].min()):.5g}).")
        return
    mats = t.reshape(-1, d, d)
    if float((mats - mats.mT).abs_().amax()) > 1e-8 * float(mats.abs().amax()) + 1e-12:
        raise ValueError(f"'{what}' should be symmetric, positive-definite.")
    _, info = torch.linalg.cholesky_ex(mats.double().cpu())  # K D^3 / 3: cheap; slow on a GPU
    if bool((info != 0).any()):
        comp = int(torch.nonzero(info != 0)[0, 0])
        which = "" if covariance_type == "tied" else f" (component {comp} is not)"
        raise ValueError(f"'{what}' should be symmetric, positive-definite{which}.")


def check_precisions(value, covariance_type, k, d, dtype, device, name="precisions_init") -> torch.Tensor:
    p = _as_tensor(value, name, dtype, device)
    _check_shape(p, COVARIANCES[covariance_type].shape(k, d), f"{covariance_type} precision")
    _check_positive_definite(p, covariance_type, d, f"{covariance_type} precision")
    return p


def check_covariances(value, covariance_type, k, d, dtype, device, name="covariances", check_finite=True) -> torch.Tensor:
    """Covariances in ``covariance_type``'s layout: finite, positive (definite)."""
    c = _as_tensor(value, name, dtype, device, check_finite)
    _check_shape(c, COVARIANCES[covariance_type].shape(k, d), f"{covariance_type} covariance")
    _check_positive_definite(c, covariance_type, d, f"{covariance_type} covariance")
    return c


def check_precisions_cholesky(value, covariance_type, k, d, dtype, device, name="precisions_cholesky", check_finite=True) -> torch.Tensor:
    """Cholesky factors of the precisions as scikit-learn stores them: upper triangular, positive diagonal."""
    p = _as_tensor(value, name, dtype, device, check_finite)
    _check_shape(p, COVARIANCES[covariance_type].shape(k, d), f"{covariance_type} precision Cholesky factor")
    if covariance_type in ("diag", "spherical"):
        _check_positive_definite(p, covariance_type, d, f"{covariance_type} precision Cholesky factor")
        return p
    mats = p.reshape(-1, d, d)
    below = torch.tril(mats, -1).abs_().flatten(1).amax(1)
    diagonal = mats.diagonal(dim1=-2, dim2=-1)
    if bool((diagonal <= 0).any()) or bool((below > 1e-6 * diagonal.amax(1)).any()):
        raise ValueError(f"'{covariance_type} precision Cholesky factor' should be upper triangular with a "
                         "positive diagonal.")
    return p


def check_covariances_match(covariances, prec_chol, covariance_type, d, tol=1e-2) -> None:
    """Covariances and precision Cholesky factors describe the same Gaussians (within ``tol``).

    P^T C P is the identity when P is C's precision Cholesky factor. It is checked in whitened
    units, so independently of the scale and conditioning of the covariances (float32 rounding of
    a saved model stays below 1e-4), on a few fixed random directions: O(K D^2), not O(K D^3).
    """
    c, p = covariances.double().cpu(), prec_chol.double().cpu()
    if covariance_type in ("full", "tied"):
        c, p = c.reshape(-1, d, d), p.reshape(-1, d, d)
        probe = torch.randn(d, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        probe = probe / torch.linalg.vector_norm(probe, dim=0)
        off = (p.mT @ (c @ (p @ probe)) - probe).abs().flatten(1).amax(1)
    else:
        off = (p.square() * c - 1).abs().reshape(p.shape[0], -1).amax(1)
    if bool((off > tol).any()):
        comp = int(torch.nonzero(off > tol)[0, 0])
        which = "" if covariance_type == "tied" else f" (component {comp} differs by {float(off[comp]):.3g} in whitened units)"
        raise ValueError(f"the covariances and the precision Cholesky factors do not describe the same Gaussians{which}.")
