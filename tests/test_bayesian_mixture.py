"""BayesianGaussianMixture: scikit-learn's variational steps from the same start, priors, bad input."""

import warnings

import numpy as np
import pytest
import torch
from _helpers import blob_data, fit_quietly, rel_error, without_times
from hypothesis import given, settings
from hypothesis import strategies as st

from gmmgan import BayesianGaussianMixture
from gmmgan.mixture import NotFittedError

sk_mixture = pytest.importorskip("sklearn.mixture")

COV_TYPES = ["full", "tied", "diag", "spherical"]
PRIOR_TYPES = ["dirichlet_process", "dirichlet_distribution"]


def _blobs(seed, k=3, d=3, n_per=60, sep=8.0, offset=50.0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=sep, size=(k, d))
    return np.concatenate([rng.normal(size=(n_per, d)) @ rng.normal(size=(d, d)) * 0.5 + c for c in centers]) + offset


def _same_start(monkeypatch, resp):
    """Start both libraries from the same responsibilities (scikit-learn's _initialize(X, resp))."""

    def sk_init(self, X, random_state, xp=None):
        self._initialize(X, resp.astype(X.dtype))

    def our_init(self, data, source, shift, generator):
        blocks, start = [], 0
        for x in data.chunks():
            blocks.append((x, torch.as_tensor(resp[start : start + len(x)], dtype=x.dtype, device=x.device)))
            start += len(x)
        return blocks, torch.zeros(resp.shape[1], source.n_features, dtype=source.dtype, device=source.device)

    monkeypatch.setattr(sk_mixture.BayesianGaussianMixture, "_initialize_parameters", sk_init)
    monkeypatch.setattr(BayesianGaussianMixture, "_initial_resp", our_init)


def _fit_both(X, **kw):
    chunk = kw.pop("chunk_size", None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = sk_mixture.BayesianGaussianMixture(**kw).fit(X)
        ours = BayesianGaussianMixture(**kw, chunk_size=chunk).fit(X)
    return ours, ref


def _close(a, b, rtol=1e-6):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert np.max(np.abs(a - b)) <= rtol * max(np.max(np.abs(b)), 1e-300)


def _assert_same(ours, ref, rtol=1e-6):
    assert ours.n_iter_ == ref.n_iter_ and ours.converged_ == ref.converged_
    for name in ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_",
                 "mean_precision_", "degrees_of_freedom_", "mean_prior_", "covariance_prior_"):
        _close(getattr(ours, name), getattr(ref, name), rtol)
    if isinstance(ref.weight_concentration_, tuple):
        for a, b in zip(ours.weight_concentration_, ref.weight_concentration_):
            _close(a, b, rtol)
    else:
        _close(ours.weight_concentration_, ref.weight_concentration_, rtol)
    assert ours.lower_bound_ == pytest.approx(float(np.squeeze(ref.lower_bound_)), rel=rtol)
    np.testing.assert_allclose(ours.lower_bounds_, np.ravel(ref.lower_bounds_), rtol=rtol)
    assert ours.weight_concentration_prior_ == pytest.approx(ref.weight_concentration_prior_)
    assert ours.degrees_of_freedom_prior_ == pytest.approx(ref.degrees_of_freedom_prior_)


@pytest.mark.parametrize("prior_type", PRIOR_TYPES)
@pytest.mark.parametrize("cov_type", COV_TYPES)
def test_matches_sklearn_from_same_resp(monkeypatch, cov_type, prior_type):
    X = _blobs(hash((cov_type, prior_type)) % 1000)
    rng = np.random.default_rng(0)
    resp = rng.uniform(size=(len(X), 5))
    resp /= resp.sum(1, keepdims=True)
    _same_start(monkeypatch, resp)
    kw = {"n_components": 5, "covariance_type": cov_type, "weight_concentration_prior_type": prior_type,
              "max_iter": 40, "tol": 1e-6, "chunk_size": 47}
    ours, ref = _fit_both(X, **kw)
    _assert_same(ours, ref)
    _close(ours.predict_proba(X), ref.predict_proba(X))
    _close(ours.score_samples(X), ref.score_samples(X))
    assert np.array_equal(ours.predict(X), ref.predict(X))


