"""Fitting every candidate K at once and keeping the one BIC or AIC picks.

The engine behind ``GaussianMixture(n_components='auto')`` and
:func:`gmmgan.mixture.select_n_components` (see :mod:`gmmgan.mixture.model_selection` for the
method). It works on the estimator it is given and builds each candidate's model as
``type(est)(**params)``, so it needs no import of the estimator classes: gaussian_mixture imports
this module, and model_selection builds on both.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import replace

import numpy as np
import torch

from gmmgan.mixture import _validation
from gmmgan.mixture._candidates_em import _Slot, log_likelihoods, run_em
from gmmgan.mixture._candidates_init import kmeans_initial_states
from gmmgan.mixture._covariance import COVARIANCES
from gmmgan.mixture._data_source import default_chunk_size, make_source, summarize
from gmmgan.mixture._em_state import _Shifted
from gmmgan.mixture._estimator import (
    ConvergenceWarning,
    make_generator,
    sklearn_compatible,
)
from gmmgan.mixture._memory import check_fit_memory

CRITERIA = ("bic", "aic")
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


def fit_auto(est, X, candidates=None, criterion="bic", want_labels=False, prune=True):
    """Fit ``est``, a GaussianMixture whose n_components is 'auto', by fitting all candidates at once.

    The 'auto' branch of ``GaussianMixture.fit``; returns the labels of ``X`` if ``want_labels``.
    """
    if criterion not in CRITERIA:
        raise ValueError(f"Unknown criterion {criterion!r}; choose 'bic' or 'aic'.")
    proto = {**est.get_params(), "n_components": 1}
    _validation.check_parameters(type(est)(**proto))
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
        # The candidates' largest temporaries are (rows, sum K, D) for full/tied and a few (rows, sum K)
        # for diag/spherical; blocks are sized for those, as GaussianMixture sizes its own.
        width = d if est.covariance_type in ("full", "tied") else 4
        itemsize = torch.tensor([], dtype=source.dtype).element_size()
        source = replace(source, chunk_size=default_chunk_size(sum(ks), width, source.device, itemsize))
    n_fitted = sum(ks) * est.n_init  # every candidate and initialisation is fitted at once
    check_fit_memory(
        n_samples=n, n_features=d, n_components=n_fitted, covariance_type=est.covariance_type,
        chunk_size=source.chunk_size, itemsize=torch.tensor([], dtype=source.dtype).element_size(),
        device=source.device, what=f"fitting K = {ks[0]}..{ks[-1]} together ({n_fitted} components, "
        f"{est.covariance_type} covariances, {n:,} x {d} data)",
        auto=True,
    )
    summary = summarize(source)
    shift = summary.mean.to(source.dtype)
    data = _Shifted(source, shift)
    cov = COVARIANCES[est.covariance_type]

    slots = _initial_slots(est, proto, ks, data, source, summary, shift, cov)
    penalty = None
    if prune:
        per_param = math.log(n) if criterion == "bic" else 2.0
        penalty = {k: cov.n_parameters(k, d) * per_param for k in ks}
    run_em(slots, data, cov, est, n, summary.var.to(source.device), penalty)

    best = {}
    for s in slots:  # as GaussianMixture: the first initialisation with the highest lower bound
        if s.k not in best or s.lower_bound > best[s.k].lower_bound:
            best[s.k] = s
    chosen = [best[k] for k in ks]
    # Pruned fits know the log-likelihood of the parameters they kept; one pass for the others.
    todo = [s for s in chosen if s.log_likelihood is None]
    known = dict(zip(map(id, todo), log_likelihoods([s.state for s in todo], data, cov))) if todo else {}
    loglik = [s.log_likelihood if s.log_likelihood is not None else known[id(s)] for s in chosen]
    bic, aic = {}, {}
    for s, ll in zip(chosen, loglik):
        p = cov.n_parameters(s.k, d)
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
    not_converged = [s.k for s in chosen if not s.converged and not s.pruned]
    if not_converged and est.max_iter > 0:
        warnings.warn(
            f"The fits with K = {not_converged} did not converge. Increase max_iter or tol, or try "
            "other init parameters.",
            sklearn_compatible(ConvergenceWarning),
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
    est.pruned_ = [s.k for s in chosen if s.pruned]
    return est.predict(X) if want_labels else None


def _initial_slots(est, proto, ks, data, source, summary, shift, cov) -> list[_Slot]:
    """One _Slot per (candidate K, initialisation), each with its initial parameters.

    k-means++ and k-means starting points are computed for all candidates together
    (:mod:`gmmgan.mixture._candidates_init`); 'random' and 'random_from_data' ones candidate by
    candidate, each exactly as ``GaussianMixture(K, **params)`` would draw them.
    """
    models = {k: type(est)(**{**proto, "n_components": k}) for k in ks}
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


def _count_rows(X):
    shape = getattr(X, "shape", None)
    if shape is not None and len(shape) >= 1 and not isinstance(X, (str,)):
        return int(shape[0])
    return None
