"""What a scikit-learn user checks first: the estimator API, errors, warnings and fitted values.

Regression tests for the differences a parity audit found (scikit-learn's exception and warning
classes, its input checks and messages, sorted parameters and repr, verbose output, float64
samples), plus parity of what the other parity tests do not compare (precisions_, predict_proba,
bic/aic, fit_predict, max_iter=1, warm-start chains, n_init's choice, every Bayesian attribute).
"""

import pickle
import re
import warnings

import numpy as np
import pytest
import torch

from gmmgan import BayesianGaussianMixture, GaussianMixture
from gmmgan.mixture import ConvergenceWarning, NotFittedError

sk_mixture = pytest.importorskip("sklearn.mixture")
sk_exceptions = pytest.importorskip("sklearn.exceptions")
sklearn = pytest.importorskip("sklearn")

COV_TYPES = ["full", "tied", "diag", "spherical"]
ESTIMATORS = [GaussianMixture, BayesianGaussianMixture]
SK = {GaussianMixture: sk_mixture.GaussianMixture, BayesianGaussianMixture: sk_mixture.BayesianGaussianMixture}
SKLEARN_16 = tuple(int(p) for p in sklearn.__version__.split(".")[:2]) >= (1, 6)


def _data(seed=0, n_per=40, d=3, k=3):
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.normal(size=(n_per, d)) + c for c in rng.normal(scale=4, size=(k, d))])


def _rel(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape
    return np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300)


def _same_init(X, cov_type, k=3):
    """Initial weights/means/precisions from scikit-learn, to start both libraries alike."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        init = sk_mixture.GaussianMixture(k, covariance_type=cov_type, max_iter=0, random_state=0).fit(X)
    return {"weights_init": init.weights_, "means_init": init.means_, "precisions_init": init.precisions_}


def _fit_quietly(est, X):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return est.fit(X)


def _assert_same_gm(ours, ref, X):
    assert (ours.n_iter_, ours.converged_) == (ref.n_iter_, ref.converged_)
    for name in ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_"):
        assert _rel(getattr(ours, name), getattr(ref, name)) < 1e-6, name
    assert ours.lower_bound_ == pytest.approx(ref.lower_bound_, rel=1e-6)
    np.testing.assert_allclose(ours.lower_bounds_, ref.lower_bounds_, rtol=1e-6)
    assert _rel(ours.predict_proba(X), ref.predict_proba(X)) < 1e-6
    assert _rel(ours.score_samples(X), ref.score_samples(X)) < 1e-6
    np.testing.assert_array_equal(ours.predict(X), ref.predict(X))
    for method in ("score", "bic", "aic"):
        assert getattr(ours, method)(X) == pytest.approx(getattr(ref, method)(X), rel=1e-6), method


# ------------------------------------------------------------------ GaussianMixture parity
@pytest.mark.parametrize("cov_type", COV_TYPES)
def test_gaussian_mixture_matches_sklearn_from_same_start(cov_type):
    X = _data()
    kw = dict(covariance_type=cov_type, tol=1e-5, **_same_init(X, cov_type))
    _assert_same_gm(_fit_quietly(GaussianMixture(3, **kw), X), _fit_quietly(sk_mixture.GaussianMixture(3, **kw), X), X)
    np.testing.assert_array_equal(GaussianMixture(3, **kw).fit_predict(X), sk_mixture.GaussianMixture(3, **kw).fit_predict(X))
    # max_iter=1 stops unconverged with scikit-learn's ConvergenceWarning, after the same one step.
    one = dict(kw, max_iter=1)
    with pytest.warns(sk_exceptions.ConvergenceWarning, match="did not converge"):
        ours = GaussianMixture(3, **one).fit(X)
    _assert_same_gm(ours, _fit_quietly(sk_mixture.GaussianMixture(3, **one), X), X)


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_parameter_values_sklearn_accepts(cls, capsys):
    """tol=0 (a fixed number of iterations), reg_covar=0 and verbose=True are valid, as in scikit-learn."""
    X = _data(9)
    with pytest.warns(sk_exceptions.ConvergenceWarning):
        est = cls(n_components=2, tol=0, max_iter=4, random_state=0).fit(X)
    assert est.n_iter_ == 4 and not est.converged_
    cls(n_components=2, reg_covar=0.0, verbose=True, random_state=0).fit(X)
    assert capsys.readouterr().out.startswith("Initialization 0\n")
    for bad in ({"tol": -1e-3}, {"reg_covar": -1e-6}, {"verbose": -1}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            cls(n_components=2, **bad).fit(X)


def test_zero_tol_and_reg_covar_match_sklearn():
    X = _data(10)
    kw = dict(covariance_type="full", tol=0, reg_covar=0.0, max_iter=5, **_same_init(X, "full"))
    _assert_same_gm(_fit_quietly(GaussianMixture(3, **kw), X), _fit_quietly(sk_mixture.GaussianMixture(3, **kw), X), X)


@pytest.mark.parametrize("cov_type", COV_TYPES)
def test_zero_reg_covar_on_collapsed_data_fails_as_sklearn(cov_type):
    """reg_covar=0 asks for no regularisation: a covariance that cannot be factored is sklearn's error."""
    X = np.vstack((np.ones((5, 5)), np.zeros((5, 5))))
    msg = re.escape("Fitting the mixture model failed because some components have ill-defined empirical covariance")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(ValueError, match=msg):
            GaussianMixture(10, reg_covar=0, covariance_type=cov_type, random_state=0).fit(X)
        gm = GaussianMixture(10, reg_covar=1e-6, covariance_type=cov_type, random_state=0).fit(X)  # jitter, no error
    assert np.isfinite(gm.precisions_cholesky_).all()


