"""k-means starting points for many candidate K at once (the initialisation of model selection).

Initialising K = 1..40 one candidate after another costs 40 k-means++ seedings and 40 runs of
Lloyd steps, each a loop of small kernels; on small data that is as slow as the EM itself. Here:

- one greedy k-means++ seeding with the largest K; candidate K starts from its first K centers
  (greedy k-means++ adds one center at a time, so every prefix is itself a k-means++ seeding);
- Lloyd steps for all candidates together (:func:`gmmgan.mixture._candidates_kmeans.lloyd_candidates`), each
  candidate stopping on its own criterion (for 'k-means++' at most SELECTION_LLOYD_STEPS, 5);
- the first M-step from the candidates' hard assignments, in one pass over the data.

The EM that follows starts from these parameters, so each candidate's fit is an ordinary EM fit
of ``GaussianMixture(K, weights_init=..., means_init=..., precisions_init=...)`` (tests check this).
"""

from __future__ import annotations

import torch

from gmmgan.mixture import _kmeans
from gmmgan.mixture._candidates_em import candidate_covariances
from gmmgan.mixture._candidates_kmeans import NearestCenters, lloyd_candidates
from gmmgan.mixture._em_state import _Shifted, _State

# Lloyd steps of init_params='k-means++' here: half of a single fit's KMEANSPP_LLOYD_STEPS (10).
# The EM that follows finishes what Lloyd leaves; on the 50 data sets of benchmarks/auto_k.py
# 5 steps instead of 10 made the whole selection about 20% faster, kept the chosen K of every
# well-separated mixture and changed it in 2 of the 24 overlapping ones (both closer to the
# true K).
SELECTION_LLOYD_STEPS = 5
# The full-covariance statistic forms (rows x candidates, D, D) outer products in float64: at
# most this many bytes of them at once. Blocks are sized for (rows, sum K, D) temporaries, which
# for K = 1..20 and D = 64 made this product alone 13 GB on a GPU.
OUTER_PRODUCT_BYTES = 256 << 20
# Lloyd steps of init_params='kmeans' (run to convergence, as scikit-learn's).
KMEANS_MAX_STEPS = 300
KMEANS_TOL = 1e-4


def kmeans_initial_states(est, ks: list[int], data: _Shifted, source, shift, generator, cov) -> list[_State]:
    """The initial _State of every candidate in ``ks`` (init_params 'k-means++' or 'kmeans')."""
    d, n = source.n_features, source.n_samples
    dtype, dev, f64 = source.dtype, source.device, torch.float64
    seeds = _kmeans.sample_rows(source, _kmeans.SEEDING_SAMPLE, generator, shift)
    pp = _kmeans.kmeans_plusplus(seeds, max(ks), generator)
    centers = torch.cat([pp[:k] for k in ks])
    steps = SELECTION_LLOYD_STEPS if est.init_params == "k-means++" else KMEANS_MAX_STEPS
    centers = lloyd_candidates(source, centers, ks, shift, max_iter=steps, tol=KMEANS_TOL)

    # Hard assignments to the nearest center of each candidate, summed per component in float64
    # (GaussianMixture's one-hot initial responsibilities; its statistics, accumulated here with
    # index_add instead of a product with a one-hot matrix).
    c, total = len(ks), sum(ks)
    starts = [sum(ks[:i]) for i in range(c)]
    nearest = NearestCenters(centers, ks, starts)
    anchor = centers.to(f64)
    nk = torch.zeros(total, dtype=f64, device=dev)
    sx = torch.zeros(total, d, dtype=f64, device=dev)
    stat = torch.zeros((d, d) if cov.name == "tied" else (total, d * d if cov.name == "full" else d), dtype=f64, device=dev)
    for x in data.chunks():
        lab = nearest.labels(x).reshape(-1)
        xr = x.to(f64).repeat_interleave(c, dim=0)  # row i for each of the c candidates
        nk += torch.bincount(lab, minlength=total).to(f64)
        sx.index_add_(0, lab, xr)
        if cov.name == "full":  # sum (x - a)(x - a)^T around the center, as accumulate does
            z = xr - anchor[lab]
            step = max(1, OUTER_PRODUCT_BYTES // (8 * d * d))
            for a in range(0, z.shape[0], step):
                zz = z[a : a + step]
                stat.index_add_(0, lab[a : a + step], (zz.unsqueeze(2) * zz.unsqueeze(1)).reshape(-1, d * d))
        elif cov.name == "tied":
            stat += x.to(f64).mT @ x.to(f64)
        else:
            stat.index_add_(0, lab, xr.square())
    if cov.name == "full":
        stat = stat.view(total, d, d)

    eps = torch.finfo(dtype).eps
    nk_e = nk + 10 * eps
    means = sx / nk_e.unsqueeze(1)
    covs = candidate_covariances(cov, stat, nk, nk_e, means, sx, anchor, starts, ks, n, est.reg_covar)
    # As GaussianMixture._finish_state, for all candidates at once; initial weights are
    # counts over n_samples (not renormalised), as scikit-learn's.
    covs = cov.to_dtype(covs, dtype, est.reg_covar)
    prec = cov.precision_cholesky(covs.to(f64), est.reg_covar).to(dtype)
    weights, means = (nk_e / n).to(dtype), means.to(dtype)
    if cov.name == "tied":
        return [_State(weights[a:a + k], means[a:a + k], covs[i], prec[i]) for i, (a, k) in enumerate(zip(starts, ks))]
    return [_State(weights[a:a + k], means[a:a + k], covs[a:a + k], prec[a:a + k]) for a, k in zip(starts, ks)]
