"""Choosing the number of mixture components: BIC/AIC over candidate K, all fitted at once.

Fitting K = 1..20 one after another repeats the per-iteration overhead (a pass over the data, a
handful of small kernels) twenty times. Here every candidate's components are stacked into one
component axis of length sum(K) and EM runs on all of them together: one log-density product per
data block covers every candidate, responsibilities are normalised per candidate with a segmented
logsumexp, and the M-step updates every component in batched tensor operations. A candidate whose
lower bound has settled drops out of the stack, so each candidate stops exactly where a single
:class:`GaussianMixture` fit from the same initialisation would have stopped; its BIC equals that
fit's to rounding (tests assert it).

Use :func:`select_n_components`, or ``GaussianMixture(n_components='auto')`` which runs it with the
default candidates and BIC.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, replace

import numpy as np
import torch

from gmmgan.mixture import _validation
from gmmgan.mixture._base import ConvergenceWarning, make_generator
from gmmgan.mixture._covariance import COVARIANCES
from gmmgan.mixture._data import default_chunk_size, make_source, summarize
from gmmgan.mixture._em import EMPTY_COMPONENT, _Shifted, _State
from gmmgan.mixture._stacked_init import kmeans_initial_states
from gmmgan.mixture.gaussian_mixture import GaussianMixture

CRITERIA = ("bic", "aic")
# Up to this many features, full covariances use quadratic features in float64 (see _Stack).
QUADRATIC_MAX_D = 16
_LOG_2PI = math.log(2 * math.pi)
# Default candidates are 1..min(MAX_DEFAULT_CANDIDATE, n_samples).
MAX_DEFAULT_CANDIDATE = 20


def default_candidates(n_samples: int) -> list[int]:
    """K = 1 .. min(20, n_samples): enough for most data; pass ``candidates`` for more."""
    return list(range(1, min(MAX_DEFAULT_CANDIDATE, n_samples) + 1))


def check_candidates(candidates, n_samples: int) -> list[int]:
    """Sorted unique candidate K; ValueError for an empty range, non-integers or K > n_samples."""
    if candidates is None:
        return default_candidates(n_samples)
    try:
        values = list(candidates)
    except TypeError:
        raise ValueError(f"candidates must be an iterable of ints such as range(1, 11), got {candidates!r}.") from None
    if not values:
        raise ValueError("candidates is empty; pass at least one number of components, e.g. range(1, 11).")
    if not all(_validation._is_int(k) or (isinstance(k, np.integer)) for k in values):
        raise ValueError(f"candidates must be positive ints, got {values!r}.")
    values = sorted({int(k) for k in values})
    if values[0] < 1:
        raise ValueError(f"candidates must be positive ints, got {values[0]}.")
    if values[-1] > n_samples:
        raise ValueError(
            f"The largest candidate, {values[-1]} components, exceeds the number of samples, "
            f"{n_samples}; use candidates up to {n_samples} or more data."
        )
    return values


@dataclass
class _Slot:
    """One candidate fit (K components, one initialisation) inside the stacked EM."""

    k: int
    init: int
    model: GaussianMixture
    state: _State
    lower_bound: float = -math.inf
    bounds: list | None = None
    n_iter: int = 0
    converged: bool = False
    reseeded: set | None = None


def select_n_components(X, candidates=None, criterion="bic", **params) -> GaussianMixture:
    """Fit a GaussianMixture for every candidate K at once and return the one the criterion picks.

    Parameters
    ----------
    X : data as for :meth:`GaussianMixture.fit` (array, tensor, .npy path, re-iterable of chunks)
    candidates : iterable of int, optional
        Numbers of components to try; default ``1 .. min(20, n_samples)``. Empty, non-positive or
        larger than n_samples is a ValueError.
    criterion : {'bic', 'aic'}, default='bic'
        Lower is better; ties go to the smaller K.
    **params
        Any other GaussianMixture parameter (covariance_type, tol, max_iter, n_init, init_params,
        random_state, device, dtype, chunk_size, ...). Each candidate is initialised exactly as
        ``GaussianMixture(K, **params)`` would be. ``warm_start`` and ``callback`` are not used
        (every selection starts afresh and reports no per-iteration progress).

    Returns
    -------
    GaussianMixture
        Fitted with the chosen K, with ``n_components_`` (the chosen K), ``criterion_``,
        ``criterion_scores_`` (dict K -> score), ``bic_`` and ``aic_`` (dicts K -> value).
    """
    params = dict(params)
    if "n_components" in params:
        raise ValueError("select_n_components chooses n_components; pass candidates=... instead.")
    model = GaussianMixture(n_components="auto", **params)
    fit_auto(model, X, candidates=candidates, criterion=criterion)
    return model


def fit_auto(est: GaussianMixture, X, candidates=None, criterion="bic", want_labels=False):
    """Fit ``est`` (whose n_components is 'auto') by batched model selection; the 'auto' branch of fit."""
    if criterion not in CRITERIA:
        raise ValueError(f"Unknown criterion {criterion!r}; choose 'bic' or 'aic'.")
    proto = {**est.get_params(), "n_components": 1}
    _validation.check_parameters(GaussianMixture(**proto))
    if est.weights_init is not None or est.means_init is not None or est.precisions_init is not None:
        raise ValueError(
            "weights_init, means_init and precisions_init fix the number of components and cannot "
            "be combined with n_components='auto'; leave them None or give n_components."
        )
    n_rows = _count_rows(X)
    ks = check_candidates(candidates, n_rows) if n_rows is not None else None
    source = make_source(X, device=est.device, dtype=est.dtype, chunk_size=est.chunk_size, n_components=1)
    n, d = source.n_samples, source.n_features
    if n < 2:
        raise ValueError(f"Expected n_samples >= 2 to fit a mixture, got {n}.")
    if ks is None:
        ks = check_candidates(candidates, n)
    if est.chunk_size is None:
        # The stack's largest temporaries are (rows, sum K, D) for full/tied and a few (rows, sum K)
        # for diag/spherical; blocks are sized for those, as GaussianMixture sizes its own.
        width = d if est.covariance_type in ("full", "tied") else 4
        itemsize = torch.tensor([], dtype=source.dtype).element_size()
        source = replace(source, chunk_size=default_chunk_size(sum(ks), width, source.device, itemsize))
    summary = summarize(source)
    shift = summary.mean.to(source.dtype)
    data = _Shifted(source, shift)
    cov = COVARIANCES[est.covariance_type]

    slots = _initial_slots(est, proto, ks, data, source, summary, shift, cov)
    _run_em(slots, data, cov, est, n, summary.var.to(source.device))

    best = {}
    for s in slots:  # as GaussianMixture: the first initialisation with the highest lower bound
        if s.k not in best or s.lower_bound > best[s.k].lower_bound:
            best[s.k] = s
    chosen = [best[k] for k in ks]
    loglik = _log_likelihoods([s.state for s in chosen], data, cov)
    bic, aic = {}, {}
    for s, ll in zip(chosen, loglik):
        p = _n_parameters(est.covariance_type, s.k, d)
        bic[s.k] = -2 * ll + p * math.log(n)
        aic[s.k] = -2 * ll + 2 * p
    scores = bic if criterion == "bic" else aic
    k_best = min(ks, key=lambda k: (scores[k], k))
    win = best[k_best]
    if k_best == ks[-1] and len(ks) > 1:
        warnings.warn(
            f"The chosen number of components, {k_best}, is the largest candidate: the data may "
            f"support more. Try larger candidates, e.g. select_n_components(X, "
            f"candidates=range(1, {2 * k_best + 1})).",
            UserWarning,
            stacklevel=3,
        )
    not_converged = [s.k for s in chosen if not s.converged]
    if not_converged and est.max_iter > 0:
        warnings.warn(
            f"The fits with K = {not_converged} did not converge. Increase max_iter or tol, or try "
            "other init parameters.",
            ConvergenceWarning,
            stacklevel=3,
        )
    win.model._set_state(win.state, shift, source)
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_", "precisions_"):
        setattr(est, name, getattr(win.model, name))
    est.converged_, est.n_iter_ = win.converged, win.n_iter
    est.lower_bound_, est.lower_bounds_ = win.lower_bound, win.bounds
    est.n_features_in_ = d
    est.n_components_ = k_best
    est.criterion_ = criterion
    est.candidates_ = ks
    est.criterion_scores_ = dict(scores)
    est.bic_, est.aic_ = bic, aic
    return est.predict(X) if want_labels else None


def _initial_slots(est, proto, ks, data, source, summary, shift, cov) -> list[_Slot]:
    """One _Slot per (candidate K, initialisation), each with its initial parameters.

    k-means++ and k-means starting points are computed for all candidates together
    (:mod:`gmmgan.mixture._stacked_init`); 'random' and 'random_from_data' ones candidate by
    candidate, each exactly as ``GaussianMixture(K, **params)`` would draw them.
    """
    models = {k: GaussianMixture(**{**proto, "n_components": k}) for k in ks}
    if est.init_params in ("k-means++", "kmeans"):
        generator = make_generator(est.random_state)
        per_init = [kmeans_initial_states(est, ks, data, source, shift, generator, cov) for _ in range(est.n_init)]
        return [_Slot(k, i, models[k], per_init[i][j], bounds=[], reseeded=set())
                for j, k in enumerate(ks) for i in range(est.n_init)]
    slots = []
    for k in ks:
        generator = make_generator(est.random_state)  # each K initialised as its own fit would be
        for init in range(est.n_init):
            state = models[k]._initial_state(data, source, summary, shift, generator)
            slots.append(_Slot(k, init, models[k], state, bounds=[], reseeded=set()))
    return slots


def _n_parameters(covariance_type: str, k: int, d: int) -> int:
    return int(COVARIANCES[covariance_type].n_cov_params(k, d) + k * d + k - 1)


def _count_rows(X):
    shape = getattr(X, "shape", None)
    if shape is not None and len(shape) >= 1 and not isinstance(X, (str,)):
        return int(shape[0])
    return None


class _Stack:
    """The active slots' components on one axis: offsets, segment ids and the padded gather index."""

    def __init__(self, slots, cov_name):
        ks = [s.k for s in slots]
        dev = slots[0].state.means.device
        self.ks, self.c = ks, len(ks)
        self.starts = np.concatenate([[0], np.cumsum(ks)]).tolist()
        self.total = self.starts[-1]
        self.seg = torch.repeat_interleave(torch.arange(self.c, device=dev), torch.tensor(ks, device=dev))
        self.kmax = max(ks)
        st = [s.state for s in slots]
        self.means = torch.cat([s.means for s in st])
        self.log_w = torch.cat([s.weights.log() for s in st])
        self.cov = COVARIANCES[cov_name]
        if cov_name == "tied":  # every candidate has its own shared matrix: expand it per component
            d = self.means.shape[1]
            self.prec_chol = torch.cat([s.prec_chol.expand(k, d, d) for s, k in zip(st, ks)])
            self._log_prob_cov = COVARIANCES["full"]
        else:
            self.prec_chol = torch.cat([s.prec_chol for s in st])
            self._log_prob_cov = self.cov
        d = self.means.shape[1]
        # Full matrices in float64 and few features: quadratic features instead of whitening.
        self.quadratic = cov_name in ("full", "tied") and self.means.dtype == torch.float64 and d <= QUADRATIC_MAX_D
        self.anchor = torch.zeros_like(self.means) if self.quadratic else self.means
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
        self.iu = torch.triu_indices(d, d, device=p.device)
        scale = torch.where(self.iu[0] == self.iu[1], 1.0, 2.0).to(p.dtype)
        self.w_q = (lam[:, self.iu[0], self.iu[1]] * scale).T.contiguous()  # (F, K)
        lam_mu = torch.einsum("kde,ke->kd", lam, self.means)
        self.w_l = (-2.0 * lam_mu).T.contiguous()  # (D, K)
        self.const = (lam_mu * self.means).sum(1) - 2.0 * COVARIANCES["full"].log_det(p) + d * _LOG_2PI

    def weighted_log_prob(self, x):
        """(log w_k + log N(x | k) of shape (rows, total), the E-step's cache for accumulate)."""
        if self.quadratic:
            q = x[:, self.iu[0]] * x[:, self.iu[1]]
            sq = torch.addmm(self.const, q, self.w_q).addmm_(x, self.w_l)
            return sq.mul_(-0.5).add_(self.log_w), q
        log_prob, cache = self._log_prob_cov.e_step_block(x, self.means, self.prec_chol)
        return log_prob.add_(self.log_w), cache

    def accumulate(self, x, resp, cache):
        """The covariance statistic of one block, through GaussianMixture's E-step hooks."""
        if self.cov.name == "tied":  # the shared statistic sum x x^T, computed once for all
            return self.cov.accumulate(x, resp, self.means)
        if self.quadratic:  # sum r x x^T around the origin, its upper triangle as (K, F)
            return resp.mT @ cache
        if self.cov.name == "full":
            # sum r y y^T in the whitened coordinates of the E-step, as accumulate_em, but always
            # the dense batched product: its sparse CPU variant loops over components in Python,
            # which for thousands of stacked components costs far more than it saves.
            return torch.bmm((cache * resp.mT.unsqueeze(-1)).mT, cache)
        return self.cov.accumulate_em(x, resp, self.means, self.prec_chol, cache)

    def finalize(self, stat):
        if self.cov.name == "tied":
            return stat
        if self.quadratic:
            k, d = self.means.shape
            full = stat.new_zeros(k, d, d)
            full[:, self.iu[0], self.iu[1]] = stat
            full[:, self.iu[1], self.iu[0]] = stat
            return full
        return self.cov.finalize_em(stat, self.prec_chol)

    def normalize_(self, wlp):
        """Per-candidate logsumexp (rows, C) and responsibilities (in place of ``wlp``).

        Each candidate's own maximum is subtracted (a scatter-max), so a candidate far below the
        others never underflows; its components are summed with a scatter-add.
        Differences are clamped before ``exp`` as in GaussianMixture's E-step (exp of subnormal
        numbers is very slow on x86 CPUs; the responsibilities affected are below 1e-32).
        """
        n = wlp.shape[0]
        index = self.seg.expand(n, -1)
        top = wlp.new_full((n, self.c), -math.inf).scatter_reduce_(1, index, wlp, "amax")
        floor = -75.0 if wlp.dtype == torch.float32 else -690.0
        resp = wlp.sub_(top[:, self.seg]).clamp_(min=floor).exp_()
        total = wlp.new_zeros((n, self.c)).scatter_add_(1, index, resp)
        resp.div_(total[:, self.seg])
        return top + total.log(), resp