@pytest.mark.parametrize("cov_type", ["full", "diag"])
def test_warm_start_chain_matches_sklearn(cov_type):
    """Each warm fit starts from the previous solution and lower bound, as scikit-learn's."""
    X = _data(1)
    kw = dict(covariance_type=cov_type, tol=1e-5, max_iter=2, warm_start=True, **_same_init(X, cov_type))
    ours, ref = GaussianMixture(3, **kw), sk_mixture.GaussianMixture(3, **kw)
    for _ in range(3):
        _assert_same_gm(_fit_quietly(ours, X), _fit_quietly(ref, X), X)


def test_n_init_keeps_the_initialisation_with_the_highest_lower_bound():
    X = _data(2)
    seen = []
    gm = _fit_quietly(GaussianMixture(3, n_init=5, init_params="random", max_iter=5, random_state=0, callback=seen.append), X)
    runs = {}
    for s in seen:
        runs.setdefault(s["init"], []).append(s["lower_bound"])
    assert len(runs) == 5 and len({r[-1] for r in runs.values()}) > 1  # the inits differ
    best = max(runs.values(), key=lambda r: r[-1])
    assert gm.lower_bound_ == best[-1] and gm.lower_bounds_ == best and gm.n_iter_ == len(best)


class _GivenDraws(np.random.RandomState):
    """A RandomState whose draws for scikit-learn's random inits are the ones gmmgan makes."""

    def __init__(self, chosen=None, uniform=None):
        super().__init__(0)
        self._chosen, self._uniform = chosen, uniform

    def choice(self, *args, **kwargs):  # random_from_data's rows
        return self._chosen

    def uniform(self, *args, **kwargs):  # random's responsibilities
        return self._uniform.copy()


@pytest.mark.parametrize("init_params", ["random", "random_from_data"])
@pytest.mark.parametrize("cov_type", COV_TYPES)
def test_random_inits_match_sklearn_given_the_same_draws(init_params, cov_type):
    """From the same random draws both random inits start and end where scikit-learn's do.

    Data centred, as the other parity tests (tied + random_from_data sums x x^T over all rows,
    which scikit-learn does around the origin). A regression for tied + random_from_data, whose
    covariance gmmgan summed over the K drawn points only.
    """
    from gmmgan.mixture._base import make_generator

    X = _data(15, d=2)
    X = X - X.mean(0)
    seed, k = 5, 3
    chosen = torch.randperm(len(X), generator=make_generator(seed))[:k].numpy()
    uniform = torch.rand(len(X), k, generator=make_generator(seed), dtype=torch.float64).numpy()
    draws = lambda: _GivenDraws(chosen, uniform)
    kw = {"covariance_type": cov_type, "init_params": init_params, "tol": 1e-6}
    for max_iter in (0, 40):
        ours = _fit_quietly(GaussianMixture(k, random_state=seed, max_iter=max_iter, **kw), X)
        ref = _fit_quietly(sk_mixture.GaussianMixture(k, random_state=draws(), max_iter=max_iter, **kw), X)
        assert (ours.n_iter_, ours.converged_) == (ref.n_iter_, ref.converged_)
        for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
            assert _rel(getattr(ours, name), getattr(ref, name)) < 1e-6, (max_iter, name)
    ours = _fit_quietly(BayesianGaussianMixture(n_components=k, random_state=seed, max_iter=20, **kw), X)
    ref = _fit_quietly(sk_mixture.BayesianGaussianMixture(n_components=k, random_state=draws(), max_iter=20, **kw), X)
    assert ours.n_iter_ == ref.n_iter_
    for name in ("weights_", "means_", "covariances_", "mean_precision_", "degrees_of_freedom_"):
        assert _rel(getattr(ours, name), getattr(ref, name)) < 1e-6, name


