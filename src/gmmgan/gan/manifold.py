"""A UMAP-style manifold map in pure torch: the "manifold step" of N2D clustering.

N2D (McConville et al., 2019) clusters the *local manifold* of an autoencoder's codes: UMAP maps the
codes (N, d) to a few coordinates (N, m) in which a Gaussian mixture then finds the classes (0.979
accuracy on MNIST with n_neighbors=20, min_dist=0, m=10). :class:`ManifoldMap` does UMAP's steps with
torch tensors on the codes' device (CPU or CUDA, the same code):

1. exact k nearest neighbours, in row chunks of squared distances (memory stays bounded);
2. UMAP's smooth kNN distances: rho_i = distance to the nearest neighbour, sigma_i by binary search
   so that sum_j exp(-(d_ij - rho_i) / sigma_i) = log2(n_neighbors), for all points at once;
3. the fuzzy union P = A + A^T - A o A^T as an edge list;
4. a spectral initialisation (leading non-trivial eigenvectors of D^-1/2 P D^-1/2), scaled to
   [0, 10] per coordinate;
5. UMAP's layout optimisation: cross-entropy with the curve 1 / (1 + a d^2b) fitted from min_dist,
   attraction along edges, 5 negative samples per edge, gradients clipped to +-4, learning rate
   decaying linearly from 1.

Differences from umap-learn
---------------------------
- Each epoch is one vectorised step: every edge due in that epoch (umap-learn's epochs_per_sample
  schedule, kept exactly) computes its update from the positions at the start of the epoch and
  all updates are summed (as GPU UMAPs do), instead of umap-learn's sequential Hogwild updates in
  which later edges see earlier moves. Negative samples see the same start-of-epoch positions.
- Exactly ``negative_sample_rate`` (5) negatives per processed edge, drawn uniformly.
- The spectral step is a block subspace iteration (with Rayleigh-Ritz) on a graph with a weak
  uniform "teleport" term added (regularised spectral embedding), instead of ARPACK on the
  plain graph; the teleport makes disconnected graphs a non-degenerate problem, so no separate
  multi-component layout is needed.
- local_connectivity=1, set_op_mix_ratio=1, spread=1, repulsion_strength=1 are fixed.
- :meth:`transform` is the weighted average that umap-learn uses as its transform's starting point,
  with no further optimisation epochs (see there for the weights).
"""

from __future__ import annotations

import functools
import math
import warnings

import numpy as np
import torch
from torch import nn

from gmmgan.gan.embed import ResizableBuffersMixin

__all__ = ["ManifoldMap", "find_ab_params", "knn", "smooth_knn_dist"]

_CLIP = 4.0
_NEG_RATE = 5
# Teleport weight of the spectral step, relative to a point's degree (see _spectral_init).
_TELEPORT = 1e-3


@functools.lru_cache(maxsize=32)
def find_ab_params(min_dist: float, spread: float = 1.0) -> tuple[float, float]:
    """UMAP's curve 1 / (1 + a x^(2b)) fitted by least squares to its target (as umap's find_ab_params).

    The target is 1 for x < min_dist and exp(-(x - min_dist) / spread) beyond, on 300 points in
    [0, 3 spread]; the fit is Levenberg-Marquardt from (a, b) = (1, 1), like scipy's curve_fit.

    Returns
    -------
    a, b : float
    """
    # numpy: 300 points, where torch's per-op overhead (and a busy thread pool) would dominate.
    x = np.linspace(0, 3 * spread, 300)
    y = np.where(x < min_dist, 1.0, np.exp(-(x - min_dist) / spread))
    logx = np.log(np.where(x > 0, x, 1.0))
    p, lam = np.array([1.0, 1.0]), 1e-3

    def residual(p):
        return 1.0 / (1.0 + p[0] * x ** (2 * p[1])) - y

    r = residual(p)
    for _ in range(200):
        x2b = x ** (2 * p[1])
        den = (1.0 + p[0] * x2b) ** 2
        jac = np.stack([-x2b / den, -p[0] * x2b * 2 * logx / den], 1)
        jtj, jtr = jac.T @ jac, jac.T @ r
        step = np.linalg.solve(jtj + lam * np.diag(np.diag(jtj)), -jtr)
        r_new = residual(p + step)
        if (r_new**2).sum() < (r**2).sum():
            p, r, lam = p + step, r_new, lam / 3
            if np.abs(step).max() < 1e-12:
                break
        else:
            lam *= 3
    return float(p[0]), float(p[1])


