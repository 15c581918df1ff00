"""Property tests: for any finite input, EM returns a valid mixture and never lowers its bound."""

import warnings

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from gmmgan import GaussianMixture

COV_TYPES = ["full", "tied", "diag", "spherical"]

finite = st.floats(min_value=-1e4, max_value=1e4, allow_nan=False, allow_infinity=False, width=64)


@st.composite
def problems(draw):
    n = draw(st.integers(4, 40))
    d = draw(st.integers(1, 4))
    X = draw(arrays(np.float64, (n, d), elements=finite))
    k = draw(st.integers(1, min(4, n)))
    cov = draw(st.sampled_from(COV_TYPES))
    dtype = draw(st.sampled_from(["float64", "float32"]))
    init = draw(st.sampled_from(["k-means++", "random", "random_from_data"]))
    return X, k, cov, dtype, init


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems(), st.integers(0, 2**16))
def test_fit_gives_a_valid_mixture(problem, seed):
    X, k, cov, dtype, init = problem
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gm = GaussianMixture(k, covariance_type=cov, dtype=dtype, init_params=init, random_state=seed, max_iter=30).fit(X)
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_", "precisions_"):
        assert np.isfinite(getattr(gm, name)).all(), name
    assert abs(gm.weights_.sum() - 1.0) < 1e-5
    assert (gm.weights_ >= 0).all()
    full = torch.as_tensor(np.asarray(gm.covariances_, dtype=np.float64))
    if cov in ("full", "tied"):
        assert bool((torch.linalg.eigvalsh(full) > 0).all())
    else:
        assert bool((full > 0).all())
    assert np.isfinite(gm.score(X))


@st.composite
def spread_data(draw):
    """Continuous data with n >= 10 K rows: the regime where EM's monotonicity must hold.

    (On degenerate data, e.g. two distinct values, reg_covar dominates the covariances, and the
    regularised M-step no longer maximises the likelihood, for scikit-learn as for us.)
    """
    seed = draw(st.integers(0, 2**32 - 1))
    k = draw(st.integers(1, 4))
    d = draw(st.integers(1, 4))
    n = draw(st.integers(10 * k, 120))
    scale = draw(st.floats(1e-2, 1e3))
    offset = draw(st.floats(-1e3, 1e3))
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=draw(st.floats(0.0, 10.0)), size=(k, d))
    X = centers[rng.integers(k, size=n)] + rng.standard_t(draw(st.floats(1.5, 30.0)), size=(n, d))
    return X * scale + offset, k


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spread_data(), st.sampled_from(COV_TYPES), st.sampled_from(["float64", "float32"]), st.integers(0, 2**16))
def test_lower_bound_never_drops(data, cov, dtype, seed):
    X, k = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gm = GaussianMixture(k, covariance_type=cov, dtype=dtype, random_state=seed, max_iter=40, tol=1e-300).fit(X)
    bounds = np.asarray(gm.lower_bounds_)
    eps = 1e-4 if dtype == "float32" else 1e-9
    ok = np.diff(bounds) >= -eps * np.maximum(1.0, np.abs(bounds[1:]))
    # Re-seeding an empty component in iteration t may lower the bound seen at t + 1.
    for t, _ in gm.reseeded_:
        ok[t - 1 : t] = True
    assert ok.all(), (bounds, gm.reseeded_)


@settings(max_examples=30, deadline=None)
@given(arrays(np.float64, (30, 2), elements=finite), st.integers(1, 3))
def test_predict_proba_rows_sum_to_one_and_match_predict(X, k):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gm = GaussianMixture(k, random_state=0, max_iter=10).fit(X)
    proba = gm.predict_proba(X)
    np.testing.assert_allclose(proba.sum(1), 1.0, atol=1e-8)
    np.testing.assert_array_equal(proba.argmax(1), gm.predict(X))


@settings(max_examples=25, deadline=None)
@given(st.integers(2, 200), st.integers(1, 50))
def test_chunk_size_does_not_change_the_fit(n, chunk):
    rng = np.random.default_rng(n)
    X = rng.normal(size=(n, 2)) + (rng.random((n, 1)) > 0.5) * 6
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = GaussianMixture(2, random_state=1, max_iter=20).fit(X)
        b = GaussianMixture(2, random_state=1, max_iter=20, chunk_size=chunk).fit(X)
    np.testing.assert_allclose(a.means_, b.means_, rtol=1e-9, atol=1e-9)
    assert a.n_iter_ == b.n_iter_