# ------------------------------------------------------------------ Bayesian parity
def _same_resp(monkeypatch, resp):
    def sk_init(self, X, random_state, xp=None):
        self._initialize(X, resp.astype(X.dtype))

    def our_init(self, data, source, shift, generator):
        blocks, start = [], 0
        for x in data.chunks():
            blocks.append((x, torch.as_tensor(resp[start : start + len(x)], dtype=x.dtype)))
            start += len(x)
        return blocks, torch.zeros(resp.shape[1], source.n_features, dtype=source.dtype)

    monkeypatch.setattr(sk_mixture.BayesianGaussianMixture, "_initialize_parameters", sk_init)
    monkeypatch.setattr(BayesianGaussianMixture, "_initial_resp", our_init)


BGM_ATTRS = ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_", "mean_precision_",
             "degrees_of_freedom_", "mean_prior_", "covariance_prior_", "mean_precision_prior_",
             "weight_concentration_prior_", "degrees_of_freedom_prior_")


@pytest.mark.parametrize("cov_type", COV_TYPES)
def test_bayesian_every_attribute_and_warm_start_match_sklearn(monkeypatch, cov_type):
    X = _data(3, d=2)
    rng = np.random.default_rng(0)
    resp = rng.uniform(size=(len(X), 4))
    _same_resp(monkeypatch, resp / resp.sum(1, keepdims=True))
    kw = {"n_components": 4, "covariance_type": cov_type, "weight_concentration_prior_type": "dirichlet_distribution",
              "mean_precision_prior": 0.5, "tol": 1e-6, "max_iter": 3, "warm_start": True}
    ours, ref = BayesianGaussianMixture(**kw), sk_mixture.BayesianGaussianMixture(**kw)
    for _ in range(2):
        _fit_quietly(ours, X)
        _fit_quietly(ref, X)
        assert (ours.n_iter_, ours.converged_) == (ref.n_iter_, ref.converged_)
        for name in BGM_ATTRS + ("weight_concentration_",):
            assert _rel(getattr(ours, name), getattr(ref, name)) < 1e-6, name
        assert ours.lower_bound_ == pytest.approx(float(np.squeeze(ref.lower_bound_)), rel=1e-6)
        np.testing.assert_allclose(ours.lower_bounds_, np.ravel(ref.lower_bounds_), rtol=1e-6)
        assert _rel(ours.predict_proba(X), ref.predict_proba(X)) < 1e-6
        np.testing.assert_array_equal(ours.predict(X), ref.predict(X))


# ------------------------------------------------------------------ estimator API
@pytest.mark.parametrize("cls", ESTIMATORS)
def test_not_fitted_error_is_sklearns(cls):
    est = cls(n_components=2)
    for method in ("predict", "predict_proba", "score_samples", "score"):
        with pytest.raises(sk_exceptions.NotFittedError, match="not fitted yet"):
            getattr(est, method)(_data())
    with pytest.raises(NotFittedError):
        est.sample(3)
    try:
        est.predict(_data())
    except NotFittedError as e:  # still ours, and picklable
        assert isinstance(pickle.loads(pickle.dumps(e)), sk_exceptions.NotFittedError)