def _run_em(slots, data, cov, est, n, data_var) -> None:
    """Stacked EM until every slot has converged or run max_iter iterations."""
    active = list(slots)
    f64 = torch.float64
    for n_iter in range(1, est.max_iter + 1):
        if not active:
            break
        stack = _Stack(active, cov.name)
        dev = stack.means.device
        nk = torch.zeros(stack.total, dtype=f64, device=dev)
        sx = torch.zeros(stack.means.shape, dtype=f64, device=dev)
        total = torch.zeros(stack.c, dtype=f64, device=dev)
        stat, worst_v, worst_x = None, [], []
        for x in data.chunks():
            wlp, cache = stack.weighted_log_prob(x)
            lpn, resp = stack.normalize_(wlp)
            total += lpn.sum(0, dtype=f64)
            nk += resp.sum(0, dtype=f64)
            sx += (resp.mT @ x).to(f64)
            s = stack.accumulate(x, resp, cache).to(f64)
            stat = s if stat is None else stat.add_(s)
            # The worst-explained rows of each candidate, where its empty components are re-seeded.
            low = torch.topk(lpn, min(stack.kmax, lpn.shape[0]), dim=0, largest=False)
            worst_v.append(low.values)
            worst_x.append(x[low.indices])  # (kk, C, D)
        worst_v, worst_x = torch.cat(worst_v), torch.cat(worst_x)
        stat = stack.finalize(stat)
        new_states = _m_step(stack, active, nk, sx, stat, cov, est, n, data_var, worst_v, worst_x, n_iter)
        still = []
        for i, s in enumerate(active):
            prev = s.lower_bound
            s.lower_bound = float(total[i]) / n
            s.bounds.append(s.lower_bound)
            s.state, s.n_iter = new_states[i], n_iter
            if abs(s.lower_bound - prev) < est.tol:
                s.converged = True
            else:
                still.append(s)
        active = still