@pytest.mark.parametrize("cov_type", COV_TYPES)
def test_matches_sklearn_with_given_priors(monkeypatch, cov_type):
    X = _blobs(7, d=2)
    d = X.shape[1]
    labels = np.repeat(np.arange(3), 60)
    resp = np.eye(4)[labels]  # hard labels, one component left empty
    _same_start(monkeypatch, resp)
    cov_prior = {"full": np.array([[2.0, 0.3], [0.3, 1.0]]), "tied": np.array([[2.0, 0.3], [0.3, 1.0]]),
                 "diag": np.array([0.5, 2.0]), "spherical": 0.7}[cov_type]
    kw = {"n_components": 4, "covariance_type": cov_type, "weight_concentration_prior": 0.05, "mean_precision_prior": 0.3,
              "mean_prior": np.full(d, 45.0), "degrees_of_freedom_prior": d + 1.5, "covariance_prior": cov_prior,
              "max_iter": 30, "tol": 1e-6}
    ours, ref = _fit_both(X, **kw)
    _assert_same(ours, ref)


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 2**16), cov_type=st.sampled_from(COV_TYPES), prior_type=st.sampled_from(PRIOR_TYPES))
def test_property_matches_sklearn_random_start(seed, cov_type, prior_type):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(90, 2)) * rng.uniform(0.1, 10, size=2) + rng.normal(scale=100, size=2)
    resp = rng.dirichlet(np.ones(4), size=len(X))
    with pytest.MonkeyPatch.context() as mp:
        _same_start(mp, resp)
        ours, ref = _fit_both(X, n_components=4, covariance_type=cov_type, weight_concentration_prior_type=prior_type,
                              max_iter=15, tol=1e-8)
    _assert_same(ours, ref)


def test_float32_and_torch_input():
    X = _blobs(3)
    ref = BayesianGaussianMixture(n_components=6, random_state=0).fit(X)
    t = BayesianGaussianMixture(n_components=6, random_state=0).fit(torch.as_tensor(X, dtype=torch.float32))
    assert isinstance(t.means_, torch.Tensor) and t.means_.dtype == torch.float32
    assert isinstance(t.predict(torch.as_tensor(X, dtype=torch.float32)), torch.Tensor)
    order_a, order_b = np.argsort(ref.weights_), np.argsort(t.weights_.numpy())
    np.testing.assert_allclose(t.weights_.numpy()[order_b], ref.weights_[order_a], atol=1e-3)


