"""EM for many Gaussian mixtures at once: every candidate's components on one axis.

This is the engine of :mod:`gmmgan.mixture.model_selection`. The parameters of all candidates
that are still running share one component axis (sum K components). One E-step pass over a data
block is a product of the block's features ([1, x, x_i x_j] for full covariances of up to 16
features, [1, x, x^2] for diagonal and spherical ones; whitening otherwise) with one weight
matrix for every component, a per-candidate normalisation, and one more product that gives
every component's statistics. With few features, the candidates are laid out as (candidates,
max K) grids (:class:`_Groups`), so that the per-candidate normalisation is a few plain
reductions; otherwise it works on the (rows, sum K) array with segment reductions. The M-step
is GaussianMixture's, for all candidates' components at once. A candidate whose lower bound has
settled drops out, so it stops exactly where a single :class:`GaussianMixture` fit from the same
start stops, and later iterations only pay for the candidates still running.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from gmmgan.mixture._candidates_kmeans import candidate_groups
from gmmgan.mixture._covariance import COVARIANCES
from gmmgan.mixture._em_state import EMPTY_COMPONENT, _State

# Up to this many features, full covariances use quadratic features in float64 (see _Candidates).
QUADRATIC_MAX_D = 16
# Resident data's per-block features ([1, x, x_i x_j]) are computed once per fit up to this size.
FEATURE_CACHE_BYTES = 64 << 20
_LOG_2PI = math.log(2 * math.pi)
# float64 E-step: a shared shift per row is exact enough while every candidate's sum is above this.
ROW_SHIFT_SAFE = math.exp(-640.0)
# ... used while the E-step's features (1 + D + D(D+1)/2 for full covariances) are at most this many.
GROUPED_MAX_FEATURES = 16
# Device types whose per-candidate reductions use torch.segment_reduce (see _Candidates.segment).
SEGMENT_REDUCE_DEVICES = ("cpu",)


@dataclass
class _Slot:
    """One candidate fit (K components, one initialisation) inside the candidates' joint EM."""

    k: int
    init: int
    model: object  # the GaussianMixture(K) whose _reseed the slot uses
    state: _State
    lower_bound: float = -math.inf
    bounds: list | None = None
    n_iter: int = 0
    converged: bool = False
    reseeded: set | None = None
    pruned: int = 0  # the iteration after which the fit was stopped as hopeless (0: it was not)
    log_likelihood: float | None = None  # of ``state``, where already known (pruned fits)


