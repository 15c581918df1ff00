"""Initial mixture parameters: k-means++ / k-means / random / random_from_data, or the user's."""

from __future__ import annotations

import torch

from gmmgan import distributed as gdist
from gmmgan.mixture import _kmeans, _validation
from gmmgan.mixture._covariance import COVARIANCES
from gmmgan.mixture._data_source import DataSource
from gmmgan.mixture._em_state import KMEANSPP_LLOYD_STEPS, _Shifted, _State, _Stats


def initial_responsibilities(init_params: str, k: int, data: _Shifted, source: DataSource, shift, generator):
    """(iterable of (shifted block, responsibilities (rows, K)), anchor (K, D)) for ``init_params``.

    'k-means++': k-means++ seeding on at most SEEDING_SAMPLE rows, then a few Lloyd steps over all
    rows; 'kmeans': Lloyd to convergence; both give one-hot responsibilities of the nearest
    center. 'random': uniform random responsibilities. 'random_from_data': K distinct data points,
    each the only member of its component, every other row a member of none (scikit-learn's
    semantics for all four; the rows of no component still enter the tied covariance, whose
    statistic sums x x^T over all rows, as in scikit-learn's formula).

    For a shard (``source.shard``, data spread over processes) every rank makes the same random
    draws as one process over the whole data would, so the initialisation equals the
    single-process one: the seeding rows and 'random_from_data' points are drawn by global row
    index and assembled on every rank by one all-reduce of (rows, D) (each rank fills the rows it
    owns, zeros elsewhere; 12.8 MB for 100k x 32 float32), Lloyd sums its statistics over ranks,
    and 'random' draws the random numbers of all N rows on every rank, keeping its own (O(N K)
    uniform draws per rank, as one process makes). The returned blocks are this rank's.
    """
    n, dtype, dev = source.n_global, source.dtype, source.device
    if init_params in ("k-means++", "kmeans"):
        seeds = _global_rows(source, torch.randperm(n, generator=generator)[: _kmeans.SEEDING_SAMPLE], shift)
        centers = _kmeans.kmeans_plusplus(seeds, k, generator)
        steps = KMEANSPP_LLOYD_STEPS if init_params == "k-means++" else 300
        centers = _kmeans.lloyd(source, centers, shift, max_iter=steps, tol=1e-4)
        eye = torch.eye(k, dtype=dtype, device=dev)
        blocks = ((x, eye[_kmeans.nearest(x, centers)]) for x in data.chunks())
        anchor = centers
    elif init_params == "random":
        def draw(rows):
            return torch.rand(rows, k, generator=generator, dtype=torch.float64)

        def skip(rows):  # draws other ranks' rows use, so the stream stays that of one process
            for start in range(0, rows, source.chunk_size):
                draw(min(source.chunk_size, rows - start))

        def random_blocks():
            before = source.shard.offset if source.shard is not None else 0
            skip(before)
            for x in data.chunks():
                r = draw(x.shape[0]).to(device=dev, dtype=dtype)
                yield x, r / r.sum(1, keepdim=True)
            skip(n - before - source.n_samples)
        blocks, anchor = random_blocks(), torch.zeros(k, source.n_features, dtype=dtype, device=dev)
    else:  # random_from_data: K distinct data points, each the only member of its component
        chosen = torch.randperm(n, generator=generator)[:k]
        anchor = _global_rows(source, chosen, shift)

        def one_hot_blocks():
            offset = source.shard.offset if source.shard is not None else 0
            for x in data.chunks():
                r = torch.zeros(x.shape[0], k, dtype=dtype, device=dev)
                local = chosen - offset
                mine = (local >= 0) & (local < x.shape[0])
                if bool(mine.any()):
                    r[local[mine].to(dev), torch.nonzero(mine).flatten().to(dev)] = 1.0
                offset += x.shape[0]
                yield x, r
        blocks = one_hot_blocks()
    return blocks, anchor


def responsibility_stats(blocks, anchor, cov) -> _Stats:
    """Statistics (float64) of (shifted block, responsibilities) pairs, around ``anchor``.

    What an M-step needs from initial responsibilities; shared by both estimators.
    """
    f64 = torch.float64
    nk = sx = stat = None
    for x, resp in blocks:
        parts = (resp.sum(0, dtype=f64), (resp.mT @ x).to(f64), cov.accumulate(x, resp, anchor).to(f64))
        if nk is None:
            nk, sx, stat = parts
        else:
            nk, sx, stat = nk + parts[0], sx + parts[1], stat + parts[2]
    return _Stats(nk, sx, stat, anchor.to(f64))


def _global_rows(source: DataSource, indices: torch.Tensor, shift) -> torch.Tensor:
    """Rows ``indices`` (global row numbers) of the data, shifted, in that order, on every rank."""
    if source.shard is None:
        return _kmeans.gather_rows(source, indices, shift)
    lo = source.shard.offset
    mine = (indices >= lo) & (indices < lo + source.n_samples)
    out = torch.zeros(len(indices), source.n_features, dtype=source.dtype, device=source.device)
    if bool(mine.any()):
        out[mine.to(source.device)] = _kmeans.gather_rows(source, indices[mine] - lo, shift)
    return gdist.all_reduce_sums(out)[0]  # x + 0 is exact: every rank gets the owner's rows


class InitializationMixin:
    """How GaussianMixture builds its starting point (scikit-learn's semantics)."""

    def _initial_state(self, data: _Shifted, source: DataSource, summary, shift, generator) -> _State:
        k, d = self.n_components, source.n_features
        dtype, dev = source.dtype, source.device
        cov = COVARIANCES[self.covariance_type]
        user = (self.weights_init, self.means_init, self.precisions_init)
        state = None
        if any(v is None for v in user):
            state = self._state_from_init_params(data, source, shift, generator, cov)
        weights = state.weights if self.weights_init is None else _validation.check_weights(self.weights_init, k, dtype, dev)
        means = state.means if self.means_init is None else _validation.check_means(self.means_init, k, d, dtype, dev) - shift
        if self.precisions_init is None:
            covs, prec_chol = state.covariances, state.prec_chol
        else:
            prec = _validation.check_precisions(self.precisions_init, self.covariance_type, k, d, torch.float64, dev)
            prec_chol = cov.from_precisions(prec)
            covs = cov.covariances_from_precision_cholesky(prec_chol).to(dtype)
            prec_chol = prec_chol.to(dtype)
        return _State(weights, means, covs, prec_chol)

    def _state_from_init_params(self, data: _Shifted, source: DataSource, shift, generator, cov) -> _State:
        k, n = self.n_components, source.n_global
        dtype = source.dtype
        blocks, anchor = initial_responsibilities(self.init_params, k, data, source, shift, generator)
        stats = responsibility_stats(blocks, anchor, cov)
        if source.shard is not None:
            nk, sx, stat = gdist.all_reduce_sums(stats.nk, stats.sx, stats.stat)
            stats = _Stats(nk, sx, stat, stats.anchor)
        eps = torch.finfo(dtype).eps
        nk = stats.nk + 10 * eps
        means = stats.sx / nk.unsqueeze(1)
        covs = cov.covariances(stats.stat, stats.nk, nk, means, stats.sx, stats.anchor, n, self.reg_covar)
        # As scikit-learn: initial weights are counts over n_samples (not renormalised).
        return self._finish_state(nk / n, means, covs, dtype, cov)