def test_error_messages_in_sklearns_words():
    """The texts scikit-learn's own mixture tests match (re.escape'd there), for ported tests."""
    X = _data(11, d=2)
    with pytest.raises(NotFittedError, match=re.escape(
            "This GaussianMixture instance is not fitted yet. Call 'fit' with appropriate arguments before using this estimator.")):
        GaussianMixture(2).predict(X)
    with pytest.raises(ValueError, match=re.escape("The parameter 'weights' should have the shape of (2,), but got (2, 1)")):
        GaussianMixture(2, weights_init=np.full((2, 1), 0.5)).fit(X)
    with pytest.raises(ValueError, match="The parameter 'means' should have the shape of "):
        GaussianMixture(2, means_init=np.zeros((3, 2))).fit(X)
    with pytest.raises(ValueError, match="The parameter 'full precision' should have the shape of"):
        GaussianMixture(2, precisions_init=np.ones((3, 2, 2))).fit(X)
    with pytest.raises(ValueError, match=re.escape("The parameter 'degrees_of_freedom_prior' should be greater than 1, but got 1.000.")):
        BayesianGaussianMixture(n_components=2, degrees_of_freedom_prior=1.0).fit(X)
    with pytest.raises(ValueError, match=re.escape("The parameter 'means' should have the shape of (2,), but got (3,)")):
        BayesianGaussianMixture(n_components=2, mean_prior=np.zeros(3)).fit(X)
    with pytest.raises(ValueError, match=re.escape("'full covariance_prior' should have the shape of (2, 2), but got (3, 3)")):
        BayesianGaussianMixture(n_components=2, covariance_prior=np.eye(3)).fit(X)


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_convergence_warning_is_sklearns_and_ours(cls):
    with pytest.warns(sk_exceptions.ConvergenceWarning) as record:
        cls(n_components=2, max_iter=1, random_state=0).fit(_data())
    assert any(issubclass(w.category, ConvergenceWarning) and w.category.__name__ == "ConvergenceWarning" for w in record)
    assert pickle.loads(pickle.dumps(record[0].category)) is record[0].category


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


def _without_times(text):
    # Times differ, and a change that rounds to zero may print as -0.00000 in one library.
    return re.sub(r"-(0\.0+)\b", r"\1", re.sub(r"time lapse [0-9.]+s", "time lapse Ts", text))


@pytest.mark.parametrize("verbose", [1, 2])
def test_verbose_output_is_sklearns(capsys, verbose):
    X = _data(4)
    kw = dict(covariance_type="full", tol=1e-6, verbose=verbose, verbose_interval=2, **_same_init(X, "full"))
    GaussianMixture(3, **kw).fit(X)
    ours = capsys.readouterr().out
    sk_mixture.GaussianMixture(3, **kw).fit(X)
    ref = capsys.readouterr().out
    assert "  Iteration 2" in ours
    assert _without_times(ours) == _without_times(ref)


def test_bayesian_verbose_output_is_sklearns(capsys, monkeypatch):
    X = _data(5, d=2)
    resp = np.random.default_rng(1).uniform(size=(len(X), 3))
    _same_resp(monkeypatch, resp / resp.sum(1, keepdims=True))
    kw = {"n_components": 3, "max_iter": 6, "verbose": 2, "verbose_interval": 2}
    _fit_quietly(BayesianGaussianMixture(**kw), X)
    ours = capsys.readouterr().out
    _fit_quietly(sk_mixture.BayesianGaussianMixture(**kw), X)
    assert _without_times(ours) == _without_times(capsys.readouterr().out)


def test_float32_model_scores_float64_data_in_float64_as_sklearn():
    X = _data(13)
    ours = GaussianMixture(3, random_state=0).fit(X.astype(np.float32))
    ref = sk_mixture.GaussianMixture(3, random_state=0).fit(X.astype(np.float32))
    assert ours.means_.dtype == ref.means_.dtype == np.float32
    for data in (X, X.astype(np.float32), X.astype(np.int64)):
        for method in ("score_samples", "predict_proba"):
            assert getattr(ours, method)(data).dtype == getattr(ref, method)(data).dtype, (method, data.dtype)
    # The same float32 model in both (from_sklearn): scored in float64, not to float32's 1e-7 only.
    np.testing.assert_allclose(GaussianMixture.from_sklearn(ref).score_samples(X), ref.score_samples(X), rtol=1e-6)
    t = torch.as_tensor(X, dtype=torch.float32)
    tm = GaussianMixture(3, random_state=0).fit(t)
    assert tm.score_samples(t).dtype == torch.float32 and tm.score_samples(t.double()).dtype == torch.float64
    assert GaussianMixture(3, random_state=0, dtype="float32").fit(X).score_samples(X).dtype == np.float32  # asked for


