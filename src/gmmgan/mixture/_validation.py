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


def _as_tensor(value, name, dtype, device) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        t = value.detach().to(device=device, dtype=dtype)
    else:
        try:
            arr = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be an array of numbers, got {value!r}.") from None
        t = torch.as_tensor(arr, device=device).to(dtype)
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or infinity.")
    return t


def _check_shape(t: torch.Tensor, shape: tuple, name: str) -> None:
    if tuple(t.shape) != tuple(shape):
        raise ValueError(
            f"The parameter {name!r} should have the shape of {tuple(shape)}, but got {tuple(t.shape)}."
        )


def check_weights(value, k, dtype, device) -> torch.Tensor:
    w = _as_tensor(value, "weights_init", dtype, device)
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
            "Divide weights_init by its sum."
        )
    return w


def check_means(value, k, d, dtype, device) -> torch.Tensor:
    m = _as_tensor(value, "means_init", dtype, device)
    _check_shape(m, (k, d), "means")
    return m


def check_precisions(value, covariance_type, k, d, dtype, device) -> torch.Tensor:
    p = _as_tensor(value, "precisions_init", dtype, device)
    _check_shape(p, COVARIANCES[covariance_type].shape(k, d), f"{covariance_type} precision")
    if covariance_type in ("diag", "spherical"):
        if bool((p <= 0).any()):
            raise ValueError(f"'{covariance_type} precision' should be positive.")
        return p
    mats = p.reshape(-1, d, d)
    if not bool(torch.allclose(mats, mats.mT, atol=1e-8 * float(mats.abs().max()) + 1e-12)):
        raise ValueError(f"'{covariance_type} precision' should be symmetric, positive-definite.")
    if bool((torch.linalg.eigvalsh(mats.double().cpu()) <= 0).any()):  # tiny; slow on a GPU
        raise ValueError(f"'{covariance_type} precision' should be symmetric, positive-definite.")
    return p
