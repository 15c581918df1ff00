"""Choosing the number of mixture components: BIC/AIC over candidate K, all fitted at once.

Fitting K = 1..20 one after another repeats the per-iteration overhead (a pass over the data, a
handful of small kernels) twenty times. Here one k-means run initialises every candidate
(:mod:`gmmgan.mixture._candidates_init`) and EM runs on all of them together
(:mod:`gmmgan.mixture._candidates_em`): one pass over each data block serves every candidate, and
a candidate whose lower bound has settled drops out. Each candidate's fit is an ordinary EM fit:
started from the same parameters, a single :class:`GaussianMixture` takes the same steps, stops at
the same iteration and reaches the same BIC to rounding (tests assert it).

Use :func:`select_n_components`, or ``GaussianMixture(n_components='auto')`` which runs it with the
default candidates and BIC. Both run :func:`gmmgan.mixture._candidates_fit.fit_auto`; the helpers
for candidate lists are re-exported here.
"""

from __future__ import annotations

from gmmgan.mixture._candidates_fit import (
    CRITERIA,
    MAX_DEFAULT_CANDIDATE,
    check_candidates,
    default_candidates,
    fit_auto,
)
from gmmgan.mixture.gaussian_mixture import GaussianMixture

__all__ = [
    "CRITERIA",
    "MAX_DEFAULT_CANDIDATE",
    "check_candidates",
    "default_candidates",
    "fit_auto",
    "select_n_components",
]


def select_n_components(X, candidates=None, criterion="bic", prune=True, **params) -> GaussianMixture:
    """Fit a GaussianMixture for every candidate K at once and return the one the criterion picks.

    Parameters
    ----------
    X : data as for :meth:`GaussianMixture.fit` (array, tensor, .npy path, re-iterable of chunks)
    candidates : iterable of int, optional
        Numbers of components to try; default ``1 .. min(20, n_samples)``. Empty, non-positive or
        larger than n_samples is a ValueError.
    criterion : {'bic', 'aic'}, default='bic'
        Lower is better; ties go to the smaller K.
    prune : bool, default=True
        Stop a candidate's EM early once it cannot win: when, even if its log-likelihood kept
        rising by its latest change in every iteration max_iter still allows, its criterion
        would stay above the best criterion so far (EM never lowers the log-likelihood, so that
        is an upper bound of the winner's). Such a candidate's score is that of the parameters
        it stopped at (an upper bound of what its full fit would reach) and its K is listed in
        ``pruned_``. A rule of thumb, not a proof (EM's changes usually but not always shrink);
        on the 50 data sets of benchmarks/auto_k.py it skipped about a third of the work and
        never changed the chosen K. ``prune=False`` fits every candidate to convergence.
    **params
        Any other GaussianMixture parameter (covariance_type, tol, max_iter, n_init, init_params,
        random_state, device, dtype, chunk_size, ...). With init_params 'k-means++' (the
        default) or 'kmeans', all candidates share one k-means++ seeding for the largest K
        (candidate K starts from its first K seeds) and run their Lloyd steps together (5 for
        'k-means++', half of a single fit's 10: EM finishes what Lloyd leaves), so a
        candidate's start differs from ``GaussianMixture(K, **params)``'s own (same method,
        other random draws); 'random' and 'random_from_data' starts are exactly those of
        ``GaussianMixture(K, **params)``. On the CPU, results are reproducible for an int
        random_state.
        ``warm_start`` and ``callback`` are not used (every selection starts afresh and
        reports no per-iteration progress).

    Returns
    -------
    GaussianMixture
        Fitted with the chosen K, with ``n_components_`` (the chosen K), ``criterion_``,
        ``criterion_scores_`` (dict K -> score), ``bic_`` and ``aic_`` (dicts K -> value),
        ``pruned_`` (sorted K whose fits were stopped early, see ``prune``).
    """
    params = dict(params)
    if "n_components" in params:
        raise ValueError("select_n_components chooses n_components; pass candidates=... instead.")
    model = GaussianMixture(n_components="auto", **params)
    fit_auto(model, X, candidates=candidates, criterion=criterion, prune=prune)
    return model
