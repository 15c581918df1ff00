"""Fused Triton EM kernels for float32 Gaussian mixtures on CUDA: the host side.

This module imports cleanly without Triton: the kernels (``_triton_kernels``) are imported the
first time one is launched. Each covariance type that has kernels gets an object with the same
inputs as the torch per-block path it replaces (``gaussian_mixture.GaussianMixture._e_step``'s
``e_step_block`` + ``log_normalize_`` + ``accumulate_em`` for one block of shifted rows):

* ``em_block(x, means, prec_chol, log_w) -> (lpn, nk, sx, stat)``: the per-row log-likelihood
  (float32, (n,)) and this block's statistics in float64 -- ``nk`` (K,), ``sx = sum r x`` (K, D)
  and ``stat`` in the form ``COVARIANCES[type].covariances`` takes *after* ``finalize_em``:
  ``sum r x^2`` (K, D) for diag/spherical, ``sum r (x - mu)(x - mu)^T`` around the E-step means
  (the anchor) for full.
* ``weighted_log_prob(x, means, prec_chol, log_w) -> (n, K)``: log w_k + log N(x | k), for
  ``score_samples`` / ``predict_proba`` / ``predict``.

Use :func:`resolve` to pick the kernels (or None for the torch path) from a ``backend`` value.
"""

from __future__ import annotations

import math

import torch

BACKENDS = ("auto", "torch", "triton")
KERNEL_TYPES = ("full", "diag", "spherical")
MAX_FEATURES = {"full": 128, "diag": 128, "spherical": 128}
_LOG_2PI = math.log(2 * math.pi)
# tl.dot input precision of the E-step products and of the statistics products. "tf32x3" (a
# hi/lo split into three TF32 products) keeps float32's accuracy; "tf32r" is one TF32 product
# of operands rounded to nearest (unbiased errors that average over rows): enough for the full
# scatter, which is centred at the E-step means, not for diag's raw second moments.
# "auto" for the full scatter: "tf32r" where a block has at least 8 D rows per component (its
# rounding errors, measured at ~2e-4 sqrt(D / N_k) relative, then stay under 1e-4), "tf32x3" below.
PRECISION = {"full": ("tf32x3", "auto"), "diag": ("tf32x3", "tf32x3"), "spherical": ("tf32x3", "tf32x3")}
_INT32_MAX = 2**31 - 1

_triton_error: str | None = None
_kernels = None


def _load():
    """The kernel module, imported on first use; None (and the reason kept) without Triton."""
    global _kernels, _triton_error
    if _kernels is None and _triton_error is None:
        try:
            from gmmgan.mixture import _triton_kernels

            _kernels = _triton_kernels
        except Exception as e:  # noqa: BLE001 - ImportError, or a broken Triton install
            _triton_error = f"{type(e).__name__}: {e}"
    return _kernels


def unavailable_reason(device: torch.device, dtype: torch.dtype, covariance_type: str, n_features: int) -> str | None:
    """Why the Triton kernels cannot run this fit (None when they can)."""
    if covariance_type not in KERNEL_TYPES:
        return f"covariance_type={covariance_type!r} has no Triton kernel (only {', '.join(map(repr, KERNEL_TYPES))})"
    if n_features > MAX_FEATURES[covariance_type]:
        return f"the kernels for {covariance_type!r} take at most {MAX_FEATURES[covariance_type]} features, got {n_features}"
    if torch.device(device).type != "cuda":
        return f"the Triton kernels run on CUDA devices only, and this fit computes on {str(device)!r}"
    if dtype != torch.float32:
        return f"the Triton kernels compute in float32 only, and this fit's dtype is {str(dtype).replace('torch.', '')}"
    if _load() is None:
        return f"Triton could not be imported ({_triton_error})"
    return None


def resolve(backend: str, device, dtype, covariance_type: str, n_features: int):
    """The kernel object for ``backend`` on this device/dtype, or None for the torch code."""
    if backend == "torch":
        return None
    if backend not in BACKENDS:
        raise ValueError(f"Unknown backend {backend!r}; choose one of {', '.join(repr(b) for b in BACKENDS)}.")
    reason = unavailable_reason(device, dtype, covariance_type, n_features)
    if reason is None:
        return _TYPES[covariance_type]
    if backend == "triton":
        raise ValueError(
            f"backend='triton' cannot be used: {reason}. Use backend='auto' (Triton kernels where they "
            "apply, the torch code elsewhere) or backend='torch'; the kernels need a CUDA device, "
            "dtype float32, the 'triton' package, and covariance_type 'full', 'diag' or 'spherical'."
        )
    return None


