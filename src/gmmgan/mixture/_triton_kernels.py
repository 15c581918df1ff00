"""Triton kernels for one float32 EM pass over a block of rows (imported only when used).

Two launches per block and covariance type, so that no (K, rows, D) temporary ever exists:

* ``*_estep``: per tile of rows, the weighted log-probability of every component
  (log w_k + log N(x | mu_k, Sigma_k)) through tensor-core products, a running log-sum-exp over
  the components, and the per-row log-likelihood. The (rows, K) log-probabilities are written
  (4 bytes per row and component, D times less than the whitened rows).
* ``*_stats``: a grid of (component block, row split) programs; each reads its rows and
  their log-probabilities, forms the responsibilities exp(wlp - lse) and accumulates
  N_k, sum r x and the second moment in float32 registers, then writes one partial per split,
  which the caller sums in float64.

``diag`` (and ``spherical``, a diag with one variance per component) uses the expansion
sum_d p^2 (x - mu)^2 = x^2 . p^2 - 2 x . mu p^2 + mu^2 . p^2 as two (rows, D) x (D, K) products;
``full`` whitens (x - mu_k) P_k per component (x - mu_k taken in float32 first, so the product
only sees the centred rows) and accumulates the scatter sum r (x - mu_k)(x - mu_k)^T around the
E-step's means, which is what the M-step's centred formula expects.

``PREC`` is tl.dot's ``input_precision``: "tf32x3" (hi/lo split, about float32's accuracy for
three products' cost), "tf32r" (one TF32 product of operands rounded to nearest first: the
tensor cores otherwise truncate float32 operands, a bias of ~7e-4 that does not average out),
"tf32" (truncating) or "ieee" (no tensor cores, for checks).
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _round_tf32(x):
    return tl.inline_asm_elementwise("cvt.rna.tf32.f32 $0, $1;", "=r,r", [x], dtype=tl.float32, is_pure=True, pack=1)


@triton.jit
def _dot(a, b, acc, PREC: tl.constexpr):
    if PREC == "tf32r":
        return tl.dot(_round_tf32(a), _round_tf32(b), acc, input_precision="tf32")
    else:
        return tl.dot(a, b, acc, input_precision=PREC)


@triton.jit
def diag_estep(
    X, B1T, B2T, C, W, LSE, n, K, D, stride_x,
    BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr,
    PREC: tl.constexpr, STORE_W: tl.constexpr,
):
    """W[row, k] = C[k] - 0.5 (x^2 @ B1T + x @ B2T)[row, k]; LSE[row] = logsumexp_k W[row, k].

    B1T = (p^2)^T and B2T = (-2 mu p^2)^T, both (D, K) contiguous; C (K,) holds the rest.
    """
    pid = tl.program_id(0)
    rows = pid * BLOCK_N + tl.arange(0, BLOCK_N)
    cols = tl.arange(0, BLOCK_D)
    rmask = rows < n
    dmask = cols < D
    rows64 = rows.to(tl.int64)
    x = tl.load(X + rows64[:, None] * stride_x + cols[None, :], mask=rmask[:, None] & dmask[None, :], other=0.0)
    x2 = x * x
    m = tl.full([BLOCK_N], float("-inf"), tl.float32)
    s = tl.zeros([BLOCK_N], tl.float32)
    for k0 in range(0, K, BLOCK_K):
        ks = k0 + tl.arange(0, BLOCK_K)
        kmask = ks < K
        bmask = dmask[:, None] & kmask[None, :]
        b1 = tl.load(B1T + cols[:, None] * K + ks[None, :], mask=bmask, other=0.0)
        b2 = tl.load(B2T + cols[:, None] * K + ks[None, :], mask=bmask, other=0.0)
        acc = _dot(x2, b1, tl.zeros([BLOCK_N, BLOCK_K], tl.float32), PREC)
        acc = _dot(x, b2, acc, PREC)
        c = tl.load(C + ks, mask=kmask, other=float("-inf"))
        wlp = c[None, :] - 0.5 * acc
        if STORE_W:
            tl.store(W + rows64[:, None] * K + ks[None, :], wlp, mask=rmask[:, None] & kmask[None, :])
        m_new = tl.maximum(m, tl.max(wlp, 1))
        s = s * tl.exp(m - m_new) + tl.sum(tl.exp(wlp - m_new[:, None]), 1)
        m = m_new
    tl.store(LSE + rows, m + tl.log(s), mask=rmask)


@triton.jit
def diag_stats(
    X, W, LSE, PN, PX, PXX, n, K, D, stride_x, rows_per_split,
    BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr, PREC: tl.constexpr,
):
    """Partials per split s: PN[s, k] = sum r, PX[s, k, :] = sum r x, PXX[s, k, :] = sum r x^2.

    Programs are numbered component block fastest, so those working on the same rows run
    together and read them from L2.
    """
    pid = tl.program_id(0)
    n_kb = tl.cdiv(K, BLOCK_K)
    split = pid // n_kb
    ks = (pid % n_kb) * BLOCK_K + tl.arange(0, BLOCK_K)
    kmask = ks < K
    cols = tl.arange(0, BLOCK_D)
    dmask = cols < D
    acc1 = tl.zeros([BLOCK_K, BLOCK_D], tl.float32)
    acc2 = tl.zeros([BLOCK_K, BLOCK_D], tl.float32)
    nk = tl.zeros([BLOCK_K], tl.float32)
    start = split * rows_per_split
    end = tl.minimum(start + rows_per_split, n)
    for r0 in range(start, end, BLOCK_N):
        rows = r0 + tl.arange(0, BLOCK_N)
        rmask = rows < end
        rows64 = rows.to(tl.int64)
        w = tl.load(W + rows64[:, None] * K + ks[None, :], mask=rmask[:, None] & kmask[None, :], other=float("-inf"))
        lse = tl.load(LSE + rows, mask=rmask, other=0.0)
        r = tl.exp(w - lse[:, None])
        x = tl.load(X + rows64[:, None] * stride_x + cols[None, :], mask=rmask[:, None] & dmask[None, :], other=0.0)
        nk += tl.sum(r, 0)
        rt = tl.trans(r)
        acc1 = _dot(rt, x, acc1, PREC)
        acc2 = _dot(rt, x * x, acc2, PREC)
    out = split * K * D + ks[:, None] * D + cols[None, :]
    omask = kmask[:, None] & dmask[None, :]
    tl.store(PX + out, acc1, mask=omask)
    tl.store(PXX + out, acc2, mask=omask)
    tl.store(PN + split * K + ks, nk, mask=kmask)


@triton.jit
def full_estep(
    X, MU, MUP, P, C, WT, LSE, n, K, D, stride_x,
    BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, PREC: tl.constexpr, STORE_W: tl.constexpr,
    FOLD: tl.constexpr,
):
    """WT[k, row] = C[k] - 0.5 ||(x - mu_k) P_k||^2 (component-major, so each k's row is one
    contiguous store and the stats pass reads it contiguously); LSE[row] = logsumexp_k.

    FOLD: y = x P_k - (mu_k P_k) (MUP), so the row tile is the same product operand for every
    component (an exact-enough float32 accumulation with "tf32x3"); else y = (x - mu_k) P_k.
    """
    pid = tl.program_id(0)
    rows = pid * BLOCK_N + tl.arange(0, BLOCK_N)
    cols = tl.arange(0, BLOCK_D)
    rmask = rows < n
    dmask = cols < D
    rows64 = rows.to(tl.int64)
    x = tl.load(X + rows64[:, None] * stride_x + cols[None, :], mask=rmask[:, None] & dmask[None, :], other=0.0)
    pmask = dmask[:, None] & dmask[None, :]
    m = tl.full([BLOCK_N], float("-inf"), tl.float32)
    s = tl.zeros([BLOCK_N], tl.float32)
    for k in range(0, K):
        p = tl.load(P + k * D * D + cols[:, None] * D + cols[None, :], mask=pmask, other=0.0)
        if FOLD:
            mup = tl.load(MUP + k * D + cols, mask=dmask, other=0.0)
            y = _dot(x, p, tl.zeros([BLOCK_N, BLOCK_D], tl.float32) - mup[None, :], PREC)
        else:
            mu = tl.load(MU + k * D + cols, mask=dmask, other=0.0)
            y = _dot(x - mu[None, :], p, tl.zeros([BLOCK_N, BLOCK_D], tl.float32), PREC)
        wlp = tl.load(C + k) - 0.5 * tl.sum(y * y, 1)
        if STORE_W:
            tl.store(WT + k * n + rows64, wlp, mask=rmask)
        m_new = tl.maximum(m, wlp)
        s = s * tl.exp(m - m_new) + tl.exp(wlp - m_new)
        m = m_new
    tl.store(LSE + rows, m + tl.log(s), mask=rmask)


@triton.jit
def full_stats(
    X, MU, WT, LSE, PN, PZ, PZZ, n, K, D, stride_x, rows_per_split,
    BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, PREC: tl.constexpr,
):
    """Partials per split s and component k, around the E-step mean mu_k (z = x - mu_k):
    PN[s, k] = sum r, PZ[s, k] = sum r z, PZZ[s, k] = sum r z z^T."""
    pid = tl.program_id(0)
    split = pid // K
    k = pid % K
    cols = tl.arange(0, BLOCK_D)
    dmask = cols < D
    mu = tl.load(MU + k * D + cols, mask=dmask, other=0.0)
    acc = tl.zeros([BLOCK_D, BLOCK_D], tl.float32)
    sz = tl.zeros([BLOCK_D], tl.float32)
    nk = tl.zeros([BLOCK_N], tl.float32)
    start = split * rows_per_split
    end = tl.minimum(start + rows_per_split, n)
    for r0 in range(start, end, BLOCK_N):
        rows = r0 + tl.arange(0, BLOCK_N)
        rmask = rows < end
        rows64 = rows.to(tl.int64)
        w = tl.load(WT + k * n + rows64, mask=rmask, other=float("-inf"))
        lse = tl.load(LSE + rows, mask=rmask, other=0.0)
        r = tl.exp(w - lse)
        x = tl.load(X + rows64[:, None] * stride_x + cols[None, :], mask=rmask[:, None] & dmask[None, :], other=0.0)
        z = tl.where(dmask[None, :], x - mu[None, :], 0.0)
        rz = z * r[:, None]
        acc = _dot(tl.trans(rz), z, acc, PREC)
        sz += tl.sum(rz, 0)
        nk += r
    base = split * K + k
    tl.store(PZZ + base * D * D + cols[:, None] * D + cols[None, :], acc, mask=dmask[:, None] & dmask[None, :])
    tl.store(PZ + base * D + cols, sz, mask=dmask)
    tl.store(PN + base, tl.sum(nk, 0))


@triton.jit
def full_stats_g(
    X, MU, WT, LSE, PN, PZ, PZZ, n, K, D, stride_x, rows_per_split,
    G: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, PREC: tl.constexpr,
):
    """:func:`full_stats` for G components per program: one load of each row tile serves G
    batched products (G, D, rows) x (G, rows, D)."""
    pid = tl.program_id(0)
    n_kg = tl.cdiv(K, G)
    split = pid // n_kg
    kg = (pid % n_kg) * G + tl.arange(0, G)
    gmask = kg < K
    cols = tl.arange(0, BLOCK_D)
    dmask = cols < D
    mu = tl.load(MU + kg[:, None] * D + cols[None, :], mask=gmask[:, None] & dmask[None, :], other=0.0)
    acc = tl.zeros([G, BLOCK_D, BLOCK_D], tl.float32)
    sz = tl.zeros([G, BLOCK_D], tl.float32)
    nk = tl.zeros([G, BLOCK_N], tl.float32)
    start = split * rows_per_split
    end = tl.minimum(start + rows_per_split, n)
    kg64 = kg.to(tl.int64)
    for r0 in range(start, end, BLOCK_N):
        rows = r0 + tl.arange(0, BLOCK_N)
        rmask = rows < end
        rows64 = rows.to(tl.int64)
        w = tl.load(WT + kg64[:, None] * n + rows64[None, :], mask=gmask[:, None] & rmask[None, :], other=float("-inf"))
        lse = tl.load(LSE + rows, mask=rmask, other=0.0)
        r = tl.exp(w - lse[None, :])
        x = tl.load(X + rows64[:, None] * stride_x + cols[None, :], mask=rmask[:, None] & dmask[None, :], other=0.0)
        z = tl.where(dmask[None, None, :], x[None, :, :] - mu[:, None, :], 0.0)
        rz = z * r[:, :, None]
        acc = _dot(tl.permute(rz, (0, 2, 1)), z, acc, PREC)
        sz += tl.sum(rz, 1)
        nk += r
    base = split * K + kg64
    i = cols[:, None] * D + cols[None, :]
    tl.store(PZZ + base[:, None, None] * D * D + i[None, :, :], acc,
             mask=gmask[:, None, None] & (dmask[:, None] & dmask[None, :])[None, :, :])
    tl.store(PZ + base[:, None] * D + cols[None, :], sz, mask=gmask[:, None] & dmask[None, :])
    tl.store(PN + base, tl.sum(nk, 1), mask=gmask)
