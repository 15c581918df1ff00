"""Every bad input to GaussianMixture (and BayesianGaussianMixture) is an error that names the problem.

Parameters, arrays, data files and fitted-model calls; scikit-learn's checks and messages where it
has them (its texts are matched by tests ported from scikit-learn).
"""

import re

import numpy as np
import pytest
import torch
from _helpers import blob_data

from gmmgan import BayesianGaussianMixture, GaussianMixture
from gmmgan.mixture import NotFittedError

try:  # a test dependency; without it the tests of scikit-learn compatibility are skipped
    import sklearn
    from sklearn import exceptions as sk_exceptions
except ImportError:
    sklearn = sk_exceptions = None
needs_sklearn = pytest.mark.skipif(sklearn is None, reason="scikit-learn is not installed")

X = np.random.default_rng(0).normal(size=(50, 2))
ESTIMATORS = [GaussianMixture, BayesianGaussianMixture]


@pytest.fixture(scope="module")
def fitted():
    return GaussianMixture(2, random_state=0).fit(X)


@pytest.mark.parametrize(
    "data, message",
    [
        (np.array([[0.0, 1.0], [np.nan, 2.0], [1.0, 1.0]]), "NaN or infinity .*row 1"),
        (np.array([[0.0, 1.0], [np.inf, 2.0], [1.0, 1.0]]), "NaN or infinity"),
        (np.zeros((0, 2)), "empty"),
        (np.zeros((5, 0)), "empty"),
        (np.arange(10.0), "1-D array .*reshape"),
        (np.zeros((2, 2, 2)), "2-D data"),
        (np.array([["a", "b"], ["c", "d"]]), "numeric"),
        (torch.tensor([[1.0, float("nan")], [0.0, 0.0]]), "NaN"),
        (iter([np.zeros((3, 2))]), "iterator .*only be read once"),
        ([np.zeros((3, 2)), np.zeros((3, 3))], "features"),
    ],
)
def test_bad_data(data, message):
    with pytest.raises(ValueError, match=message):
        GaussianMixture(1).fit(data)


def test_nan_in_streamed_chunk_names_row():
    chunks = [np.zeros((4, 2)), np.array([[1.0, 1.0], [np.nan, 0.0]])]
    with pytest.raises(ValueError, match="row 5"):
        GaussianMixture(1).fit(chunks)


@pytest.mark.parametrize(
    "params, message",
    [
        (dict(n_components=0), "n_components must be a positive int"),
        (dict(n_components=2.5), "n_components"),
        (dict(covariance_type="banana"), "Unknown covariance_type 'banana'.*'full'"),
        (dict(init_params="magic"), "Unknown init_params 'magic'"),
        (dict(tol=float("nan")), "tol must be a positive float"),
        (dict(tol=-1.0), "tol must be a positive float"),
        (dict(reg_covar=float("inf")), "reg_covar must be a positive float"),
        (dict(reg_covar=-1e-6), "reg_covar"),
        (dict(max_iter=-1), "max_iter"),
        (dict(n_init=0), "n_init"),
        (dict(chunk_size=0), "chunk_size"),
        (dict(callback=3), "callback"),
        (dict(dtype="float16"), "dtype"),
        (dict(random_state="seed"), "random_state"),
    ],
)
def test_bad_parameters(params, message):
    with pytest.raises(ValueError, match=message):
        GaussianMixture(**{"n_components": 2, **params}).fit(X)


def test_more_components_than_samples():
    with pytest.raises(ValueError, match="n_samples >= n_components .*n_components = 10, n_samples = 5"):
        GaussianMixture(10).fit(X[:5])


def test_single_sample():
    with pytest.raises(ValueError, match="n_samples >= 2"):
        GaussianMixture(1).fit(X[:1])


@pytest.mark.parametrize(
    "params, message",
    [
        (dict(weights_init=[0.5, 0.6]), "normalized"),
        (dict(weights_init=[1.0]), "shape"),
        (dict(weights_init=[-0.5, 1.5]), "range"),
        (dict(means_init=np.zeros((3, 2))), "shape"),
        (dict(precisions_init=np.zeros((2, 2, 2))), "positive-definite"),
        (dict(precisions_init=np.array([[[1.0, 2.0], [0.0, 1.0]]] * 2)), "symmetric"),
        (dict(covariance_type="diag", precisions_init=-np.ones((2, 2))), "positive"),
        (dict(covariance_type="spherical", precisions_init=np.ones(3)), "shape"),
        (dict(means_init=np.full((2, 2), np.nan)), "NaN"),
    ],
)
def test_bad_initial_parameters(params, message):
    with pytest.raises(ValueError, match=message):
        GaussianMixture(2, **params).fit(X)