@pytest.mark.parametrize("prior_type", PRIOR_TYPES)
@pytest.mark.parametrize("init", ["kmeans", "k-means++", "random_from_data"])
def test_active_components_on_separated_blobs(init, prior_type):
    # ('random' responsibilities are left out: from them every component starts at the data mean
    # and variational EM, here as in scikit-learn, often merges clusters.)
    X = _blobs(11, k=3, d=2, n_per=60, sep=20.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = BayesianGaussianMixture(n_components=8, weight_concentration_prior_type=prior_type, init_params=init,
                                    weight_concentration_prior=1e-3, max_iter=200, n_init=2, random_state=1).fit(X)
    assert m.n_active_components_ == 3
    assert np.isclose(m.weights_.sum(), 1.0)
    assert m.weights_.shape == (8,) and m.means_.shape == (8, 2)
    labels = m.fit_predict(X)
    assert len(np.unique(labels)) == 3
    Xs, ys = m.sample(50)
    assert Xs.shape == (50, 2) and ys.shape == (50,)
    assert np.isfinite(m.score(X))


def test_warm_start_continues():
    X = _blobs(5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = BayesianGaussianMixture(n_components=4, max_iter=2, warm_start=True, random_state=0).fit(X)
        first = m.lower_bound_
        m.fit(X)
    assert m.lower_bound_ >= first - 1e-9


def test_bad_input():
    X = _blobs(0, d=2)
    cases = [
        ({"weight_concentration_prior_type": "pitman_yor"}, "weight_concentration_prior_type"),
        ({"weight_concentration_prior": 0.0}, "weight_concentration_prior must be"),
        ({"mean_precision_prior": -1.0}, "mean_precision_prior must be"),
        ({"degrees_of_freedom_prior": 0.5}, "greater than 1"),
        ({"mean_prior": np.zeros(3)}, "shape"),
        ({"covariance_prior": np.eye(3)}, "shape"),
        ({"covariance_prior": np.array([[1.0, 2.0], [2.0, 1.0]])}, "positive-definite"),
        ({"covariance_type": "diag", "covariance_prior": np.array([1.0, -1.0])}, "positive"),
        ({"covariance_type": "spherical", "covariance_prior": -2.0}, "positive float"),
        ({"n_components": "auto"}, "positive int"),
        ({"n_components": 1000}, "n_samples >= n_components"),
        ({"covariance_type": "banana"}, "covariance_type"),
        ({"init_params": "magic"}, "init_params"),
        ({"tol": -1.0}, "tol"),
    ]
    for kw, match in cases:
        with pytest.raises(ValueError, match=match):
            BayesianGaussianMixture(**kw).fit(X)
    with pytest.raises(ValueError, match="NaN"):
        BayesianGaussianMixture(n_components=2).fit(np.array([[0.0, np.nan], [1.0, 2.0], [3.0, 1.0]]))
    with pytest.raises(FileNotFoundError):
        BayesianGaussianMixture().fit("/nonexistent/data.npy")
    with pytest.raises(NotFittedError):
        BayesianGaussianMixture().predict(X)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("cov_type", COV_TYPES)
def test_cuda_matches_cpu(monkeypatch, cov_type):
    X = _blobs(9)
    resp = np.random.default_rng(1).dirichlet(np.ones(4), size=len(X))
    _same_start(monkeypatch, resp)
    kw = {"n_components": 4, "covariance_type": cov_type, "max_iter": 20, "tol": 1e-8}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cpu = BayesianGaussianMixture(**kw).fit(X)
        gpu = BayesianGaussianMixture(**kw, device="cuda").fit(X)
    assert isinstance(gpu.means_, np.ndarray)  # numpy in, numpy out, whatever the device
    _close(gpu.means_, cpu.means_)
    _close(gpu.covariances_, cpu.covariances_)
    assert gpu.lower_bound_ == pytest.approx(cpu.lower_bound_, rel=1e-6)


def test_streamed_chunks_match_in_memory(monkeypatch):
    X = _blobs(13)
    resp = np.random.default_rng(2).dirichlet(np.ones(4), size=len(X))
    _same_start(monkeypatch, resp)
    kw = {"n_components": 4, "covariance_type": "full", "max_iter": 20, "tol": 1e-8}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        whole = BayesianGaussianMixture(**kw).fit(X)
        streamed = BayesianGaussianMixture(**kw).fit([X[i : i + 50] for i in range(0, len(X), 50)])
    _close(streamed.means_, whole.means_, 1e-9)
    _close(streamed.covariances_, whole.covariances_, 1e-9)
    assert streamed.n_iter_ == whole.n_iter_


# --------------------------------------- every attribute and the verbose output, as scikit-learn's
BGM_ATTRS = ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_", "mean_precision_",
             "degrees_of_freedom_", "mean_prior_", "covariance_prior_", "mean_precision_prior_",
             "weight_concentration_prior_", "degrees_of_freedom_prior_")


@pytest.mark.parametrize("cov_type", COV_TYPES)
def test_bayesian_every_attribute_and_warm_start_match_sklearn(monkeypatch, cov_type):
    X = blob_data(3, d=2)
    rng = np.random.default_rng(0)
    resp = rng.uniform(size=(len(X), 4))
    _same_start(monkeypatch, resp / resp.sum(1, keepdims=True))
    kw = {"n_components": 4, "covariance_type": cov_type, "weight_concentration_prior_type": "dirichlet_distribution",
              "mean_precision_prior": 0.5, "tol": 1e-6, "max_iter": 3, "warm_start": True}
    ours, ref = BayesianGaussianMixture(**kw), sk_mixture.BayesianGaussianMixture(**kw)
    for _ in range(2):
        fit_quietly(ours, X)
        fit_quietly(ref, X)
        assert (ours.n_iter_, ours.converged_) == (ref.n_iter_, ref.converged_)
        for name in BGM_ATTRS + ("weight_concentration_",):
            assert rel_error(getattr(ours, name), getattr(ref, name)) < 1e-6, name
        assert ours.lower_bound_ == pytest.approx(float(np.squeeze(ref.lower_bound_)), rel=1e-6)
        np.testing.assert_allclose(ours.lower_bounds_, np.ravel(ref.lower_bounds_), rtol=1e-6)
        assert rel_error(ours.predict_proba(X), ref.predict_proba(X)) < 1e-6
        np.testing.assert_array_equal(ours.predict(X), ref.predict(X))


def test_bayesian_verbose_output_is_sklearns(capsys, monkeypatch):
    X = blob_data(5, d=2)
    resp = np.random.default_rng(1).uniform(size=(len(X), 3))
    _same_start(monkeypatch, resp / resp.sum(1, keepdims=True))
    kw = {"n_components": 3, "max_iter": 6, "verbose": 2, "verbose_interval": 2}
    fit_quietly(BayesianGaussianMixture(**kw), X)
    ours = capsys.readouterr().out
    fit_quietly(sk_mixture.BayesianGaussianMixture(**kw), X)
    assert without_times(ours) == without_times(capsys.readouterr().out)
