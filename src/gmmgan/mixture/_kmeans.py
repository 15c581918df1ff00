"""k-means++ seeding and Lloyd iterations in torch, used to initialise the mixture.

Both run on the compute device and read the data through a DataSource, so they work for data
that is streamed from disk as well as for data held in (GPU) memory.
"""

from __future__ import annotations

import math

import torch

from gmmgan import distributed as gdist
from gmmgan.mixture._data import DataSource

# k-means++ is run on at most this many rows; Lloyd steps then use every row.
SEEDING_SAMPLE = 100_000


def sq_distances(X: torch.Tensor, centers: torch.Tensor, centers_sq=None, x_sq=None) -> torch.Tensor:
    """Squared Euclidean distances, shape (n, k), clamped at zero against rounding.

    ``x_sq`` (n, 1) and ``centers_sq`` (k,) may be passed in when the caller reuses them.
    """
    if centers_sq is None:
        centers_sq = centers.square().sum(1)
    if x_sq is None:
        x_sq = X.square().sum(1, keepdim=True)
    d2 = torch.addmm(centers_sq, X, centers.T, alpha=-2).add_(x_sq)
    return d2.clamp_min_(0.0)


def gather_rows(source: DataSource, indices: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rows ``indices`` (sorted or not) of the data, shifted, in the order given."""
    if source.resident is not None:
        return source.resident[indices.to(source.device)] - shift
    order = torch.argsort(indices)
    wanted = indices[order].cpu()
    out = torch.empty(len(indices), source.n_features, dtype=source.dtype, device=source.device)
    start, pos = 0, 0
    for block in source.chunks():
        stop = start + block.shape[0]
        hi = int(torch.searchsorted(wanted, torch.tensor(stop)))
        if hi > pos:
            out[pos:hi] = block[(wanted[pos:hi] - start).to(source.device)]
            pos = hi
        start = stop
    result = torch.empty_like(out)
    result[order.to(source.device)] = out
    return result - shift


def sample_rows(source: DataSource, n: int, generator: torch.Generator, shift: torch.Tensor) -> torch.Tensor:
    """``n`` distinct rows drawn uniformly at random (all rows, in a random order, if n >= N)."""
    n = min(n, source.n_samples)
    idx = torch.randperm(source.n_samples, generator=generator)[:n]
    return gather_rows(source, idx, shift)


def kmeans_plusplus(X: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """Greedy k-means++ seeding (Arthur & Vassilvitskii 2007, as in scikit-learn).

    Each new center is the best, by total potential, of ``2 + log(k)`` candidates drawn with
    probability proportional to the squared distance to the nearest chosen center.
    """
    n = X.shape[0]
    trials = 2 + int(math.log(k))
    first = int(torch.randint(n, (1,), generator=generator))
    centers = [X[first]]
    x_sq = X.square().sum(1, keepdim=True)  # once: it dominates for low-dimensional data
    closest = sq_distances(X, X[first : first + 1], x_sq=x_sq).squeeze(1)
    for _ in range(1, k):
        potential = closest.sum()
        if float(potential) <= 0:  # fewer distinct points than k: pick any remaining rows
            cand = torch.randint(n, (1,), generator=generator)
            centers.append(X[int(cand)])
            continue
        rand = torch.rand(trials, generator=generator, dtype=torch.float64).to(X.device) * potential.double()
        cand = torch.searchsorted(torch.cumsum(closest.double(), 0), rand).clamp_max_(n - 1)
        dist = torch.minimum(closest.unsqueeze(0), sq_distances(X, X[cand], x_sq=x_sq).T)
        best = int(torch.argmin(dist.sum(1)))
        closest = dist[best]
        centers.append(X[int(cand[best])])
    return torch.stack(centers)


def lloyd(
    source: DataSource,
    centers: torch.Tensor,
    shift: torch.Tensor,
    max_iter: int,
    tol: float,
) -> torch.Tensor:
    """Lloyd iterations over every row; empty clusters move to the points farthest from theirs.

    Stops when the squared center shift drops below ``tol`` times the mean feature variance
    (scikit-learn's KMeans convention) or after ``max_iter`` passes.
    """
    k, d = centers.shape
    centers = centers.clone()
    var_scale = None
    for _ in range(max_iter):
        sums = torch.zeros(k, d, dtype=torch.float64, device=centers.device)
        counts = torch.zeros(k, dtype=torch.float64, device=centers.device)
        far_d, far_x = [], []
        sq_sum = torch.zeros(d, dtype=torch.float64, device=centers.device)
        csq = centers.square().sum(1)
        for block in source.chunks():
            x = block - shift
            d2 = sq_distances(x, centers, csq)
            mind, labels = d2.min(1)
            sums.index_add_(0, labels, x.to(torch.float64))
            counts += torch.bincount(labels, minlength=k).to(torch.float64)
            top = torch.topk(mind, min(k, mind.shape[0]))
            far_d.append(top.values)
            far_x.append(x[top.indices])
            if var_scale is None:
                sq_sum += x.to(torch.float64).square().sum(0)
        if source.shard is not None:  # one rank's shard: sum over ranks (gmmgan.distributed)
            sums, counts, sq_sum = gdist.all_reduce_sums(sums, counts, sq_sum)
        if var_scale is None:
            var_scale = float(sq_sum.mean()) / source.n_global
        new = (sums / counts.clamp_min(1).unsqueeze(1)).to(centers.dtype)
        empty = torch.nonzero(counts == 0).flatten()
        if len(empty):
            far_d, far_x = torch.cat(far_d), torch.cat(far_x)
            if source.shard is not None:  # every rank picks the same farthest rows
                far_d, far_x = (gdist.all_gather_cat(t.to(gdist.comm_device())).to(t.device) for t in (far_d, far_x))
            far_all = far_x[torch.argsort(far_d, descending=True)]
            new[empty] = far_all[: len(empty)]
        moved = float((new - centers).square().sum())
        centers = new
        if moved <= tol * var_scale:
            break
    return centers


def nearest(source_block: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    """Index of the nearest center for every row of a (shifted) block."""
    return sq_distances(source_block, centers).argmin(1)


def padded_index(ks: list[int], device) -> torch.Tensor:
    """(C, max K) rows of the stacked components of each of C problems; padding points past the end.

    Laying C k-means problems out as a (C, max K) grid turns every per-problem reduction (the
    nearest center of each problem) into one ordinary reduction over the last axis.
    """
    kmax, total = max(ks), sum(ks)
    starts = torch.tensor([0] + ks[:-1], device=device).cumsum(0)
    col = torch.arange(kmax, device=device)
    ks_t = torch.tensor(ks, device=device)
    return torch.where(col < ks_t.unsqueeze(1), starts.unsqueeze(1) + col, total)


def assign_batched(x: torch.Tensor, centers_pad: torch.Tensor, csq_pad: torch.Tensor, c: int, distances=False):
    """Index within its problem of the nearest center, (rows, C); with ``distances``, also the
    squared distance to it, as a pair (distances, labels).

    ``centers_pad`` (C * kmax, D) is the padded grid of :func:`padded_index`; padding rows have
    ``csq_pad`` = inf, so they are never nearest. The argmin leaves out ||x||^2 (the same for
    every center): one pass less over the (rows, C * kmax) array.
    """
    score = torch.addmm(csq_pad, x, centers_pad.T, alpha=-2).view(x.shape[0], c, -1)
    if not distances:
        return score.argmin(2)
    mind, lab = score.min(2)
    return mind.add_(x.square().sum(1, keepdim=True)).clamp_min_(0.0), lab


def lloyd_batched(
    source: DataSource,
    centers: torch.Tensor,
    ks: list[int],
    shift: torch.Tensor,
    max_iter: int,
    tol: float,
) -> torch.Tensor:
    """:func:`lloyd` for C independent problems at once; ``centers`` stacked (sum ks, D).

    Each problem stops on its own criterion (the same as :func:`lloyd`'s) and then drops out, so
    every problem ends where :func:`lloyd` alone would have ended. Per pass, the distances to the
    centers of every active problem are one matrix product.
    """
    dev, dtype = centers.device, centers.dtype
    total, d = centers.shape
    centers = centers.clone()
    index_all = padded_index(ks, dev)
    ks_t = torch.tensor(ks, device=dev)
    active = torch.arange(len(ks), device=dev)
    var_scale = None
    for _ in range(max_iter):
        if len(active) == 0:
            break
        c = len(active)
        kmax = int(ks_t[active].max())
        index = index_all[active, :kmax].reshape(-1)  # (c * kmax,) rows of centers, `total` = padding
        real = index < total
        ext = torch.cat([centers, centers.new_zeros(1, d)])
        cpad = ext[index]
        csq = torch.where(real, cpad.square().sum(1), torch.inf)
        sums = torch.zeros(c * kmax, d, dtype=torch.float64, device=dev)
        counts = torch.zeros(c * kmax, dtype=torch.float64, device=dev)
        offsets = torch.arange(c, device=dev) * kmax
        sq_sum = torch.zeros(d, dtype=torch.float64, device=dev)
        for block in source.chunks():
            x = block - shift
            glab = (assign_batched(x, cpad, csq, c) + offsets).reshape(-1)
            sums.index_add_(0, glab, x.to(torch.float64).repeat_interleave(c, dim=0))
            counts += torch.bincount(glab, minlength=c * kmax).to(torch.float64)
            if var_scale is None:
                sq_sum += x.to(torch.float64).square().sum(0)
        if var_scale is None:
            var_scale = float(sq_sum.mean()) / source.n_samples
        new = (sums / counts.clamp_min(1).unsqueeze(1)).to(dtype)
        empty = (counts == 0) & real
        if bool(empty.any()):  # rare: as lloyd, empty clusters move to the farthest points
            far_d, far_x = _farthest(source, shift, cpad, csq, c, kmax)
            for j in torch.nonzero(empty.view(c, kmax).any(1)).flatten().tolist():
                rows = torch.nonzero(empty.view(c, kmax)[j]).flatten() + j * kmax
                order = torch.argsort(far_d[:, j], descending=True)[: len(rows)]
                new[rows] = far_x[order, j]
        moved = (new - cpad).to(torch.float64).square().sum(1).view(c, kmax).sum(1)  # padding: 0 - 0
        centers[index[real]] = new[real]
        active = active[moved > tol * var_scale]
    return centers


def _farthest(source, shift, cpad, csq, c, kmax):
    """(distances, rows): each problem's kmax rows farthest from their nearest center."""
    far_d, far_x = [], []
    for block in source.chunks():
        x = block - shift
        mind = assign_batched(x, cpad, csq, c, distances=True)[0]
        top = torch.topk(mind, min(kmax, mind.shape[0]), dim=0)
        far_d.append(top.values)
        far_x.append(x[top.indices])  # (kk, c, D)
    return torch.cat(far_d), torch.cat(far_x)
