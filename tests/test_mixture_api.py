"""GaussianMixture beyond parity: sampling, torch extras, persistence, initialisation, degenerate data.

And the estimator API a scikit-learn user expects of both mixtures: scikit-learn's exception and
warning classes, sorted parameters and repr, sample types, scikit-learn's own estimator checks.
"""

import pickle
import warnings

import numpy as np
import pytest
import torch
from _helpers import blob_data

from gmmgan import BayesianGaussianMixture, GaussianMixture
from gmmgan.mixture import ConvergenceWarning, NotFittedError

try:  # a test dependency; without it the tests of scikit-learn compatibility are skipped
    import sklearn
    from sklearn import exceptions as sk_exceptions
    from sklearn import mixture as sk_mixture
except ImportError:
    sklearn = sk_exceptions = sk_mixture = None
needs_sklearn = pytest.mark.skipif(sklearn is None, reason="scikit-learn is not installed")

COV_TYPES = ["full", "tied", "diag", "spherical"]
ESTIMATORS = [GaussianMixture, BayesianGaussianMixture]
SK = {} if sklearn is None else {GaussianMixture: sk_mixture.GaussianMixture,
                                 BayesianGaussianMixture: sk_mixture.BayesianGaussianMixture}
SKLEARN_16 = sklearn is not None and tuple(int(p) for p in sklearn.__version__.split(".")[:2]) >= (1, 6)
CENTERS = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])


def _blobs(n_per=150, seed=0):
    rng = np.random.default_rng(seed)
    return np.concatenate([c + rng.normal(scale=0.5, size=(n_per, 2)) for c in CENTERS])


def _sorted_means(m):
    m = np.asarray(m)
    key = np.round(m / 5.0)  # sort by the nearest grid point, robust to noise
    return m[np.lexsort((key[:, 1], key[:, 0]))]


@pytest.mark.parametrize("init", ["k-means++", "kmeans", "random_from_data"])
def test_every_init_recovers_separated_blobs(init):
    X = _blobs()
    gm = GaussianMixture(4, init_params=init, n_init=3, random_state=0, max_iter=300).fit(X)
    np.testing.assert_allclose(_sorted_means(gm.means_), _sorted_means(CENTERS), atol=0.15)
    assert gm.converged_


