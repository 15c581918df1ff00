"""Input conversion and small helpers shared by the metrics (validation lives here, in one place)."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["as_float_tensor", "as_label_tensor", "kl_floor", "kl_to_uniform"]


def as_float_tensor(x, name: str, ndim: int | None = None, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """``x`` (numpy / torch / nested lists) as a CPU tensor of ``dtype``; checks ``ndim``, emptiness, finiteness."""
    if isinstance(x, torch.Tensor):
        t = x.detach().to(device="cpu", dtype=dtype)
    else:
        try:
            t = torch.as_tensor(np.asarray(x), dtype=dtype)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{name} must be a numeric array or tensor, got {type(x).__name__}: {e}") from None
    if ndim is not None and t.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {tuple(t.shape)}.")
    if t.numel() == 0 or t.shape[0] == 0:
        raise ValueError(f"{name} is empty (shape {tuple(t.shape)}); pass at least one sample.")
    if not torch.isfinite(t).all():
        n_bad = int((~torch.isfinite(t)).sum())
        raise ValueError(f"{name} contains {n_bad} NaN or infinite values; check the generator's output.")
    return t


def as_label_tensor(x, name: str) -> torch.Tensor:
    """1-D int64 CPU tensor of non-negative integer labels."""
    if isinstance(x, torch.Tensor):
        t = x.detach().cpu()
    else:
        try:
            t = torch.as_tensor(np.asarray(x))
        except (TypeError, ValueError, RuntimeError):  # strings, objects, ragged lists
            raise ValueError(f"{name} must hold integer labels, got {type(x).__name__} {x!r:.80}.") from None
    if t.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one label per sample), got shape {tuple(t.shape)}.")
    if t.numel() == 0:
        raise ValueError(f"{name} is empty; pass at least one label.")
    if t.is_floating_point():
        if not torch.equal(t, t.round()):
            raise ValueError(f"{name} must hold integer labels, got non-integer floats.")
    elif t.dtype == torch.bool or t.is_complex():
        raise ValueError(f"{name} must hold integer labels, got dtype {t.dtype}.")
    t = t.to(torch.int64)
    if int(t.min()) < 0:
        raise ValueError(f"{name} must hold non-negative labels, found {int(t.min())}.")
    return t


def kl_to_uniform(counts: torch.Tensor) -> float:
    """KL(p_hat || uniform) = sum_k p_k log(p_k K), with 0 log 0 = 0 (natural log).

    ``counts`` is the (K,) histogram; K counts empty bins too, so a sampler that covers
    m of K modes equally gets exactly log(K / m).
    """
    counts = counts.to(torch.float64)
    total = counts.sum()
    if total <= 0:
        raise ValueError("the histogram is empty: no samples to compute a KL divergence from.")
    p = counts / total
    k = counts.numel()
    nz = p > 0
    return float((p[nz] * torch.log(p[nz] * k)).sum())


def kl_floor(n_samples: int, n_modes: int) -> float:
    """Expected KL(p_hat || uniform) of a perfect sampler: (K - 1) / (2 N), to first order.

    The multinomial noise of N draws over K equally likely modes gives
    E[KL] = (K - 1) / (2 N) + O(K^2 / N^2) (the chi-square approximation; Paninski 2003). It is the
    smallest reverse KL a sampler can be expected to reach at this sample size: ring 0.0014 and grid
    0.0048 at 2,500 samples, Stacked MNIST 0.0192 at 26,000 samples (docs/protocols.md, section 'KL floors').
    """
    if n_samples < 1 or n_modes < 1:
        raise ValueError(f"n_samples and n_modes must be >= 1, got {n_samples} and {n_modes}.")
    return (n_modes - 1) / (2.0 * n_samples)