def default_chunk_size(n_components: int, n_features: int) -> int:
    """Rows per block for the kernels: their temporaries are (rows, K) + (rows, D), ~1 GB."""
    per_row = 4 * (n_components + n_features + 1)
    return int(min(max((1 << 30) // per_row, 256), 1 << 20))


def _pow2(v: int, low: int = 16) -> int:
    return max(low, triton_next_power_of_2(v))


def triton_next_power_of_2(v: int) -> int:
    return 1 << max(0, (int(v) - 1).bit_length())


def _n_sm(device) -> int:
    return torch.cuda.get_device_properties(device).multi_processor_count


def _splits(n: int, block_n: int, programs_per_split: int, device) -> tuple[int, int]:
    """(splits, rows per split) so that about 4 programs run per multiprocessor."""
    tiles = max(1, -(-n // block_n))
    splits = max(1, min(tiles, -(-4 * _n_sm(device) // programs_per_split)))
    rows = -(-tiles // splits) * block_n
    return -(-n // rows), rows


def _row_blocks(x: torch.Tensor, k: int):
    """Rows of ``x`` in pieces whose (rows, K) and (rows, D) offsets fit in int32."""
    step = max(1, _INT32_MAX // max(k, x.shape[1], 1) - 1)
    for start in range(0, x.shape[0], step):
        yield x[start : start + step]


# Launch configurations per kernel, from the shape; ``OVERRIDES[kernel name]`` (a dict) replaces
# entries (benchmarks/triton_em_kernels.py sweeps them this way). The defaults are the fastest
# of that sweep on one H200 (2026-12-01, docs/benchmarks.md).
OVERRIDES: dict = {}


def _config(name: str, k: int, d: int) -> dict:
    block_d = _pow2(d)
    if name == "diag_estep":
        big = block_d >= 128
        cfg = dict(BLOCK_N=64 if big else 128, BLOCK_K=min(32 if big else 64, _pow2(k)), num_warps=4, num_stages=2)
    elif name == "diag_stats":
        cfg = dict(BLOCK_N=64, BLOCK_K=min(32 if block_d >= 128 else 64, _pow2(k)), num_warps=8 if block_d >= 128 else 4, num_stages=2)
    elif name == "full_estep":
        # FOLD (y = x P - mu P, the row tile one operand for all components) needs more shared
        # memory than D = 128 leaves; it is the faster form below that.
        cfg = dict(BLOCK_N=256 if block_d <= 64 else 128, FOLD=block_d <= 64, num_warps=8, num_stages=2)
    else:  # full_stats
        cfg = dict(BLOCK_N=256 if block_d <= 64 else 128, G=1, num_warps=8, num_stages=2)
    cfg.update(OVERRIDES.get(name, {}))
    return cfg


class _DiagKernels:
    """diag: precisions_cholesky (K, D); spherical reuses it with (K,) broadcast to (K, D)."""

    name = "diag"

    @classmethod
    def _prec(cls, prec_chol, d):
        return prec_chol

    @classmethod
    def _prepare(cls, means, prec_chol, log_w):
        d = means.shape[1]
        p = cls._prec(prec_chol, d).double()
        mu = means.double()
        p2 = p.square()
        b1t = p2.mT.contiguous().float()
        b2t = (-2.0 * mu * p2).mT.contiguous().float()
        const = log_w.double() + p.log().sum(1) - 0.5 * (d * _LOG_2PI + (mu.square() * p2).sum(1))
        return b1t, b2t, const.float().contiguous()

    @classmethod
    def _estep(cls, x, b1t, b2t, const, store_w):
        n, d = x.shape
        k = const.shape[0]
        cfg = _config("diag_estep", k, d)
        w = torch.empty((n, k) if store_w else (1, 1), dtype=torch.float32, device=x.device)
        lse = torch.empty(n, dtype=torch.float32, device=x.device)
        _load().diag_estep[(triton_cdiv(n, cfg["BLOCK_N"]),)](
            x, b1t, b2t, const, w, lse, n, k, d, x.stride(0),
            BLOCK_D=_pow2(d), PREC=PRECISION[cls.name][0], STORE_W=store_w, **cfg,
        )
        return w, lse

    @classmethod
    def _stats(cls, x, w, lse, k):
        n, d = x.shape
        cfg = _config("diag_stats", k, d)
        n_kb = triton_cdiv(k, cfg["BLOCK_K"])
        splits, rows = _splits(n, cfg["BLOCK_N"], n_kb, x.device)
        pn = torch.empty((splits, k), dtype=torch.float32, device=x.device)
        px = torch.empty((splits, k, d), dtype=torch.float32, device=x.device)
        pxx = torch.empty_like(px)
        _load().diag_stats[(splits * n_kb,)](
            x, w, lse, pn, px, pxx, n, k, d, x.stride(0), rows,
            BLOCK_D=_pow2(d), PREC=PRECISION[cls.name][1], **cfg,
        )
        f64 = torch.float64
        return pn.sum(0, dtype=f64), px.sum(0, dtype=f64), pxx.sum(0, dtype=f64)

    @classmethod
    def em_block(cls, x, means, prec_chol, log_w):
        x = x if x.stride(-1) == 1 else x.contiguous()
        prep = cls._prepare(means, prec_chol, log_w)
        parts = []
        for xb in _row_blocks(x, means.shape[0]):
            w, lse = cls._estep(xb, *prep, True)
            parts.append((lse, *cls._stats(xb, w, lse, means.shape[0])))
        return _combine(parts)

    @classmethod
    def weighted_log_prob(cls, x, means, prec_chol, log_w):
        x = x if x.stride(-1) == 1 else x.contiguous()
        prep = cls._prepare(means, prec_chol, log_w)
        return torch.cat([cls._estep(xb, *prep, True)[0] for xb in _row_blocks(x, means.shape[0])])


class _SphericalKernels(_DiagKernels):
    name = "spherical"

    @classmethod
    def _prec(cls, prec_chol, d):
        return prec_chol.unsqueeze(1).expand(-1, d)


class _FullKernels:
    """full: precisions_cholesky (K, D, D), upper triangular, y = (x - mu_k) P_k."""

    name = "full"

    @staticmethod
    def _prepare(means, prec_chol, log_w):
        d = means.shape[1]
        p64 = prec_chol.double()
        logdet = p64.diagonal(dim1=-2, dim2=-1).log().sum(-1)
        const = (log_w.double() + logdet - 0.5 * d * _LOG_2PI).float().contiguous()
        mup = torch.einsum("kd,kde->ke", means.double(), p64).float().contiguous()
        return means.float().contiguous(), mup, prec_chol.float().contiguous(), const

    @classmethod
    def _estep(cls, x, mu, mup, p, const, store_w):
        n, d = x.shape
        k = const.shape[0]
        cfg = _config("full_estep", k, d)
        wt = torch.empty((k, n) if store_w else (1, 1), dtype=torch.float32, device=x.device)
        lse = torch.empty(n, dtype=torch.float32, device=x.device)
        _load().full_estep[(triton_cdiv(n, cfg["BLOCK_N"]),)](
            x, mu, mup, p, const, wt, lse, n, k, d, x.stride(0),
            BLOCK_D=_pow2(d), PREC=PRECISION["full"][0], STORE_W=store_w, **cfg,
        )
        return wt, lse

    @classmethod
    def _stats(cls, x, mu, wt, lse):
        n, d = x.shape
        k = mu.shape[0]
        prec = PRECISION["full"][1]
        if prec == "auto":
            prec = "tf32r" if n >= 8 * d * k else "tf32x3"
        cfg = dict(_config("full_stats", k, d))
        if prec == "tf32x3" and "full_stats" not in OVERRIDES:
            cfg["BLOCK_N"] = 64  # the hi/lo halves of both operands need twice the shared memory
        g = cfg.pop("G")
        n_kg = triton_cdiv(k, g)
        splits, rows = _splits(n, cfg["BLOCK_N"], n_kg, x.device)
        pn = torch.empty((splits, k), dtype=torch.float32, device=x.device)
        pz = torch.empty((splits, k, d), dtype=torch.float32, device=x.device)
        pzz = torch.empty((splits, k, d, d), dtype=torch.float32, device=x.device)
        args = (x, mu, wt, lse, pn, pz, pzz, n, k, d, x.stride(0), rows)
        if g == 1:
            _load().full_stats[(splits * k,)](*args, BLOCK_D=_pow2(d), PREC=prec, **cfg)
        else:
            _load().full_stats_g[(splits * n_kg,)](*args, G=g, BLOCK_D=_pow2(d), PREC=prec, **cfg)
        f64 = torch.float64
        nk = pn.sum(0, dtype=f64)
        # sum r x = sum r (x - mu) + N_k mu, in float64; the scatter stays centred at mu (the anchor).
        sx = pz.sum(0, dtype=f64) + nk.unsqueeze(1) * mu.double()
        return nk, sx, pzz.sum(0, dtype=f64)

    @classmethod
    def em_block(cls, x, means, prec_chol, log_w):
        x = x if x.stride(-1) == 1 else x.contiguous()
        prep = cls._prepare(means, prec_chol, log_w)
        parts = []
        for xb in _row_blocks(x, means.shape[0]):
            wt, lse = cls._estep(xb, *prep, True)
            parts.append((lse, *cls._stats(xb, prep[0], wt, lse)))
        return _combine(parts)

    @classmethod
    def weighted_log_prob(cls, x, means, prec_chol, log_w):
        x = x if x.stride(-1) == 1 else x.contiguous()
        prep = cls._prepare(means, prec_chol, log_w)
        return torch.cat([cls._estep(xb, *prep, True)[0].mT for xb in _row_blocks(x, means.shape[0])])


def _combine(parts):
    if len(parts) == 1:
        return parts[0]
    return torch.cat([p[0] for p in parts]), *(sum(p[i] for p in parts) for i in (1, 2, 3))


def triton_cdiv(a: int, b: int) -> int:
    return -(-int(a) // int(b))


_TYPES = {"full": _FullKernels, "diag": _DiagKernels, "spherical": _SphericalKernels}