def _m_step(stack, active, nk_raw, sx, stat, cov, est, n, data_var, worst_v, worst_x, n_iter):
    """GaussianMixture's M-step for every stacked component at once, in float64."""
    dtype = stack.means.dtype
    eps = torch.finfo(dtype).eps
    nk = nk_raw + 10 * eps
    means = sx / nk.unsqueeze(1)
    anchor = stack.anchor.to(torch.float64)
    if cov.name == "tied":
        covs = [cov.covariances(stat, nk_raw[a:a + k], nk[a:a + k], means[a:a + k], sx[a:a + k], anchor[a:a + k], n, est.reg_covar)
                for a, k in zip(stack.starts, stack.ks)]
    else:
        covs_all = cov.covariances(stat, nk_raw, nk, means, sx, anchor, n, est.reg_covar)
        covs = [covs_all[a:a + k] for a, k in zip(stack.starts, stack.ks)]
    states = []
    for i, (s, a, k) in enumerate(zip(active, stack.starts, stack.ks)):
        nk_i, means_i, covs_i = nk[a:a + k], means[a:a + k], covs[i]
        empty = [c for c in torch.nonzero(nk_raw[a:a + k] < EMPTY_COMPONENT).flatten().tolist() if c not in s.reseeded]
        if empty:  # rare: the single-fit path, on this candidate only
            s.reseeded.update(empty)
            order = torch.argsort(worst_v[:, i])[:k]
            nk_i, means_i, covs_i = s.model._reseed(empty, nk_i, means_i, covs_i, worst_x[order, i], data_var)
        states.append((nk_i / nk_i.sum(), means_i, covs_i))
    # One batched Cholesky for all candidates' covariances.
    if cov.name == "tied":
        prec = cov.precision_cholesky(torch.stack([c for _, _, c in states]), est.reg_covar)
        precs = list(prec)
    else:
        prec = cov.precision_cholesky(torch.cat([c for _, _, c in states]), est.reg_covar)
        precs = [prec[a:a + k] for a, k in zip(stack.starts, stack.ks)]
    return [_State(w.to(dtype), m.to(dtype), c.to(dtype), p.to(dtype)) for (w, m, c), p in zip(states, precs)]


def _log_likelihoods(states, data, cov) -> list[float]:
    """Total log-likelihood of the data under each state, in one pass over the data."""
    slots = [_Slot(int(s.means.shape[0]), 0, None, s) for s in states]
    stack = _Stack(slots, cov.name)
    total = torch.zeros(stack.c, dtype=torch.float64, device=stack.means.device)
    for x in data.chunks():
        total += stack.normalize_(stack.weighted_log_prob(x)[0])[0].sum(0, dtype=torch.float64)
    return total.tolist()
