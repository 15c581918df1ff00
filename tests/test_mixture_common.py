"""The contract both mixture estimators share, checked on each (scikit-learn's common-test idea).

Everything here comes from BaseMixture and the estimator plumbing, so a change there is checked
against GaussianMixture and BayesianGaussianMixture alike: parameters and repr, fit's return value
and fitted attributes, the not-fitted error, inference shapes and their consistency, numpy/torch
in and out, determinism, fit_predict, warm start, callback and the convergence warning. The data
are tiny (three separated 2-D blobs), so the whole file runs in seconds.
"""

import inspect
import warnings

import numpy as np
import pytest
import torch

from gmmgan import BayesianGaussianMixture, GaussianMixture
from gmmgan.mixture import ConvergenceWarning, NotFittedError

ESTIMATORS = [GaussianMixture, BayesianGaussianMixture]
COV_TYPES = ["full", "tied", "diag", "spherical"]
K, D = 3, 2
# The documented shapes of covariances_, precisions_ and precisions_cholesky_ (scikit-learn's).
COV_SHAPES = {"full": (K, D, D), "tied": (D, D), "diag": (K, D), "spherical": (K,)}


def _blobs(n_per=20, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    centers = np.array([[0.0, 0.0], [8.0, 0.0], [0.0, 8.0]])
    return np.concatenate([c + rng.normal(scale=0.5, size=(n_per, D)) for c in centers]).astype(dtype)


def _make(cls, covariance_type="full", **params):
    return cls(n_components=K, covariance_type=covariance_type, random_state=0, **params)


def _fit(cls, X, covariance_type="full", **params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return _make(cls, covariance_type, **params).fit(X)


def _np(a):
    return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


@pytest.fixture(scope="module")
def X():
    return _blobs()


# --------------------------------------------------------------------------- parameters
@pytest.mark.parametrize("cls", ESTIMATORS)
def test_get_params_set_params_and_clone_round_trip(cls):
    sk_base = pytest.importorskip("sklearn.base")
    est = cls()
    names = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    params = est.get_params()
    assert sorted(params) == sorted(names)
    assert all(params[p] == inspect.signature(cls.__init__).parameters[p].default for p in names)

    assert est.set_params(covariance_type="diag", tol=1e-4, max_iter=7) is est
    assert (est.covariance_type, est.tol, est.max_iter) == ("diag", 1e-4, 7)
    with pytest.raises(ValueError, match="Invalid parameter 'no_such'"):
        est.set_params(no_such=1)

    twin = sk_base.clone(est)
    assert type(twin) is cls and twin is not est
    assert twin.get_params() == est.get_params()


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_clone_of_a_fitted_model_is_unfitted(cls, X):
    sk_base = pytest.importorskip("sklearn.base")
    twin = sk_base.clone(_fit(cls, X))
    assert not hasattr(twin, "means_") and not hasattr(twin, "converged_")


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_repr_shows_changed_parameters_only_in_name_order(cls):
    name = cls.__name__
    assert repr(cls()) == f"{name}()"
    assert repr(cls(tol=1e-4, covariance_type="diag")) == f"{name}(covariance_type='diag', tol=0.0001)"
    # Arrays are summarised by their shape, not printed.
    text = repr(cls(means_init=np.zeros((3, 2)))) if cls is GaussianMixture else repr(cls(mean_prior=np.zeros(2)))
    assert "<array of shape" in text and "0." not in text


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_init_only_stores_parameters(cls):
    # Validation happens in fit (one place), as in scikit-learn: a bad value is stored as given.
    est = cls(covariance_type="nonsense", tol=-1)
    assert (est.covariance_type, est.tol) == ("nonsense", -1)
    with pytest.raises(ValueError, match="covariance_type"):
        est.fit(_blobs())


# --------------------------------------------------------------------------- fitting
@pytest.mark.parametrize("cov_type", COV_TYPES)
@pytest.mark.parametrize("cls", ESTIMATORS)
def test_fit_returns_self_with_documented_attributes(cls, cov_type, X):
    est = _make(cls, cov_type)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        assert est.fit(X) is est
    assert _np(est.weights_).shape == (K,)
    np.testing.assert_allclose(_np(est.weights_).sum(), 1.0, rtol=1e-12)
    assert _np(est.means_).shape == (K, D)
    for name in ("covariances_", "precisions_", "precisions_cholesky_"):
        assert _np(getattr(est, name)).shape == COV_SHAPES[cov_type], name
    # precisions_ is the inverse of covariances_, precisions_cholesky_ its factor.
    cov, prec, chol = (_np(getattr(est, n)) for n in ("covariances_", "precisions_", "precisions_cholesky_"))
    if cov_type in ("full", "tied"):
        eye = np.broadcast_to(np.eye(D), cov.shape)
        np.testing.assert_allclose(cov @ prec, eye, atol=1e-8)
        np.testing.assert_allclose(chol @ np.swapaxes(chol, -1, -2), prec, rtol=1e-10)
    else:
        np.testing.assert_allclose(cov * prec, 1.0, rtol=1e-10)
        np.testing.assert_allclose(chol**2, prec, rtol=1e-10)
    assert isinstance(est.converged_, bool)
    assert isinstance(est.n_iter_, int) and 1 <= est.n_iter_ <= est.max_iter
    assert isinstance(est.lower_bound_, float) and np.isfinite(est.lower_bound_)
    assert len(est.lower_bounds_) == est.n_iter_ and est.lower_bounds_[-1] == est.lower_bound_
    assert est.n_features_in_ == D
    assert not hasattr(est, "feature_names_in_")  # a plain array has no column names


@pytest.mark.parametrize("cov_type", COV_TYPES)
def test_bayesian_attributes(cov_type, X):
    est = _fit(BayesianGaussianMixture, X, cov_type)
    wc = est.weight_concentration_
    assert isinstance(wc, tuple) and [np.shape(a) for a in wc] == [(K,), (K,)]  # dirichlet_process
    assert _np(est.mean_precision_).shape == (K,)
    assert _np(est.mean_prior_).shape == (D,)
    assert _np(est.degrees_of_freedom_).shape == (() if cov_type == "tied" else (K,))
    assert 1 <= est.n_active_components_ <= K
    other = _fit(BayesianGaussianMixture, X, cov_type, weight_concentration_prior_type="dirichlet_distribution")
    assert _np(other.weight_concentration_).shape == (K,)


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_too_few_samples_is_the_same_error_for_both(cls):
    with pytest.raises(ValueError, match=r"n_samples >= 2 to fit a mixture, got n_samples = 1"):
        cls(n_components=1).fit(np.zeros((1, D)))
    with pytest.raises(ValueError, match=r"n_samples >= n_components but got n_components = 3, n_samples = 2"):
        cls(n_components=3).fit(np.arange(4.0).reshape(2, D))


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_not_fitted_error_before_fit(cls, X):
    est = cls()
    for method, args in [("predict", (X,)), ("predict_proba", (X,)), ("score_samples", (X,)),
                         ("score", (X,)), ("sample", (5,))]:
        with pytest.raises(NotFittedError, match=f"This {cls.__name__} instance is not fitted yet"):
            getattr(est, method)(*args)
    sk_exceptions = pytest.importorskip("sklearn.exceptions")
    with pytest.raises(sk_exceptions.NotFittedError):  # scikit-learn's handlers catch it too
        est.predict(X)


# --------------------------------------------------------------------------- inference
@pytest.mark.parametrize("cov_type", COV_TYPES)
@pytest.mark.parametrize("cls", ESTIMATORS)
def test_inference_shapes_and_consistency(cls, cov_type, X):
    est = _fit(cls, X, cov_type)
    labels, proba, logp = est.predict(X), est.predict_proba(X), est.score_samples(X)
    n = len(X)
    assert labels.shape == (n,) and np.issubdtype(labels.dtype, np.integer)
    assert proba.shape == (n, K) and logp.shape == (n,)
    assert labels.min() >= 0 and labels.max() < K
    assert (proba >= 0).all()
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(labels, proba.argmax(1))
    assert np.isfinite(logp).all()
    assert est.score(X) == pytest.approx(logp.mean(), rel=1e-12)
    # The three blobs are far apart: each is one component, whichever its number.
    assert len({tuple(np.unique(labels[i : i + 20])) for i in (0, 20, 40)}) == 3
    # A row scored alone gets what it gets among all rows.
    np.testing.assert_allclose(est.score_samples(X[5:6]), logp[5:6], rtol=1e-12)


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_sample_shapes_and_components(cls, X):
    est = _fit(cls, X)
    samples, comps = est.sample(30)
    assert samples.shape == (30, D) and samples.dtype == np.float64 and comps.shape == (30,)
    assert np.all(np.diff(comps) >= 0)  # grouped by component
    only, which = est.sample(4, component=1)
    assert only.shape == (4, D) and (which == 1).all()
    with pytest.raises(ValueError, match="n_samples"):
        est.sample(0)


# --------------------------------------------------------------------------- numpy / torch
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cls", ESTIMATORS)
def test_numpy_in_numpy_out(cls, dtype):
    X = _blobs(dtype=dtype)
    est = _fit(cls, X)
    for name in ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_"):
        value = getattr(est, name)
        assert isinstance(value, np.ndarray) and value.dtype == dtype, name
    for out in (est.predict(X), est.predict_proba(X), est.score_samples(X), *est.sample(3)):
        assert isinstance(out, np.ndarray)
    assert isinstance(est.score(X), float)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("cls", ESTIMATORS)
def test_torch_in_torch_out(cls, dtype):
    X = torch.as_tensor(_blobs()).to(dtype)
    est = _fit(cls, X)
    for name in ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_"):
        value = getattr(est, name)
        assert isinstance(value, torch.Tensor) and value.dtype == dtype, name
    for out in (est.predict(X), est.predict_proba(X), est.score_samples(X), *est.sample(3)):
        assert isinstance(out, torch.Tensor)
    assert est.predict_proba(X).dtype == dtype
    # The same fit as from numpy data of that precision.
    twin = _fit(cls, X.numpy())
    np.testing.assert_allclose(_np(est.means_), twin.means_, rtol=1e-6 if dtype == torch.float32 else 1e-12)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("cls", ESTIMATORS)
def test_cuda_tensors_in_cuda_tensors_out(cls):
    X = torch.as_tensor(_blobs())
    est = _fit(cls, X.cuda())
    assert est.means_.device.type == "cuda"
    for out in (est.predict(X.cuda()), est.predict_proba(X.cuda()), est.score_samples(X.cuda()), *est.sample(3)):
        assert isinstance(out, torch.Tensor) and out.device.type == "cuda"
    # A CPU tensor is scored on the CPU, with the same result.
    torch.testing.assert_close(est.predict(X), est.predict(X.cuda()).cpu())
    # The same optimum as on the CPU (components compared in sorted order: the starts may differ).
    cpu = _fit(cls, X)
    def order(m):
        return m[np.lexsort(np.round(m).T[::-1])]
    np.testing.assert_allclose(order(_np(est.means_)), order(_np(cpu.means_)), rtol=1e-6, atol=1e-6)


# --------------------------------------------------------------------------- the EM loop
@pytest.mark.parametrize("cov_type", ["full", "diag"])
@pytest.mark.parametrize("cls", ESTIMATORS)
def test_fixed_random_state_is_deterministic(cls, cov_type, X):
    a = _fit(cls, X, cov_type, init_params="random", n_init=2)
    b = _fit(cls, X, cov_type, init_params="random", n_init=2)
    np.testing.assert_array_equal(a.means_, b.means_)
    np.testing.assert_array_equal(a.covariances_, b.covariances_)
    assert a.lower_bounds_ == b.lower_bounds_
    np.testing.assert_array_equal(a.sample(5)[0], b.sample(5)[0])


@pytest.mark.parametrize("cov_type", COV_TYPES)
@pytest.mark.parametrize("cls", ESTIMATORS)
def test_fit_predict_equals_fit_then_predict(cls, cov_type, X):
    est = _make(cls, cov_type, tol=1e-8, max_iter=500)
    labels = est.fit_predict(X)
    assert est.converged_
    assert isinstance(labels, np.ndarray) and labels.shape == (len(X),)
    np.testing.assert_array_equal(labels, est.predict(X))
    np.testing.assert_array_equal(labels, _make(cls, cov_type, tol=1e-8, max_iter=500).fit(X).predict(X))


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_n_init_keeps_the_best_lower_bound(cls, X):
    bounds = []
    # Stopped after 3 iterations, so that the initialisations end with different bounds.
    est = _fit(cls, X, init_params="random", n_init=3, max_iter=3, tol=0.0, callback=bounds.append)
    finals = {}
    for info in bounds:
        finals[info["init"]] = info["lower_bound"]
    assert sorted(finals) == [0, 1, 2]
    assert len(set(finals.values())) == 3
    assert est.lower_bound_ == max(finals.values())
    # Each initialisation reports every iteration once, numbered from 1, with the change.
    for init in finals:
        mine = [b for b in bounds if b["init"] == init]
        assert [b["n_iter"] for b in mine] == list(range(1, len(mine) + 1))
        assert all(set(b) == {"init", "n_iter", "lower_bound", "change"} for b in mine)


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_max_iter_one_warns_not_converged(cls, X):
    est = _make(cls, max_iter=1, tol=0.0)
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        est.fit(X)
    assert est.converged_ is False and est.n_iter_ == 1


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_warm_start_continues_from_the_fitted_parameters(cls, X):
    est = _fit(cls, X, max_iter=3, tol=0.0, warm_start=True, n_init=5)
    first, seen = est.lower_bound_, []
    with pytest.warns(ConvergenceWarning):  # 3 more iterations with tol=0 never converge
        est.set_params(callback=seen.append).fit(X)
    assert {info["init"] for info in seen} == {0}  # one initialisation, n_init ignored
    assert est.lower_bounds_[0] >= first - 1e-9  # picks up where the last fit stopped
    with pytest.raises(ValueError, match="features"):  # and on data of the same width only
        est.fit(np.zeros((10, D + 1)))


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_verbose_prints_scikit_learn_messages(cls, X, capsys):
    _fit(cls, X, verbose=1, verbose_interval=1, max_iter=2, tol=0.0)
    out = capsys.readouterr().out
    assert out.startswith("Initialization 0\n  Iteration 1\n  Iteration 2\n")
    assert "Initialization did not converge." in out