@pytest.mark.filterwarnings("ignore:covariance is not symmetric positive-semidefinite")  # sklearn's float32 sampling
@pytest.mark.parametrize("cls", ESTIMATORS)
def test_sample_types_as_sklearn(cls):
    X = _data(6)
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


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_inputs_accepted_and_refused_as_sklearn(cls):
    X = _data(7)
    ref = cls(n_components=2, random_state=0).fit(X)
    # Numbers held as Python objects are numbers (scikit-learn converts them too).
    objects = cls(n_components=2, random_state=0).fit(X.astype(object))
    np.testing.assert_array_equal(objects.means_, ref.means_)
    np.testing.assert_array_equal(objects.predict(X.astype(object)), ref.predict(X))
    bad = X.astype(object)
    bad[0, 0] = {"foo": "bar"}
    with pytest.raises(TypeError, match="argument must be .* string.* number"):
        cls(n_components=2).fit(bad)
    with pytest.raises(ValueError, match="Complex data not supported"):
        cls(n_components=2).fit(X + 1j)
    with pytest.raises(ValueError, match=r"n_samples = 1"):
        cls(n_components=1).fit(X[:1])
    with pytest.raises(ValueError, match=r"0 feature\(s\) \(shape=\(5, 0\)\) while a minimum of 1 is required"):
        cls(n_components=1).fit(np.zeros((5, 0)))
    with pytest.raises(ValueError, match="Reshape your data"):
        ref.predict(X[0])
    with pytest.raises(ValueError, match=f"X has 2 features, but {cls.__name__} is expecting 3 features as input"):
        ref.predict(X[:, :2])


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_sparse_input_says_dense_is_required(cls):
    sparse = pytest.importorskip("scipy.sparse")
    X = sparse.csr_matrix(_data(8))
    with pytest.raises(TypeError, match="Sparse data .*toarray"):
        cls(n_components=2).fit(X)
    est = cls(n_components=2, random_state=0).fit(X.toarray())
    with pytest.raises(TypeError, match="Sparse data"):
        est.predict(X)


class _FakeFrame:
    """The little of a pandas DataFrame that feature names need (pandas is not a dependency)."""

    __module__ = "pandas.core.frame"

    def __init__(self, values, columns):
        self.values, self.columns = np.asarray(values), list(columns)
        self.shape = self.values.shape

    def __array__(self, dtype=None, copy=None):
        return self.values if dtype is None else self.values.astype(dtype)


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_feature_names_in_as_sklearn(cls):
    X = _data(12)
    frame = _FakeFrame(X, ["a", "b", "c"])
    est = cls(n_components=2, random_state=0).fit(frame)
    np.testing.assert_array_equal(est.feature_names_in_, np.array(["a", "b", "c"], dtype=object))
    np.testing.assert_array_equal(est.predict(frame), cls(n_components=2, random_state=0).fit(X).predict(X))
    with pytest.warns(UserWarning, match=f"X does not have valid feature names, but {cls.__name__} was fitted with feature names"):
        est.score_samples(X)
    with pytest.raises(ValueError, match="The feature names should match those that were passed during fit.\nFeature names unseen"):
        est.predict(_FakeFrame(X, ["a", "b", "z"]))
    with pytest.raises(ValueError, match="must be in the same order"):
        est.predict_proba(_FakeFrame(X, ["c", "b", "a"]))
    with pytest.raises(TypeError, match="only supported if all input features have string names"):
        cls(n_components=2).fit(_FakeFrame(X, ["a", 1, "c"]))
    est.fit(X)  # refitted without names: the attribute goes, and named data warns
    assert not hasattr(est, "feature_names_in_")
    with pytest.warns(UserWarning, match=f"X has feature names, but {cls.__name__} was fitted without feature names"):
        est.predict(frame)
    assert not hasattr(cls(n_components=2).fit(_FakeFrame(X, [0, 1, 2])), "feature_names_in_")  # int names: none kept


def test_feature_names_survive_from_and_to_sklearn():
    X = _data(14)
    gm = GaussianMixture(2, random_state=0).fit(_FakeFrame(X, ["a", "b", "c"]))
    back = GaussianMixture.from_sklearn(gm.to_sklearn())
    np.testing.assert_array_equal(back.feature_names_in_, gm.feature_names_in_)
    with pytest.raises(ValueError, match="feature names should match"):
        back.predict(_FakeFrame(X, ["a", "b", "z"]))


# ------------------------------------------------------------------ scikit-learn's own checks
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


def test_feature_names_survive_save_and_load(tmp_path):
    X = _data(15)
    gm = GaussianMixture(2, random_state=0).fit(_FakeFrame(X, ["a", "b", "c"]))
    back = GaussianMixture.load(gm.save(tmp_path / "m.safetensors"))
    np.testing.assert_array_equal(back.feature_names_in_, np.array(["a", "b", "c"], dtype=object))
    with pytest.raises(ValueError, match="feature names should match"):
        back.predict(_FakeFrame(X, ["a", "b", "z"]))
    plain = GaussianMixture.load(GaussianMixture(2, random_state=0).fit(X).save(tmp_path / "p.safetensors"))
    assert not hasattr(plain, "feature_names_in_")