def test_random_init_starts_every_component_near_the_data_mean():
    # As in scikit-learn, random responsibilities put all components near the mean; EM then
    # breaks the symmetry only slowly, so a loose tol stops early and a tight one gets further.
    X = _blobs()
    loose = GaussianMixture(4, init_params="random", random_state=0, tol=1e-3).fit(X)
    np.testing.assert_allclose(loose.means_, np.broadcast_to(X.mean(0), (4, 2)), atol=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tight = GaussianMixture(4, init_params="random", random_state=0, tol=1e-8, max_iter=1000).fit(X)
    assert tight.lower_bound_ > loose.lower_bound_ + 1.0


def test_fit_predict_equals_fit_then_predict():
    X = _blobs()
    a = GaussianMixture(4, random_state=1).fit_predict(X)
    b = GaussianMixture(4, random_state=1).fit(X).predict(X)
    np.testing.assert_array_equal(a, b)


def test_random_state_makes_fits_reproducible():
    X = _blobs()
    a = GaussianMixture(4, random_state=5, init_params="random").fit(X)
    b = GaussianMixture(4, random_state=5, init_params="random").fit(X)
    np.testing.assert_array_equal(a.means_, b.means_)


def test_n_init_keeps_the_best_lower_bound():
    X = _blobs()
    bounds = [GaussianMixture(4, init_params="random_from_data", random_state=s).fit(X).lower_bound_ for s in range(4)]
    best = GaussianMixture(4, init_params="random_from_data", n_init=4, random_state=0).fit(X)
    assert best.lower_bound_ >= min(bounds) - 1e-9


def test_warm_start_continues_from_current_parameters():
    X = _blobs()
    gm = GaussianMixture(4, max_iter=2, warm_start=True, random_state=0, init_params="random")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gm.fit(X)
        first = gm.lower_bound_
        gm.fit(X)
    assert gm.lower_bound_ >= first - 1e-9
    gm.set_params(max_iter=200).fit(X)
    assert gm.converged_


def test_max_iter_zero_returns_initialisation():
    gm = GaussianMixture(4, max_iter=0, random_state=0).fit(_blobs())
    assert gm.n_iter_ == 0 and not gm.converged_


def test_callback_and_verbose(capsys):
    seen = []
    GaussianMixture(4, random_state=0, callback=seen.append, verbose=2, verbose_interval=1).fit(_blobs())
    assert seen and set(seen[0]) == {"init", "n_iter", "lower_bound", "change"}
    assert [s["n_iter"] for s in seen] == list(range(1, len(seen) + 1))
    assert "Iteration 1" in capsys.readouterr().out


@pytest.mark.parametrize("cov_type", COV_TYPES)
def test_sample_statistics_and_component(cov_type):
    gm = GaussianMixture(4, covariance_type=cov_type, random_state=0).fit(_blobs())
    Xs, ys = gm.sample(4000)
    assert Xs.shape == (4000, 2) and ys.shape == (4000,)
    assert np.all(np.diff(ys) >= 0)
    for k in range(4):
        np.testing.assert_allclose(Xs[ys == k].mean(0), gm.means_[k], atol=0.1)
    Xk, yk = gm.sample(500, component=2)
    assert np.all(yk == 2)
    np.testing.assert_allclose(Xk.mean(0), gm.means_[2], atol=0.1)
    Xs2, _ = gm.sample(4000)
    np.testing.assert_array_equal(Xs, Xs2)  # seeded by random_state, as scikit-learn


@pytest.mark.parametrize("cov_type", COV_TYPES)
def test_log_prob_is_differentiable_and_matches_score_samples(cov_type):
    X = _blobs()
    gm = GaussianMixture(4, covariance_type=cov_type, random_state=0).fit(X)
    x = torch.tensor(X[:5] + 0.3, requires_grad=True)
    lp = gm.log_prob(x)
    np.testing.assert_allclose(lp.detach().numpy(), gm.score_samples(X[:5] + 0.3), rtol=1e-10)
    assert torch.autograd.gradcheck(gm.log_prob, (x,))
    # Gradient ascent on log p moves a point towards the nearest mode.
    y = torch.tensor([[4.0, 1.0]], dtype=torch.float64, requires_grad=True)
    before = float(gm.log_prob(y).detach())
    for _ in range(50):
        (g,) = torch.autograd.grad(gm.log_prob(y).sum(), y)
        y = (y + 0.05 * g).detach().requires_grad_(True)
    assert float(gm.log_prob(y).detach()) > before


@pytest.mark.parametrize("cov_type", COV_TYPES)
def test_to_distribution_agrees(cov_type):
    X = _blobs()
    gm = GaussianMixture(4, covariance_type=cov_type, random_state=0).fit(X)
    dist = gm.to_distribution()
    np.testing.assert_allclose(dist.log_prob(torch.as_tensor(X)).numpy(), gm.score_samples(X), rtol=1e-8)
    assert dist.sample((7,)).shape == (7, 2)


def test_sklearn_clone_and_params():
    base = pytest.importorskip("sklearn.base")
    gm = GaussianMixture(3, covariance_type="diag", device="cpu", dtype="float32")
    twin = base.clone(gm)
    assert twin.get_params() == gm.get_params()
    assert "covariance_type='diag'" in repr(gm)


def test_empty_component_is_reseeded_with_warning():
    X = _blobs()
    means = np.vstack([CENTERS, [[1e4, 1e4]]])
    with pytest.warns(RuntimeWarning, match="lost all their points"):
        gm = GaussianMixture(5, means_init=means, random_state=0).fit(X)
    assert np.isfinite(gm.means_).all() and np.isfinite(gm.covariances_).all()
    assert np.abs(gm.means_).max() < 100


@pytest.mark.parametrize("cov_type", COV_TYPES)
def test_degenerate_data_gives_finite_parameters(cov_type):
    rng = np.random.default_rng(0)
    duplicates = np.repeat(rng.normal(size=(3, 2)), 40, axis=0)
    constant = np.column_stack([rng.normal(size=120), np.full(120, 7.0)])
    outliers = np.vstack([rng.normal(size=(118, 2)), [[1e6, -1e6], [-1e6, 1e6]]])
    for X in (duplicates, constant, outliers):
        for dtype in ("float64", "float32"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                gm = GaussianMixture(4, covariance_type=cov_type, dtype=dtype, random_state=0).fit(X)
            for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
                assert np.isfinite(getattr(gm, name)).all(), (name, dtype)
            assert np.isfinite(gm.score(X))


# -------------------------------- scikit-learn's exceptions, warnings, parameters and sample types
@needs_sklearn
@pytest.mark.parametrize("cls", ESTIMATORS)
def test_not_fitted_error_is_sklearns(cls):
    est = cls(n_components=2)
    for method in ("predict", "predict_proba", "score_samples", "score"):
        with pytest.raises(sk_exceptions.NotFittedError, match="not fitted yet"):
            getattr(est, method)(blob_data())
    with pytest.raises(NotFittedError):
        est.sample(3)
    try:
        est.predict(blob_data())
    except NotFittedError as e:  # still ours, and picklable
        assert isinstance(pickle.loads(pickle.dumps(e)), sk_exceptions.NotFittedError)


@needs_sklearn
@pytest.mark.parametrize("cls", ESTIMATORS)
def test_convergence_warning_is_sklearns_and_ours(cls):
    with pytest.warns(sk_exceptions.ConvergenceWarning) as record:
        cls(n_components=2, max_iter=1, random_state=0).fit(blob_data())
    assert any(issubclass(w.category, ConvergenceWarning) and w.category.__name__ == "ConvergenceWarning" for w in record)
    assert pickle.loads(pickle.dumps(record[0].category)) is record[0].category


@needs_sklearn
@pytest.mark.parametrize("cls", ESTIMATORS)
def test_params_sorted_and_repr_as_sklearn(cls):
    kw = {"n_components": 3, "covariance_type": "diag", "random_state": 0, "tol": 1e-4}
    ours, ref = cls(**kw), SK[cls](**kw)
    names = list(ours.get_params())
    assert names == sorted(names)
    assert repr(ours) == " ".join(repr(ref).split())  # scikit-learn wraps long lines; ours is one line
    shared = set(ref.get_params())
    assert shared <= set(names)  # every scikit-learn parameter, plus device/dtype/chunk_size/callback
    assert {n: ours.get_params()[n] for n in shared if n != "init_params"} == {n: v for n, v in ref.get_params().items() if n != "init_params"}
    twin = sklearn.base.clone(ours)
    assert twin is not ours and twin.get_params() == ours.get_params()
    assert ours.set_params(max_iter=7) is ours and ours.max_iter == 7


@needs_sklearn
@pytest.mark.filterwarnings("ignore:covariance is not symmetric positive-semidefinite")  # sklearn's float32 sampling
@pytest.mark.parametrize("cls", ESTIMATORS)
def test_sample_types_as_sklearn(cls):
    X = blob_data(6)
    for Xin in (X, X.astype(np.float32), X.tolist()):
        est = cls(n_components=3, random_state=0).fit(Xin)
        Xs, ys = est.sample(7)
        ref_Xs, ref_ys = SK[cls](n_components=3, random_state=0).fit(Xin).sample(7)
        assert (type(Xs), Xs.dtype, Xs.shape) == (type(ref_Xs), ref_Xs.dtype, ref_Xs.shape) == (np.ndarray, np.float64, (7, 3))
        assert (type(ys), ys.dtype, ys.shape) == (type(ref_ys), ref_ys.dtype, ref_ys.shape)
        assert np.all(np.diff(ys) >= 0) and set(ys.tolist()) <= {0, 1, 2}  # grouped by component
    est = cls(n_components=3, random_state=0).fit(torch.as_tensor(X, dtype=torch.float32))
    Xs, ys = est.sample(4)
    assert isinstance(Xs, torch.Tensor) and Xs.dtype == torch.float32 and ys.dtype == torch.int64


# ----------------------------------------------------------------------- scikit-learn's own checks
if SKLEARN_16:
    from sklearn.utils.estimator_checks import parametrize_with_checks

    with warnings.catch_warnings():  # "does not inherit from BaseEstimator": by design (torch, not sklearn)
        warnings.filterwarnings("ignore", message="Estimator .* does not inherit from")
        _checks = parametrize_with_checks([GaussianMixture(), BayesianGaussianMixture()])

    @_checks
    def test_sklearn_estimator_checks(estimator, check):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            check(estimator)