class _Candidates:
    """The parameters of C candidates on one component axis, and the E-step over them.

    ``weights`` (sum K,), ``means`` (sum K, D), ``prec_chol`` as the covariance type lays it out
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
        self.kind = feature_kind(cov_name, means.dtype, d)
        self.anchor = torch.zeros_like(means) if self.kind == "quadratic" else means
        if self.kind is not None:
            self.w_aug = self._feature_weights(d)
        # The grid layout pays for its padding in the two products: worth it while they are
        # narrow (few features), not for diagonal covariances of many features.
        self.groups = _Groups(ks, self.w_aug) if self.kind is not None and self.w_aug.shape[0] <= GROUPED_MAX_FEATURES else None

    def _feature_weights(self, d):
        """W with log w_k + log N(x | k) = features(x) . W[:, k], shape (1 + D + F, K).

        Full (quadratic): (x - mu)^T L (x - mu) = q(x) . W_q + x . W_l + c, q(x) the products
        x_i x_j (i <= j). With thousands of candidate components, whitening materialises
        (rows, sum K, D) arrays; here the E-step is one matrix product into (rows, sum K) and
        the scatter another. Cancellation is harmless in float64 (data are centred), which is
        why that path is used for float64 only. Diagonal and spherical: the same expansion as
        GaussianMixture's log_prob (sum_d p_d x_d^2 - 2 p_d mu_d x_d + p_d mu_d^2), folded into
        one product instead of two products and five passes over (rows, sum K).
        """
        p = self.prec_chol
        if self.kind == "quadratic":
            lam = p @ p.mT  # precision matrices, (K, D, D)
            iu = triu(d, p.device)
            scale = torch.where(iu[0] == iu[1], 1.0, 2.0).to(p.dtype)
            lam_mu = torch.einsum("kde,ke->kd", lam, self.means)
            const = (lam_mu * self.means).sum(1) - 2.0 * COVARIANCES["full"].log_det(p)
            lin, quad = -2.0 * lam_mu, lam[:, iu[0], iu[1]] * scale
        else:
            prec = p.square()
            if self.kind == "spherical":
                const = prec * self.means.square().sum(1) - 2.0 * d * p.log()
                prec = prec.unsqueeze(1).expand(-1, d)
            else:
                const = (self.means.square() * prec).sum(1) - 2.0 * p.log().sum(1)
            lin, quad = -2.0 * prec * self.means, prec
        w = torch.cat([(const + d * _LOG_2PI).unsqueeze(0), lin.T, quad.T]).mul_(-0.5)
        w[0].add_(self.log_w)
        return w

    def weighted_log_prob(self, x, feats):
        """log w_k + log N(x | k), shape (rows, total), and the cache :meth:`accumulate` uses."""
        if self.kind is not None:
            return feats @ self.w_aug, None
        log_prob, cache = self._log_prob_cov.e_step_block(x, self.means, self.prec_chol)
        return log_prob.add_(self.log_w), cache

    def statistics(self, x, feats, resp, cache):
        """(sum r, sum r x, covariance statistic) of one block, all in float64."""
        f64, d = torch.float64, x.shape[1]
        # Columns: sum r, sum r x, then sum r q(x) or sum r x^2. As (F, rows) @ (rows, K): the
        # BLAS on the development machine is 2-2.5x slower with the long axis on the left.
        moments = (feats.mT @ resp).mT.to(f64)
        nk, sx = moments[:, 0], moments[:, 1 : 1 + d]
        if self.cov.name == "tied":  # the shared statistic sum x x^T, computed once for all
            stat = self.cov.accumulate(x, resp, self.means)
        elif self.kind is not None:  # quadratic: sum r x x^T around 0, upper triangle (K, F)
            stat = moments[:, 1 + d :]  # diag / spherical: sum r x^2, (K, D)
        elif self.cov.name == "full":
            # sum r y y^T in the whitened coordinates of the E-step, as accumulate_em, but always
            # the dense batched product: its sparse CPU variant loops over components in Python,
            # which for thousands of candidate components costs far more than it saves.
            stat = torch.bmm((cache * resp.mT.unsqueeze(-1)).mT, cache)
        else:
            stat = self.cov.accumulate_em(x, resp, self.means, self.prec_chol, cache)
        return nk, sx, stat.to(f64)

    def finalize(self, stat):
        if self.cov.name == "tied":
            return stat
        if self.kind == "quadratic":
            k, d = self.means.shape
            iu = triu(d, stat.device)
            full = stat.new_zeros(k, d, d)
            full[:, iu[0], iu[1]] = stat
            full[:, iu[1], iu[0]] = stat
            return full
        return self.cov.finalize_em(stat, self.prec_chol)

    def segment(self, a, reduce):
        """Per-candidate 'sum' or 'max' over the columns of ``a`` (rows, total) -> (rows, C).

        segment_reduce on the CPU (3-5x faster there than scatter_add / scatter_reduce); the
        scatter kernels elsewhere, where they are the well-trodden path.
        """
        if a.device.type in SEGMENT_REDUCE_DEVICES:
            return torch.segment_reduce(a, reduce, lengths=self.lengths.expand(a.shape[0], -1), axis=1)
        index = self.seg.expand(a.shape[0], -1)
        if reduce == "sum":
            return a.new_zeros(a.shape[0], self.c).scatter_add_(1, index, a)
        return a.new_full((a.shape[0], self.c), -math.inf).scatter_reduce_(1, index, a, "amax")

    def normalize_(self, wlp, recompute=None):
        """Per-candidate logsumexp (rows, C) and responsibilities (in place of ``wlp``).

        Each candidate's responsibilities are its exp(wlp - shift) over their sum. In float64
        the shift is the row's maximum over all candidates (one plain reduction) when that is
        safe: exp keeps 690 nats of range, so a candidate whose sum stays above exp(-640) has
        every component within 43 nats of its own best exact, and the rest (responsibilities
        below 1e-18) at most that far off. Rows where some candidate falls below that (it
        explains the row far worse than another candidate) are redone with each candidate's
        own maximum, which float32's 75 nats of range always needs; ``recompute`` gives
        ``wlp`` again (it is overwritten). Segment reductions over the contiguous column
        ranges and a ``gather`` back to columns cost a fifth of scatter_reduce / scatter_add
        and advanced indexing on the CPU (``index_select`` along columns is 2.5x slower).
        Differences are clamped before ``exp`` as in GaussianMixture's E-step (exp of
        subnormal numbers is very slow on x86 CPUs).
        """
        if wlp.dtype == torch.float64 and recompute is not None:
            top = wlp.amax(1, keepdim=True)
            resp = wlp.sub_(top).clamp_(min=-690.0).exp_()
            total = self.segment(resp, "sum")
            if bool(total.amin() > ROW_SHIFT_SAFE):
                resp.div_(torch.gather(total, 1, self.seg.expand(total.shape[0], -1)))
                return total.log_().add_(top), resp
            wlp = recompute()
        top = self.segment(wlp, "max")
        floor = -75.0 if wlp.dtype == torch.float32 else -690.0
        resp = wlp.sub_(torch.gather(top, 1, self.seg.expand(top.shape[0], -1))).clamp_(min=floor).exp_()
        total = self.segment(resp, "sum")
        resp.div_(torch.gather(total, 1, self.seg.expand(total.shape[0], -1)))
        return top.add_(total.log_()), resp


def triu(d, device):
    return torch.triu_indices(d, d, device=device)


def feature_kind(cov_name, dtype, d):
    """Which features() the E-step uses: 'quadratic', 'diag', 'spherical', or None (whitening)."""
    if cov_name in ("full", "tied"):
        return "quadratic" if dtype == torch.float64 and d <= QUADRATIC_MAX_D else None
    return cov_name


def features(x, kind):
    """[1, x], then x_i x_j (i <= j) for 'quadratic', x^2 for 'diag' / 'spherical'.

    Shape (rows, 1 + D + F): the left operand of the E-step's and the M-step's products.
    """
    parts = [x.new_ones(x.shape[0], 1), x]
    if kind == "quadratic":
        iu = triu(x.shape[1], x.device)
        parts.append(x[:, iu[0]] * x[:, iu[1]])
    elif kind is not None:
        parts.append(x.square())
    return torch.cat(parts, 1)


class _Blocks:
    """The data blocks with their features; resident data's features are computed only once."""

    def __init__(self, data, kind):
        self.data, self.kind, self.cached = data, kind, None
        d = data.source.n_features
        width = 1 + d + (d * (d + 1) // 2 if kind == "quadratic" else d if kind else 0)
        size = data.n_samples * width * torch.tensor([], dtype=data.source.dtype).element_size()
        if data._resident is not None and size <= FEATURE_CACHE_BYTES:
            self.cached = [(x, features(x, kind)) for x in data.chunks()]

    def __iter__(self):
        if self.cached is not None:
            return iter(self.cached)
        return ((x, features(x, self.kind)) for x in self.data.chunks())


class _Groups:
    """The feature E-step in a (candidates, max K) grid layout, a few groups of similar K.

    In that layout each candidate's maximum and sum over its components are reductions over
    the last axis and the division by the sum is a broadcast, instead of segment reductions and
    a gather over (rows, sum K) arrays: 1.1-1.6x faster per row on the CPU, more so for many
    candidates. Padding columns (a group's candidates with fewer than its max K components)
    get weight -inf, so they are never a candidate's maximum; their responsibilities are
    exp(floor) (1e-300 in float64) and are dropped with their statistics.
    """

    def __init__(self, ks, w_aug):
        dev, c, total = w_aug.device, len(ks), sum(ks)
        starts = [sum(ks[:i]) for i in range(c)]
        self.groups = []
        for lo, hi in candidate_groups(c):
            kg = max(ks[lo:hi])
            col = torch.arange(kg, device=dev)
            real = (col < torch.tensor(ks[lo:hi], device=dev).unsqueeze(1)).reshape(-1)
            rows = (torch.tensor(starts[lo:hi], device=dev).unsqueeze(1) + col).reshape(-1).clamp_max(total - 1)
            w = w_aug[:, rows].masked_fill(~real, 0.0)
            w[0].masked_fill_(~real, -math.inf)
            self.groups.append((w, hi - lo, kg, real))

    def zeros(self):
        """Float64 accumulators for :meth:`step`'s moments, one (F, columns) per group."""
        return [w.new_zeros(w.shape, dtype=torch.float64) for w, *_ in self.groups]

    def step(self, feats, moments=None):
        """Per-candidate logsumexp (rows, C) of a block; adds its moments to ``moments``."""
        rows = feats.shape[0]
        floor = -75.0 if feats.dtype == torch.float32 else -690.0
        lpn = []
        for g, (w, cg, kg, _) in enumerate(self.groups):
            e = (feats @ w).view(rows, cg, kg)
            top = e.amax(2, keepdim=True)  # each candidate's own maximum
            e.sub_(top).clamp_(min=floor).exp_()
            tot = e.sum(2, keepdim=True)
            lpn.append(tot.log().add_(top).squeeze(2))
            if moments is not None:
                moments[g] += feats.mT @ e.div_(tot).view(rows, -1)
        return torch.cat(lpn, 1)

    def compact(self, moments):
        """(sum K, F) float64: the moments of the real columns, in candidate order."""
        return torch.cat([m[:, real] for m, (*_, real) in zip(moments, self.groups)], 1).mT


def join_candidates(states, cov_name):
    """(weights, means, covariances, prec_chol) of several candidates' _States on one component axis
    (tied: one matrix per candidate)."""
    join = torch.stack if cov_name == "tied" else torch.cat
    return (torch.cat([s.weights for s in states]), torch.cat([s.means for s in states]),
            join([s.covariances for s in states]), join([s.prec_chol for s in states]))


def run_em(slots, data, cov, est, n, data_var, penalty=None) -> None:
    """EM of all candidates at once until every slot has converged or run max_iter iterations;
    updates the slots.

    With ``penalty`` (dict K -> the criterion's penalty in nats, criterion = -2 log-likelihood +
    penalty), hopeless candidates stop early: see :func:`hopeless`.
    """
    active = list(slots)
    f64 = torch.float64
    weights, means, covs, prec = join_candidates([s.state for s in active], cov.name)
    d = means.shape[1]
    blocks = None
    for n_iter in range(1, est.max_iter + 1):
        if not active:
            break
        ks = [s.k for s in active]
        cands = _Candidates(ks, weights, means, prec, cov.name)
        if blocks is None:
            blocks = _Blocks(data, cands.kind)
        dev = means.device
        nk_raw = torch.zeros(cands.total, dtype=f64, device=dev)
        sx = torch.zeros(cands.total, d, dtype=f64, device=dev)
        total = torch.zeros(cands.c, dtype=f64, device=dev)
        stat = None
        if cands.groups is not None:  # the grid layout: statistics from the moments of features
            moments = cands.groups.zeros()
            for x, feats in blocks:
                total += cands.groups.step(feats, moments).sum(0, dtype=f64)
                if cov.name == "tied":  # the shared statistic sum x x^T
                    s = cov.accumulate(x, None, None).to(f64)
                    stat = s if stat is None else stat.add_(s)
            moments = cands.groups.compact(moments)
            nk_raw, sx = moments[:, 0].contiguous(), moments[:, 1 : 1 + d].contiguous()
            if cov.name != "tied":
                stat = moments[:, 1 + d :]
        for x, feats in blocks if cands.groups is None else ():
            wlp, cache = cands.weighted_log_prob(x, feats)
            lpn, resp = cands.normalize_(wlp, lambda: cands.weighted_log_prob(x, feats)[0])  # noqa: B023
            total += lpn.sum(0, dtype=f64)
            nk_b, sx_b, s = cands.statistics(x, feats, resp, cache)
            nk_raw += nk_b
            sx += sx_b
            stat = s if stat is None else stat.add_(s)
        stat = cands.finalize(stat)
        e_step_params = (weights, means, covs, prec)
        weights, means, covs, prec = _m_step(cands, active, nk_raw, sx, stat, cov, est, n, data_var, blocks, n_iter)
        still, keep = [], []
        changes = []
        for s, bound in zip(active, (total / n).tolist()):
            changes.append(bound - s.lower_bound)
            s.lower_bound = bound
            s.bounds.append(bound)
            s.n_iter = n_iter
        drop = hopeless(slots, active, changes, penalty, n, est.max_iter - n_iter) if penalty else set()
        for i, (s, change) in enumerate(zip(active, changes)):
            if abs(change) < est.tol or n_iter == est.max_iter or i in drop:
                s.converged = abs(change) < est.tol
                s.pruned = n_iter if i in drop and not s.converged else 0
                # A pruned fit keeps the parameters of this E-step, whose log-likelihood it just
                # computed (no pass over the data for its score); the others, the M-step's.
                w_, m_, c_, p_ = e_step_params if s.pruned else (weights, means, covs, prec)
                if s.pruned:
                    s.log_likelihood = s.lower_bound * n
                a, k = cands.starts[i], s.k
                pc = p_[i] if cov.name == "tied" else p_[a : a + k]
                cv = c_[i] if cov.name == "tied" else c_[a : a + k]
                s.state = _State(w_[a : a + k], m_[a : a + k], cv, pc)
            else:
                still.append(s)
                keep.append(i)
        if len(still) < len(active) and still:  # drop the finished candidates' components
            rows = torch.cat([torch.arange(cands.starts[i], cands.starts[i] + cands.ks[i], device=dev) for i in keep])
            per_c = torch.tensor(keep, device=dev)
            weights, means = weights[rows], means[rows]
            covs, prec = (covs[per_c], prec[per_c]) if cov.name == "tied" else (covs[rows], prec[rows])
        active = still


def hopeless(slots, active, changes, penalty, n, horizon) -> set[int]:
    """Indices into ``active`` of the fits that cannot win even at their latest pace.

    EM never lowers the log-likelihood, so every fit's criterion now (-2 n lower bound + penalty)
    is an upper bound of its final value, and the best of them bounds the winner's. A fit is
    dropped when, even if its log-likelihood kept rising by its latest change in every one of
    the ``horizon`` iterations max_iter still allows, its criterion would stay above that bound.
    EM's changes usually shrink, so this keeps every fit that could still win; it is a rule of
    thumb, not a proof (a fit that leaves a saddle can speed up again), checked on the 50 data
    sets of benchmarks/auto_k.py, where it never changed the chosen K.
    """
    if horizon <= 0:
        return set()
    bound = min(-2 * n * s.lower_bound + penalty[s.k] for s in slots if s.bounds)
    return {
        i for i, (s, change) in enumerate(zip(active, changes))
        if len(s.bounds) >= 2 and -2 * n * (s.lower_bound + horizon * max(change, 0.0)) + penalty[s.k] > bound
    }


def _m_step(cands, active, nk_raw, sx, stat, cov, est, n, data_var, blocks, n_iter):
    """GaussianMixture's M-step for every candidate's components at once, in float64.

    Returns (weights, means, covariances, prec_chol) of all candidates in the compute dtype.
    """
    dtype = cands.means.dtype
    eps = torch.finfo(dtype).eps
    nk = nk_raw + 10 * eps
    means = sx / nk.unsqueeze(1)
    anchor = cands.anchor.to(torch.float64)
    starts, ks = cands.starts, cands.ks
    covs = candidate_covariances(cov, stat, nk_raw, nk, means, sx, anchor, starts, ks, n, est.reg_covar)
    empty_any = bool((nk_raw < EMPTY_COMPONENT).any())  # one check for all candidates
    if empty_any:  # rare: the single-fit path, on the affected candidates only
        worst = None
        for i, (s, a, k) in enumerate(zip(active, starts, ks)):
            empty = [c for c in torch.nonzero(nk_raw[a:a + k] < EMPTY_COMPONENT).flatten().tolist() if c not in s.reseeded]
            if not empty:
                continue
            if worst is None:
                worst = _worst_rows(cands, blocks)
            s.reseeded.update(empty)
            order = torch.argsort(worst[0][:, i])[:k]
            cov_i = covs[i] if cov.name == "tied" else covs[a:a + k]
            nk_i, m_i, c_i = s.model._reseed(empty, nk[a:a + k], means[a:a + k], cov_i, worst[1][order, i], data_var)
            nk, means, covs = nk.clone(), means.clone(), covs.clone()
            nk[a:a + k], means[a:a + k] = nk_i, m_i
            if cov.name != "tied":
                covs[a:a + k] = c_i
    weights = nk / cands.segment(nk.unsqueeze(0), "sum")[0, cands.seg]
    prec = cov.precision_cholesky(covs, est.reg_covar)  # one Cholesky call for all candidates
    return weights.to(dtype), means.to(dtype), covs.to(dtype), prec.to(dtype)


def _worst_rows(cands, blocks):
    """(log-likelihoods, rows) of the kmax worst-explained rows of each candidate under ``cands``.

    Only needed when a component has emptied (then its candidate re-seeds it there, as
    GaussianMixture does): one more E-step pass with the same parameters.
    """
    worst_v, worst_x = [], []
    for x, feats in blocks:
        lpn = cands.normalize_(cands.weighted_log_prob(x, feats)[0], lambda: cands.weighted_log_prob(x, feats)[0])[0]  # noqa: B023
        low = torch.topk(lpn, min(cands.kmax, lpn.shape[0]), dim=0, largest=False)
        worst_v.append(low.values)
        worst_x.append(x[low.indices])  # (kk, C, D)
    return torch.cat(worst_v), torch.cat(worst_x)


def log_likelihoods(states, data, cov) -> list[float]:
    """Total log-likelihood of the data under each state, in one pass over the data."""
    weights, means, _, prec = join_candidates(states, cov.name)
    cands = _Candidates([int(s.means.shape[0]) for s in states], weights, means, prec, cov.name)
    total = torch.zeros(cands.c, dtype=torch.float64, device=means.device)
    for x, feats in _Blocks(data, cands.kind):
        if cands.groups is not None:
            total += cands.groups.step(feats).sum(0, dtype=torch.float64)
            continue
        def redo():
            return cands.weighted_log_prob(x, feats)[0]  # noqa: B023
        total += cands.normalize_(redo(), redo)[0].sum(0, dtype=torch.float64)
    return total.tolist()


def candidate_covariances(cov, stat, nk_raw, nk, means, sx, anchor, starts, ks, n, reg_covar) -> torch.Tensor:
    """Every candidate's covariances from its statistics (tied: one matrix per candidate, so per slice)."""
    if cov.name == "tied":
        return torch.stack([
            cov.covariances(stat, nk_raw[a:a + k], nk[a:a + k], means[a:a + k], sx[a:a + k], anchor[a:a + k], n,
                            reg_covar)
            for a, k in zip(starts, ks)
        ])
    return cov.covariances(stat, nk_raw, nk, means, sx, anchor, n, reg_covar)
