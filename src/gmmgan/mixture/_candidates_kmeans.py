"""Lloyd iterations for many k-means problems at once (the starting points of model selection).

Model selection initialises every candidate K with k-means; run one candidate after another,
those are K_max small Lloyd runs, each a loop of small kernels. Here each pass over the data
finds, for every row, the nearest center of every candidate with a few matrix products: the
candidates are laid out as (candidates, max K) grids of centers (a few groups of similar K, so
that little of the grid is padding), and a reduction over the last axis gives every
candidate's nearest center at once.
"""

from __future__ import annotations

import itertools
import math

import torch

from gmmgan.mixture._data_source import DataSource

# At most this many groups of candidates of similar K, each padded to its largest K.
MAX_GROUPS = 4


def candidate_groups(c: int) -> list[tuple[int, int]]:
    """(lo, hi) ranges cutting C candidates (ascending K) into up to MAX_GROUPS groups of similar K.

    The (candidates, max K) grid layouts here and in :mod:`gmmgan.mixture._candidates_em` pad each
    group to its largest K; a group per 4 candidates keeps that padding small.
    """
    n_groups = min(MAX_GROUPS, max(1, c // 4))
    bounds = [round(g * c / n_groups) for g in range(n_groups + 1)]
    return list(itertools.pairwise(bounds))


class NearestCenters:
    """The nearest center of each of C problems, for rows of (shifted) data.

    ``centers`` (T, D) holds the centers of all problems one after another; problem i owns rows
    ``starts[i] : starts[i] + ks[i]`` (``ks`` ascending). Distances are computed in float32
    (float64 data too): it only decides which center a row goes to, and a row within rounding
    of two centers may go to either; sums and centers stay in the data's dtype. That halves the
    cost of the pass, the largest part of the initialisation.
    """

    def __init__(self, centers: torch.Tensor, ks: list[int], starts: list[int]):
        dev = centers.device
        self.dtype = torch.float32 if centers.dtype == torch.float64 else centers.dtype
        c = len(ks)
        self.groups = []
        for lo, hi in candidate_groups(c):
            kg = max(ks[lo:hi])
            k_t = torch.tensor(ks[lo:hi], device=dev).unsqueeze(1)
            st = torch.tensor(starts[lo:hi], device=dev)
            col = torch.arange(kg, device=dev)
            real = (col < k_t).reshape(-1)
            rows = (st.unsqueeze(1) + col).reshape(-1)
            grid = torch.where(real.unsqueeze(1), centers[rows.clamp_max(centers.shape[0] - 1)], 0.0).to(self.dtype)
            # Padding never wins: its squared norm is +inf.
            csq = torch.where(real, grid.square().sum(1), math.inf)
            self.groups.append((grid, csq, hi - lo, kg, st))

    def labels(self, x: torch.Tensor, distances: bool = False):
        """Row of ``centers`` nearest to each row for each problem, (rows, C); with
        ``distances``, (squared distances (rows, C), labels). The argmin leaves out ||x||^2
        (the same for every center): one pass less over the (rows, C * max K) scores."""
        xl = x.to(self.dtype)
        labs, dists = [], []
        for grid, csq, cg, kg, st in self.groups:
            score = torch.addmm(csq, xl, grid.T, alpha=-2).view(x.shape[0], cg, kg)
            if distances:
                mind, lab = score.min(2)
                dists.append(mind)
            else:
                lab = score.argmin(2)
            labs.append(lab.add_(st))
        lab = torch.cat(labs, 1)
        if not distances:
            return lab
        d2 = torch.cat(dists, 1).add_(xl.square().sum(1, keepdim=True)).clamp_min_(0.0)
        return d2, lab


def lloyd_candidates(
    source: DataSource,
    centers: torch.Tensor,
    ks: list[int],
    shift: torch.Tensor,
    max_iter: int,
    tol: float,
) -> torch.Tensor:
    """:func:`gmmgan.mixture._kmeans.lloyd` for C problems at once; ``centers`` (sum ks, D), problem after problem.

    ``ks`` ascending. Each problem stops on lloyd's own criterion (squared center shift below
    ``tol`` times the mean feature variance) and then drops out; an empty cluster moves to the
    points farthest from their centers, as in lloyd.
    """
    dev, dtype = centers.device, centers.dtype
    total, d = centers.shape
    f64 = torch.float64
    starts = [sum(ks[:i]) for i in range(len(ks))]
    centers = centers.clone()
    active = list(range(len(ks)))
    var_scale = None
    for _ in range(max_iter):
        if not active:
            break
        ks_a, st_a = [ks[i] for i in active], [starts[i] for i in active]
        nearest = NearestCenters(centers, ks_a, st_a)
        sums = torch.zeros(total, d, dtype=f64, device=dev)
        counts = torch.zeros(total, dtype=f64, device=dev)
        sq_sum = torch.zeros(d, dtype=f64, device=dev)
        for block in source.chunks():
            x = block - shift
            lab = nearest.labels(x).reshape(-1)
            sums.index_add_(0, lab, x.to(f64).repeat_interleave(len(active), dim=0))
            counts += torch.bincount(lab, minlength=total).to(f64)
            if var_scale is None:
                sq_sum += x.to(f64).square().sum(0)
        if var_scale is None:
            var_scale = float(sq_sum.mean()) / source.n_samples
        rows = torch.cat([torch.arange(a, a + k, device=dev) for a, k in zip(st_a, ks_a)])
        counts = counts[rows]
        new = (sums[rows] / counts.clamp_min(1).unsqueeze(1)).to(dtype)
        seg = torch.repeat_interleave(torch.arange(len(active), device=dev), torch.tensor(ks_a, device=dev))
        empty = counts == 0
        if bool(empty.any()):  # rare: as lloyd, empty clusters move to the farthest points
            far_d, far_x = _farthest(source, shift, nearest, max(ks_a))
            for j in torch.unique(seg[empty]).tolist():
                own = torch.nonzero(empty & (seg == j)).flatten()
                order = torch.argsort(far_d[:, j], descending=True)[: len(own)]
                new[own] = far_x[order, j]
        moved = torch.zeros(len(active), dtype=f64, device=dev).index_add_(
            0, seg, (new - centers[rows]).to(f64).square().sum(1)
        )
        centers[rows] = new
        active = [i for i, m in zip(active, moved.tolist()) if m > tol * var_scale]
    return centers


def _farthest(source, shift, nearest: NearestCenters, k: int):
    """(distances, rows), (k', C) and (k', C, D): each problem's rows farthest from their center."""
    far_d, far_x = [], []
    for block in source.chunks():
        x = block - shift
        mind = nearest.labels(x, distances=True)[0]
        top = torch.topk(mind, min(k, mind.shape[0]), dim=0)
        far_d.append(top.values)
        far_x.append(x[top.indices])
    return torch.cat(far_d), torch.cat(far_x)
