"""k-means++ seeding and Lloyd iterations in torch, used to initialise the mixture.

Both run on the compute device and read the data through a DataSource, so they work for data
that is streamed from disk as well as for data held in (GPU) memory.
"""

from __future__ import annotations

import math

import torch

from gmmgan import distributed as gdist
from gmmgan.mixture._data_source import DataSource

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