def knn(query: torch.Tensor, ref: torch.Tensor, k: int, exclude_self: bool = False,
        max_entries: int = 2**26) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact k nearest neighbours of each query row among the rows of ``ref`` (Euclidean).

    Parameters
    ----------
    query : Tensor (M, d)
    ref : Tensor (S, d)
    k : int
    exclude_self : bool
        ``query`` is ``ref``: a row is not its own neighbour.
    max_entries : int
        Bound on the entries of one block of squared distances (rows x S), which bounds memory.

    Returns
    -------
    dist : Tensor (M, k), ascending
    idx : Tensor (M, k), int64 rows of ``ref``
    """
    m, s = query.shape[0], ref.shape[0]
    rows = max(1, min(2048, max_entries // max(s, 1)))
    ref_sq = ref.square().sum(1)
    dists, idxs = [], []
    for start in range(0, m, rows):
        q = query[start : start + rows]
        d2 = q.square().sum(1, keepdim=True) + ref_sq - 2.0 * (q @ ref.T)
        if exclude_self:
            r = torch.arange(q.shape[0], device=q.device)
            d2[r, r + start] = float("inf")
        idx = d2.topk(k, dim=1, largest=False).indices
        # The matmul form loses precision for close points; the k distances are recomputed exactly.
        d = (q[:, None, :] - ref[idx]).norm(dim=2)
        d, order = d.sort(dim=1)
        dists.append(d)
        idxs.append(idx.gather(1, order))
    return torch.cat(dists), torch.cat(idxs)


def smooth_knn_dist(dist: torch.Tensor, target: float, n_iter: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """UMAP's rho and sigma for each row of neighbour distances, by a vectorised binary search.

    rho_i is the smallest positive distance of row i (0 if none); sigma_i solves
    sum_j f(d_ij - rho_i) = target with f(t) = exp(-t / sigma) for t > 0 and 1 otherwise, then is
    kept above 1e-3 times the row's mean distance (umap's MIN_K_DIST_SCALE) so duplicates cannot
    make it vanish.

    Parameters
    ----------
    dist : Tensor (N, k), non-negative
    target : float
        log2(n_neighbors) in UMAP.

    Returns
    -------
    rho, sigma : Tensors (N,), float64
    """
    d = dist.double()
    pos = torch.where(d > 0, d, torch.full_like(d, float("inf")))
    rho = pos.min(1).values
    rho = torch.where(torch.isfinite(rho), rho, torch.zeros_like(rho))
    t = d - rho[:, None]
    lo, hi = torch.zeros_like(rho), torch.full_like(rho, float("inf"))
    mid = torch.ones_like(rho)
    for _ in range(n_iter):
        psum = torch.where(t > 0, torch.exp(-t / mid[:, None]), torch.ones_like(t)).sum(1)
        high = psum > target
        hi = torch.where(high, mid, hi)
        lo = torch.where(high, lo, mid)
        mid = torch.where(torch.isinf(hi), mid * 2, (lo + hi) / 2)
    mean_row, mean_all = d.mean(1), d.mean()
    floor = 1e-3 * torch.where(rho > 0, mean_row, mean_all)
    return rho, torch.maximum(mid, floor).clamp_min(1e-12)


def _memberships(dist: torch.Tensor, target: float) -> torch.Tensor:
    """exp(-(d - rho) / sigma) (1 up to the nearest neighbour), the weights of UMAP's fuzzy set."""
    rho, sigma = smooth_knn_dist(dist, target)
    t = (dist.double() - rho[:, None]).clamp_min(0)
    return torch.exp(-t / sigma[:, None]).to(dist.dtype)


def _fuzzy_union(rows: torch.Tensor, cols: torch.Tensor, w: torch.Tensor, n: int):
    """Edges (i, j, p) of P = A + A^T - A o A^T, both directions, sorted by (i, j)."""
    keys = torch.cat([rows * n + cols, cols * n + rows])
    vals = torch.cat([w, w])
    uniq, inv = torch.unique(keys, return_inverse=True)
    total = torch.zeros(uniq.shape[0], dtype=w.dtype, device=w.device).index_add_(0, inv, vals)
    # A and A^T each hold a key at most once, so a product over a key is a_ij * a_ji where both exist.
    prod = torch.ones_like(total).scatter_reduce_(0, inv, vals, reduce="prod")
    count = torch.zeros_like(total).index_add_(0, inv, torch.ones_like(vals))
    p = torch.where(count > 1, total - prod, total)
    return uniq // n, uniq % n, p


