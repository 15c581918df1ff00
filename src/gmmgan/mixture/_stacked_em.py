"""EM for many Gaussian mixtures at once: every candidate's components on one axis.

This is the engine of :mod:`gmmgan.mixture.model_selection`. The parameters of all candidates
that are still running live in stacked tensors (sum K components); one E-step pass computes
the log-densities of every component with one matrix product per data block, normalises them
per candidate with segment reductions, and collects every candidate's statistics with one more
matrix product. The M-step is GaussianMixture's, batched over all components. A candidate whose
lower bound has settled leaves the stack, so it stops exactly where a single
:class:`GaussianMixture` fit from the same start stops, and later iterations only pay for the
candidates still running.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from gmmgan.mixture._covariance import COVARIANCES
from gmmgan.mixture._em import EMPTY_COMPONENT, _State

# Up to this many features, full covariances use quadratic features in float64 (see _Stack).
QUADRATIC_MAX_D = 16
# Resident data's per-block features ([1, x, x_i x_j]) are computed once per fit up to this size.
FEATURE_CACHE_BYTES = 64 << 20
_LOG_2PI = math.log(2 * math.pi)


@dataclass
class _Slot:
    """One candidate fit (K components, one initialisation) inside the stacked EM."""

    k: int
    init: int
    model: object  # the GaussianMixture(K) whose _reseed the slot uses
    state: _State
    lower_bound: float = -math.inf
    bounds: list | None = None
    n_iter: int = 0
    converged: bool = False
    reseeded: set | None = None


class _Stack:
    """The parameters of C candidates on one component axis, and the E-step over them.

    ``weights`` (sum K,), ``means`` (sum K, D), ``prec_chol`` as the covariance type stacks it
    ((sum K, ...), or (C, D, D) for 'tied': every candidate has its own shared matrix).
    """

    def __init__(self, ks, weights, means, prec_chol, cov_name):
        dev = means.device
        self.ks, self.c, self.total, self.kmax = ks, len(ks), sum(ks), max(ks)
        self.starts = [sum(ks[:i]) for i in range(len(ks))]
        self.seg = torch.repeat_interleave(torch.arange(self.c, device=dev), torch.tensor(ks, device=dev))
        self.lengths = torch.tensor(ks, device=dev).unsqueeze(0)
        self.means, self.log_w = means, weights.log()
        self.cov = COVARIANCES[cov_name]
        d = means.shape[1]
        if cov_name == "tied":  # expand each candidate's matrix over its components
            self.prec_chol = prec_chol[self.seg]
            self._log_prob_cov = COVARIANCES["full"]
        else:
            self.prec_chol = prec_chol
            self._log_prob_cov = self.cov
        # Full matrices in float64 and few features: quadratic features instead of whitening.
        self.quadratic = cov_name in ("full", "tied") and means.dtype == torch.float64 and d <= QUADRATIC_MAX_D
        self.anchor = torch.zeros_like(means) if self.quadratic else means
        if self.quadratic:
            self._setup_quadratic(d)

    def _setup_quadratic(self, d):
        """(x - mu)^T L (x - mu) = q(x) . W_q + x . W_l + c, q(x) the products x_i x_j (i <= j).

        With thousands of stacked components, whitening materialises (rows, sum K, D) arrays;
        here the only per-component arrays are (rows, sum K), and both the E-step and the
        scatter are single matrix products. Cancellation is harmless in float64 (data are
        centred), which is why this path is used for float64 only.
        """
        p = self.prec_chol
        lam = p @ p.mT  # precision matrices, (K, D, D)
        iu = triu(d, p.device)
        scale = torch.where(iu[0] == iu[1], 1.0, 2.0).to(p.dtype)
        lam_mu = torch.einsum("kde,ke->kd", lam, self.means)
        # One weight matrix for the features [1, x, q(x)] of features(): rows (1 + D + F, K).
        self.w_aug = torch.cat([
            (lam_mu * self.means).sum(1, keepdim=True).T - 2.0 * COVARIANCES["full"].log_det(p) + d * _LOG_2PI,
            (-2.0 * lam_mu).T,
            (lam[:, iu[0], iu[1]] * scale).T,
        ]).mul_(-0.5)
        self.w_aug[0].add_(self.log_w)

    def weighted_log_prob(self, x, feats):
        """log w_k + log N(x | k), shape (rows, total), and the cache :meth:`accumulate` uses."""
        if self.quadratic:
            return feats @ self.w_aug, None
        log_prob, cache = self._log_prob_cov.e_step_block(x, self.means, self.prec_chol)
        return log_prob.add_(self.log_w), cache

    def statistics(self, x, feats, resp, cache):
        """(sum r, sum r x, covariance statistic) of one block, all in float64."""
        f64, d = torch.float64, x.shape[1]
        moments = (resp.mT @ feats).to(f64)  # columns: sum r, sum r x, (quadratic) sum r q(x)
        nk, sx = moments[:, 0], moments[:, 1 : 1 + d]
        if self.cov.name == "tied":  # the shared statistic sum x x^T, computed once for all
            stat = self.cov.accumulate(x, resp, self.means)
        elif self.quadratic:  # sum r x x^T around the origin, its upper triangle as (K, F)
            stat = moments[:, 1 + d :]
        elif self.cov.name == "full":
            # sum r y y^T in the whitened coordinates of the E-step, as accumulate_em, but always
            # the dense batched product: its sparse CPU variant loops over components in Python,
            # which for thousands of stacked components costs far more than it saves.
            stat = torch.bmm((cache * resp.mT.unsqueeze(-1)).mT, cache)
        else:
            stat = self.cov.accumulate_em(x, resp, self.means, self.prec_chol, cache)
        return nk, sx, stat.to(f64)

    def finalize(self, stat):
        if self.cov.name == "tied":
            return stat
        if self.quadratic:
            k, d = self.means.shape
            iu = triu(d, stat.device)
            full = stat.new_zeros(k, d, d)
            full[:, iu[0], iu[1]] = stat
            full[:, iu[1], iu[0]] = stat
            return full
        return self.cov.finalize_em(stat, self.prec_chol)

    def normalize_(self, wlp):
        """Per-candidate logsumexp (rows, C) and responsibilities (in place of ``wlp``).

        Each candidate's own maximum is subtracted, so a candidate far below the others never
        underflows. The per-candidate maximum and sum are segment reductions over contiguous
        column ranges and the broadcast back to columns an ``index_select``: on the CPU these
        cost a third of scatter_reduce / scatter_add and advanced indexing over the same array.
        Differences are clamped before ``exp`` as in GaussianMixture's E-step (exp of subnormal
        numbers is very slow on x86 CPUs; the responsibilities affected are below 1e-32).
        """
        lengths = self.lengths.expand(wlp.shape[0], -1)
        top = torch.segment_reduce(wlp, "max", lengths=lengths, axis=1)
        floor = -75.0 if wlp.dtype == torch.float32 else -690.0
        resp = wlp.sub_(torch.index_select(top, 1, self.seg)).clamp_(min=floor).exp_()
        total = torch.segment_reduce(resp, "sum", lengths=lengths, axis=1)
        resp.div_(torch.index_select(total, 1, self.seg))
        return top.add_(total.log_()), resp


def triu(d, device):
    return torch.triu_indices(d, d, device=device)


def features(x, quadratic):
    """[1, x] or, for the quadratic E-step, [1, x, x_i x_j (i <= j)], shape (rows, 1 + D (+ F))."""
    parts = [x.new_ones(x.shape[0], 1), x]
    if quadratic:
        iu = triu(x.shape[1], x.device)
        parts.append(x[:, iu[0]] * x[:, iu[1]])
    return torch.cat(parts, 1)


class _Blocks:
    """The data blocks with their features; resident data's features are computed only once."""

    def __init__(self, data, quadratic):
        self.data, self.quadratic, self.cached = data, quadratic, None
        d = data.source.n_features
        width = 1 + d + (d * (d + 1) // 2 if quadratic else 0)
        size = data.n_samples * width * torch.tensor([], dtype=data.source.dtype).element_size()
        if data._resident is not None and size <= FEATURE_CACHE_BYTES:
            self.cached = [(x, features(x, quadratic)) for x in data.chunks()]

    def __iter__(self):
        if self.cached is not None:
            return iter(self.cached)
        return ((x, features(x, self.quadratic)) for x in self.data.chunks())


def stack_states(states, cov_name):
    """(weights, means, covariances, prec_chol) of several _States, stacked."""
    join = torch.stack if cov_name == "tied" else torch.cat
    return (torch.cat([s.weights for s in states]), torch.cat([s.means for s in states]),
            join([s.covariances for s in states]), join([s.prec_chol for s in states]))


def run_em(slots, data, cov, est, n, data_var) -> None:
    """Stacked EM until every slot has converged or run max_iter iterations; updates the slots."""
    active = list(slots)
    f64 = torch.float64
    weights, means, covs, prec = stack_states([s.state for s in active], cov.name)
    d = means.shape[1]
    blocks = None
    for n_iter in range(1, est.max_iter + 1):
        if not active:
            break
        ks = [s.k for s in active]
        stack = _Stack(ks, weights, means, prec, cov.name)
        if blocks is None:
            blocks = _Blocks(data, stack.quadratic)
        dev = means.device
        nk_raw = torch.zeros(stack.total, dtype=f64, device=dev)
        sx = torch.zeros(stack.total, d, dtype=f64, device=dev)
        total = torch.zeros(stack.c, dtype=f64, device=dev)
        stat = None
        for x, feats in blocks:
            wlp, cache = stack.weighted_log_prob(x, feats)
            lpn, resp = stack.normalize_(wlp)
            total += lpn.sum(0, dtype=f64)
            nk_b, sx_b, s = stack.statistics(x, feats, resp, cache)
            nk_raw += nk_b
            sx += sx_b
            stat = s if stat is None else stat.add_(s)
        stat = stack.finalize(stat)
        weights, means, covs, prec = _m_step(stack, active, nk_raw, sx, stat, cov, est, n, data_var, blocks, n_iter)
        still, keep = [], []
        for i, (s, bound) in enumerate(zip(active, (total / n).tolist())):
            prev, s.lower_bound = s.lower_bound, bound
            s.bounds.append(bound)
            s.n_iter = n_iter
            if abs(bound - prev) < est.tol or n_iter == est.max_iter:
                s.converged = abs(bound - prev) < est.tol
                a, k = stack.starts[i], s.k
                pc = prec[i] if cov.name == "tied" else prec[a : a + k]
                cv = covs[i] if cov.name == "tied" else covs[a : a + k]
                s.state = _State(weights[a : a + k], means[a : a + k], cv, pc)
            else:
                still.append(s)
                keep.append(i)
        if len(still) < len(active) and still:  # drop the finished candidates' components
            rows = torch.cat([torch.arange(stack.starts[i], stack.starts[i] + stack.ks[i], device=dev) for i in keep])
            per_c = torch.tensor(keep, device=dev)
            weights, means = weights[rows], means[rows]
            covs, prec = (covs[per_c], prec[per_c]) if cov.name == "tied" else (covs[rows], prec[rows])
        active = still


def _m_step(stack, active, nk_raw, sx, stat, cov, est, n, data_var, blocks, n_iter):
    """GaussianMixture's M-step for every stacked component at once, in float64.

    Returns stacked (weights, means, covariances, prec_chol) in the compute dtype.
    """
    dtype = stack.means.dtype
    eps = torch.finfo(dtype).eps
    nk = nk_raw + 10 * eps
    means = sx / nk.unsqueeze(1)
    anchor = stack.anchor.to(torch.float64)
    starts, ks = stack.starts, stack.ks
    if cov.name == "tied":
        covs = torch.stack([
            cov.covariances(stat, nk_raw[a:a + k], nk[a:a + k], means[a:a + k], sx[a:a + k], anchor[a:a + k], n, est.reg_covar)
            for a, k in zip(starts, ks)
        ])
    else:
        covs = cov.covariances(stat, nk_raw, nk, means, sx, anchor, n, est.reg_covar)
    empty_any = bool((nk_raw < EMPTY_COMPONENT).any())  # one check for all candidates
    if empty_any:  # rare: the single-fit path, on the affected candidates only
        worst = None
        for i, (s, a, k) in enumerate(zip(active, starts, ks)):
            empty = [c for c in torch.nonzero(nk_raw[a:a + k] < EMPTY_COMPONENT).flatten().tolist() if c not in s.reseeded]
            if not empty:
                continue
            if worst is None:
                worst = _worst_rows(stack, blocks)
            s.reseeded.update(empty)
            order = torch.argsort(worst[0][:, i])[:k]
            cov_i = covs[i] if cov.name == "tied" else covs[a:a + k]
            nk_i, m_i, c_i = s.model._reseed(empty, nk[a:a + k], means[a:a + k], cov_i, worst[1][order, i], data_var)
            nk, means, covs = nk.clone(), means.clone(), covs.clone()
            nk[a:a + k], means[a:a + k] = nk_i, m_i
            if cov.name != "tied":
                covs[a:a + k] = c_i
    lengths = stack.lengths.squeeze(0)
    weights = nk / torch.segment_reduce(nk, "sum", lengths=lengths)[stack.seg]
    prec = cov.precision_cholesky(covs, est.reg_covar)  # one batched Cholesky for all candidates
    return weights.to(dtype), means.to(dtype), covs.to(dtype), prec.to(dtype)


def _worst_rows(stack, blocks):
    """(log-likelihoods, rows) of the kmax worst-explained rows of each candidate under ``stack``.

    Only needed when a component has emptied (then its candidate re-seeds it there, as
    GaussianMixture does): one more E-step pass with the same parameters.
    """
    worst_v, worst_x = [], []
    for x, feats in blocks:
        lpn = stack.normalize_(stack.weighted_log_prob(x, feats)[0])[0]
        low = torch.topk(lpn, min(stack.kmax, lpn.shape[0]), dim=0, largest=False)
        worst_v.append(low.values)
        worst_x.append(x[low.indices])  # (kk, C, D)
    return torch.cat(worst_v), torch.cat(worst_x)


def log_likelihoods(states, data, cov) -> list[float]:
    """Total log-likelihood of the data under each state, in one pass over the data."""
    weights, means, _, prec = stack_states(states, cov.name)
    stack = _Stack([int(s.means.shape[0]) for s in states], weights, means, prec, cov.name)
    total = torch.zeros(stack.c, dtype=torch.float64, device=means.device)
    for x, feats in _Blocks(data, stack.quadratic):
        total += stack.normalize_(stack.weighted_log_prob(x, feats)[0])[0].sum(0, dtype=torch.float64)
    return total.tolist()