def test_wrong_number_of_features_at_predict_and_score():
    gm = GaussianMixture(2, random_state=0).fit(X)
    for method in (gm.predict, gm.predict_proba, gm.score, gm.score_samples, gm.bic, gm.aic):
        with pytest.raises(ValueError, match="X has 3 features, but GaussianMixture is expecting 2 features as input"):
            method(np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"shape \(n, 2\)"):
        gm.log_prob(torch.zeros(4, 3))


def test_not_fitted():
    gm = GaussianMixture(2)
    for call in (lambda: gm.predict(X), lambda: gm.sample(3), lambda: gm.save("x.safetensors"), gm.to_distribution):
        with pytest.raises(NotFittedError, match="not fitted yet"):
            call()


def test_bad_sample_arguments():
    gm = GaussianMixture(2, random_state=0).fit(X)
    with pytest.raises(ValueError, match="n_samples"):
        gm.sample(0)
    with pytest.raises(ValueError, match="component must be an int in \\[0, 1\\]"):
        gm.sample(3, component=2)


def test_missing_and_non_npy_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        GaussianMixture(1).fit(str(tmp_path / "nope.npy"))
    (tmp_path / "x.csv").write_text("1,2\n")
    with pytest.raises(ValueError, match=".npy"):
        GaussianMixture(1).fit(str(tmp_path / "x.csv"))


def test_cuda_requested_without_cuda():
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(ValueError, match="CUDA is not available"):
        GaussianMixture(1, device="cuda").fit(X)


def test_set_params_rejects_unknown():
    with pytest.raises(ValueError, match="Invalid parameter 'n_component'"):
        GaussianMixture().set_params(n_component=3)


@pytest.mark.parametrize("host", ["memmap", "in_memory_streamed"])
def test_inference_on_streamed_data_names_a_bad_row(tmp_path, monkeypatch, host):
    # Streamed data is validated as inference reads it, as fit validates it: a memmap, and
    # in-memory data too large for the GPU (streamed from host memory; forced here on the CPU).
    from gmmgan.mixture import _data_source

    gm = GaussianMixture(2, random_state=0).fit(X)
    bad = X.copy()
    bad[37, 1] = np.nan
    if host == "memmap":
        np.save(tmp_path / "bad.npy", bad)
        bad = np.load(tmp_path / "bad.npy", mmap_mode="r")
    else:
        monkeypatch.setattr(_data_source, "_fits_on_device", lambda *a: False)
    gm.chunk_size = 16
    for method in (gm.predict, gm.score_samples, gm.score):
        with pytest.raises(ValueError, match="NaN or infinity .*row 37"):
            method(bad)
    assert gm.predict(X).shape == (50,)  # finite streamed data still works


# -------------------------------------------------------------------------------------- parameters
@pytest.mark.parametrize("params, message", [
    ({"device": "gpu"}, "device must be 'cpu', 'cuda', 'cuda:N'"),
    ({"device": "cuda:x"}, "device must be 'cpu', 'cuda', 'cuda:N'"),
    ({"verbose": "yes"}, "verbose must be a non-negative int"),
    ({"verbose": -1}, "verbose must be a non-negative int"),
    ({"verbose": 2, "verbose_interval": 0}, "verbose_interval must be a positive int"),
    ({"warm_start": "no"}, "warm_start must be True or False"),
])
@pytest.mark.parametrize("estimator", [GaussianMixture, BayesianGaussianMixture])
def test_bad_parameters_are_value_errors(estimator, params, message):
    with pytest.raises(ValueError, match=message):
        estimator(n_components=2, **params).fit(X)