def _spectral_init(heads, tails, p, n, m, gen, n_iter=150, tol=1e-6):
    """(n, m) leading non-trivial eigenvectors of D^-1/2 (P + teleport) D^-1/2, or None if they fail.

    The teleport adds c/n to every entry of P (c = _TELEPORT x mean degree): a weak link between
    all points, so the trivial eigenvector is unique even when P has several connected components,
    whose indicators then come next. Subspace iteration runs on (I + M) / 2, whose spectrum is in
    [0, 1], with a block larger than needed for faster convergence of the leading vectors, until
    the leading Ritz values change by less than ``tol`` in 20 products (or 2 n_iter products).
    """
    dev = p.device
    deg_p = torch.zeros(n, dtype=p.dtype, device=dev).index_add_(0, heads, p)
    c = _TELEPORT * float(deg_p.mean())
    inv_sqrt = (deg_p + c).rsqrt()
    a = torch.sparse_coo_tensor(torch.stack([heads, tails]), p * inv_sqrt[heads] * inv_sqrt[tails], (n, n),
                                check_invariants=False).coalesce()

    def op(x):
        y = inv_sqrt[:, None] * x
        mx = torch.sparse.mm(a, x) + (c / n) * inv_sqrt[:, None] * y.sum(0, keepdim=True)
        return 0.5 * (x + mx)

    block = min(n, 2 * (m + 1) + 4)
    x = torch.randn(n, block, generator=gen, device=dev, dtype=p.dtype)
    x, _ = torch.linalg.qr(x)
    prev = None
    for it in range(n_iter):
        # Two products per QR: the spectrum is in [0, 1], so two steps cannot collapse the block.
        x, _ = torch.linalg.qr(op(op(x)))
        if it % 10 == 9:
            evals = torch.linalg.eigvalsh(x.T @ op(x))[-(m + 1):]
            if prev is not None and float((evals - prev).abs().max()) < tol:
                break
            prev = evals
    evals, evecs = torch.linalg.eigh(x.T @ op(x))
    vecs = x @ evecs.flip(1)
    out = vecs[:, 1 : m + 1]
    if not bool(torch.isfinite(out).all()) or out.shape[1] < m or bool((out.std(0) < 1e-12).any()):
        return None
    return out


def _scale_to_box(y: torch.Tensor) -> torch.Tensor:
    lo, hi = y.min(0).values, y.max(0).values
    return 10.0 * (y - lo) / (hi - lo).clamp_min(1e-12)


class ManifoldMap(ResizableBuffersMixin, nn.Module):
    """Fit on codes (N, d); coordinates (N, m) of the training codes; transform() for new codes; inverse() back.

    Parameters
    ----------
    n_components : int, default=10
        m, the dimension of the coordinates; less than d.
    n_neighbors : int, default=20
        Neighbourhood size, counting the point itself as umap-learn does (so 19 other points).
    min_dist : float, default=0.0
        UMAP's minimum distance of the low-dimensional curve; 0 packs clusters tightly (N2D's choice).
    n_epochs : int, default=200
        Layout optimisation epochs.
    seed : int, default=0
        Seeds the stored subset, the spectral start, the init noise and the negative samples; on the
        CPU the same seed gives the same coordinates bit for bit (CUDA sums edges atomically).
    max_stored : int, default=20000
        At most this many training points (a seeded subset of larger fits) are kept for
        :meth:`transform` and :meth:`inverse`.

    Attributes
    ----------
    codes : buffer (S, d), the stored training codes (float32)
    coords : buffer (S, m), their coordinates
    embedding_ : Tensor (N, m), coordinates of all training codes of the last fit (not in state_dict)
    """

    def __init__(self, n_components: int = 10, n_neighbors: int = 20, min_dist: float = 0.0,
                 n_epochs: int = 200, seed: int = 0, max_stored: int = 20000):
        super().__init__()
        for name, v, lo in (("n_components", n_components, 1), ("n_neighbors", n_neighbors, 2),
                            ("n_epochs", n_epochs, 1), ("max_stored", max_stored, 2)):
            if not isinstance(v, int) or isinstance(v, bool) or v < lo:
                raise ValueError(f"{name} must be an int >= {lo}, got {v!r}.")
        if not (isinstance(min_dist, (int, float)) and 0.0 <= min_dist < 3.0):
            raise ValueError(f"min_dist must be a number in [0, 3), got {min_dist!r} (UMAP uses 0 to 0.99).")
        if max_stored <= n_neighbors:
            raise ValueError(f"max_stored={max_stored} must exceed n_neighbors={n_neighbors}.")
        self.n_components, self.n_neighbors, self.min_dist = n_components, n_neighbors, float(min_dist)
        self.n_epochs, self.seed, self.max_stored = n_epochs, int(seed), max_stored
        self.a, self.b = find_ab_params(self.min_dist)
        self.register_buffer("codes", torch.empty(0, 0))
        self.register_buffer("coords", torch.empty(0, 0))
        self.embedding_: torch.Tensor | None = None

    @property
    def fitted(self) -> bool:
        return self.codes.numel() > 0

    def _check_codes(self, codes, what: str, n_features: int | None = None) -> torch.Tensor:
        if not isinstance(codes, torch.Tensor) or codes.dim() != 2:
            shape = tuple(codes.shape) if isinstance(codes, torch.Tensor) else type(codes).__name__
            raise ValueError(f"{what} must be a 2-D tensor (N, features), got {shape}; reshape it to (N, -1).")
        if n_features is not None and codes.shape[1] != n_features:
            raise ValueError(f"{what} has {codes.shape[1]} features but this ManifoldMap was fitted on "
                             f"{n_features}; pass tensors of shape (M, {n_features}).")
        if not bool(torch.isfinite(codes).all()):
            raise ValueError(f"{what} contains NaN or infinite values; remove or fix those rows first.")
        return codes.float()

    @torch.no_grad()
    def fit(self, codes: torch.Tensor, callback=None) -> ManifoldMap:
        """Learn the coordinates of ``codes`` (N, d); returns self.

        Parameters
        ----------
        codes : Tensor (N, d), N > n_neighbors, d > n_components
        callback : callable(done: int, total: int), optional
            Called every few layout epochs and at the end, e.g. for a progress bar.
        """
        x = self._check_codes(codes, "codes")
        n, d = x.shape
        if n < self.n_neighbors + 1:
            raise ValueError(f"fit got {n} points but n_neighbors={self.n_neighbors} needs at least "
                             f"{self.n_neighbors + 1}; use more points or a smaller n_neighbors.")
        if self.n_components >= d:
            raise ValueError(f"n_components={self.n_components} must be less than the code dimension {d}; "
                             f"use n_components <= {d - 1}.")
        dev = x.device
        gen = torch.Generator(device=dev).manual_seed(self.seed)
        k = self.n_neighbors - 1
        dist, idx = knn(x, x, k, exclude_self=True)
        w = _memberships(dist, math.log2(self.n_neighbors))
        rows = torch.arange(n, device=dev).repeat_interleave(k)
        heads, tails, p = _fuzzy_union(rows, idx.reshape(-1), w.reshape(-1), n)

        y = _spectral_init(heads, tails, p.double(), n, self.n_components, gen)
        if y is None:
            warnings.warn("ManifoldMap: the spectral initialisation failed; starting from a random layout.",
                          RuntimeWarning, stacklevel=2)
            y = torch.rand(n, self.n_components, generator=gen, device=dev, dtype=torch.float64)
        y = _scale_to_box(y.float())
        y = y + 1e-4 * torch.randn(y.shape, generator=gen, device=dev)
        y = self._layout(y, heads, tails, p, gen, callback)

        self.embedding_ = y
        keep = torch.arange(n, device=dev)
        if n > self.max_stored:
            keep = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed))[: self.max_stored]
            keep = keep.sort().values.to(dev)
        self.codes, self.coords = x[keep].clone(), y[keep].clone()
        return self

    def _layout(self, y, heads, tails, p, gen, callback):
        """UMAP's stochastic layout, one vectorised update per epoch (module docstring)."""
        n, total = y.shape[0], self.n_epochs
        a, b = self.a, self.b
        # umap-learn drops edges that would be sampled less than once in the whole run.
        keep = p >= p.max() / total
        heads, tails, p = heads[keep], tails[keep], p[keep].float()
        eps = p.max() / p  # epochs_per_sample: an edge is processed every eps epochs
        every = max(1, total // 20)
        for epoch in range(1, total + 1):
            alpha = 1.0 - (epoch - 1) / total
            due = torch.floor(epoch / eps) > torch.floor((epoch - 1) / eps)
            h, t = heads[due], tails[due]
            diff = y[h] - y[t]
            d2 = diff.square().sum(1, keepdim=True)
            coef = -2.0 * a * b * d2.clamp_min(1e-12).pow(b - 1.0) / (1.0 + a * d2.pow(b))
            g_att = (torch.where(d2 > 0, coef, torch.zeros_like(coef)) * diff).clamp(-_CLIP, _CLIP)
            hn = h.repeat_interleave(_NEG_RATE)
            kn = torch.randint(0, n, (hn.shape[0],), generator=gen, device=y.device)
            diff_n = y[hn] - y[kn]
            d2n = diff_n.square().sum(1, keepdim=True)
            coef_n = 2.0 * b / ((1e-3 + d2n) * (1.0 + a * d2n.pow(b)))
            g_rep = (coef_n * diff_n).clamp(-_CLIP, _CLIP)
            # umap-learn pushes a coincident non-self sample by +4 on every axis.
            g_rep = torch.where(d2n > 0, g_rep, torch.where((hn != kn)[:, None], _CLIP, 0.0))
            step = torch.zeros_like(y)
            step.index_add_(0, h, alpha * g_att).index_add_(0, t, -alpha * g_att).index_add_(0, hn, alpha * g_rep)
            y = y + step
            if callback is not None and (epoch % every == 0 or epoch == total):
                callback(epoch, total)
        return y

    def fit_transform(self, codes: torch.Tensor, callback=None) -> torch.Tensor:
        """Fit on ``codes`` (N, d) and return their coordinates (N, m)."""
        return self.fit(codes, callback).embedding_

    def _check_fitted(self, what: str) -> None:
        if not self.fitted:
            raise ValueError(f"this ManifoldMap is not fitted yet; call fit(codes) before {what}().")

    def _average(self, query, ref, values):
        """Average of ``values`` of the k nearest rows of ``ref``, weighted by UMAP memberships."""
        k = min(self.n_neighbors, ref.shape[0])
        dist, idx = knn(query, ref, k)
        w = _memberships(dist, math.log2(k))
        w = w / w.sum(1, keepdim=True)
        return (w[:, :, None] * values[idx]).sum(1)

    @torch.no_grad()
    def transform(self, codes: torch.Tensor) -> torch.Tensor:
        """Coordinates of new codes: (M, d) -> (M, m), on the input's device.

        Each code gets the average of the coordinates of its n_neighbors nearest stored training
        codes, weighted by UMAP's memberships exp(-(d - rho) / sigma), with rho and sigma found for
        that code as in fit: they adapt to the local density (a global softmax temperature would
        not), and the nearest neighbour always has weight 1, so the average is always defined.
        umap-learn starts its transform from the same kind of average (with rho = 0) and then runs
        a few more epochs; this stops at the average.
        """
        self._check_fitted("transform")
        x = self._check_codes(codes, "codes", self.codes.shape[1])
        # In the stored rows' dtype, returned in the input's: a float64 caller meets float32 rows.
        return self._average(x.to(self.codes.device, self.codes.dtype), self.codes, self.coords).to(codes.device, codes.dtype)

    @torch.no_grad()
    def inverse(self, coords: torch.Tensor) -> torch.Tensor:
        """Codes for coordinates: (M, m) -> (M, d), on the input's device.

        The weighted average (weights as in :meth:`transform`) of the stored training codes whose
        coordinates are nearest: a GMM sample in coordinate space decodes to a code near the data.
        """
        self._check_fitted("inverse")
        y = self._check_codes(coords, "coords", self.coords.shape[1])
        return self._average(y.to(self.coords.device, self.coords.dtype), self.coords, self.codes).to(coords.device, coords.dtype)

    def extra_repr(self) -> str:
        return (f"n_components={self.n_components}, n_neighbors={self.n_neighbors}, min_dist={self.min_dist}, "
                f"n_epochs={self.n_epochs}, seed={self.seed}, stored={self.codes.shape[0]}")