@needs_sklearn
@pytest.mark.parametrize("cls", ESTIMATORS)
def test_parameter_values_sklearn_accepts(cls, capsys):
    """tol=0 (a fixed number of iterations), reg_covar=0 and verbose=True are valid, as in scikit-learn."""
    X = blob_data(9)
    with pytest.warns(sk_exceptions.ConvergenceWarning):
        est = cls(n_components=2, tol=0, max_iter=4, random_state=0).fit(X)
    assert est.n_iter_ == 4 and not est.converged_
    cls(n_components=2, reg_covar=0.0, verbose=True, random_state=0).fit(X)
    assert capsys.readouterr().out.startswith("Initialization 0\n")
    for bad in ({"tol": -1e-3}, {"reg_covar": -1e-6}, {"verbose": -1}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            cls(n_components=2, **bad).fit(X)


@pytest.mark.parametrize("estimator, params, message", [
    (GaussianMixture, {"weights_init": ["a", "b"]}, "weights_init must be an array of numbers"),
    (GaussianMixture, {"means_init": [["a", "b"], ["c", "d"]]}, "means_init must be an array of numbers"),
    (BayesianGaussianMixture, {"mean_prior": ["a", "b"]}, "mean_prior must be an array of numbers"),
])
def test_non_numeric_initial_parameters(estimator, params, message):
    with pytest.raises(ValueError, match=message):
        estimator(n_components=2, **params).fit(X)


def test_integer_device_is_a_cuda_index():
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(ValueError, match="CUDA is not available"):
        GaussianMixture(2, device=0).fit(X)


def test_error_messages_in_sklearns_words():
    """The texts scikit-learn's own mixture tests match (re.escape'd there), for ported tests."""
    X = blob_data(11, d=2)
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


# -------------------------------------------------------------------------------------------- data
def test_ragged_rows_say_every_row_needs_the_same_features():
    with pytest.raises(ValueError, match="not a rectangular array.*same number of features"):
        GaussianMixture(2).fit([[1.0, 2.0], [3.0], [4.0, 5.0]])


def test_one_sample_says_what_to_do():
    with pytest.raises(ValueError, match="n_samples >= 2.*pass at least 2 rows"):
        GaussianMixture(1).fit(X[:1])


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_inputs_accepted_and_refused_as_sklearn(cls):
    X = blob_data(7)
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
    X = sparse.csr_matrix(blob_data(8))
    with pytest.raises(TypeError, match="Sparse data .*toarray"):
        cls(n_components=2).fit(X)
    est = cls(n_components=2, random_state=0).fit(X.toarray())
    with pytest.raises(TypeError, match="Sparse data"):
        est.predict(X)


@pytest.mark.parametrize("estimator", [GaussianMixture, BayesianGaussianMixture])
def test_warm_start_on_data_of_another_width(estimator):
    gm = estimator(n_components=2, warm_start=True, max_iter=500, random_state=0).fit(X)
    with pytest.raises(ValueError, match=r"X has 3 features, but \w+ is expecting 2 features as input"):
        gm.fit(np.zeros((10, 3)))


# ----------------------------------------------------------------------------------- fitted models
def test_nan_at_predict_time_does_not_talk_about_fitting(fitted):
    with pytest.raises(ValueError, match="NaN or infinity") as info:
        fitted.predict(np.array([[np.nan, 0.0]]))
    assert "before fitting" not in str(info.value)


@pytest.mark.parametrize("kwargs", [{"n_samples": True}, {"n_samples": 2, "component": True}])
def test_sample_rejects_booleans(fitted, kwargs):
    with pytest.raises(ValueError, match="n_samples|component"):
        fitted.sample(**kwargs)


# -------------------------------------------------------------------------------------- .npy paths
def _bad_npy_files(tmp_path):
    np.save(tmp_path / "good.npy", X)
    raw = (tmp_path / "good.npy").read_bytes()
    (tmp_path / "truncated.npy").write_bytes(raw[:60])
    (tmp_path / "short_data.npy").write_bytes(raw[:400])
    (tmp_path / "text.npy").write_text("hello")
    np.save(tmp_path / "objects.npy", np.array([[1, None], [2, 3]], dtype=object), allow_pickle=True)
    np.save(tmp_path / "strings.npy", np.array([["a", "b"], ["c", "d"], ["e", "f"]]))
    return tmp_path


@pytest.mark.parametrize("name, message", [
    ("truncated.npy", "Cannot read .* as a numeric .npy array"),
    ("short_data.npy", "Cannot read .* as a numeric .npy array"),
    ("text.npy", "is not a .npy file"),
    ("objects.npy", "holds Python objects"),
    ("strings.npy", "must hold numbers, but its dtype is <U1"),
])
def test_fit_on_a_bad_npy_path(tmp_path, name, message):
    folder = _bad_npy_files(tmp_path)
    with pytest.raises(ValueError, match=message) as info:
        GaussianMixture(2).fit(folder / name)
    assert "allow_pickle" not in str(info.value)  # numpy's advice to unpickle an untrusted file


def test_bic_on_a_missing_file_says_it_does_not_exist(fitted, tmp_path):
    with pytest.raises(FileNotFoundError, match="Data file .* does not exist"):
        fitted.bic(tmp_path / "missing.npy")
