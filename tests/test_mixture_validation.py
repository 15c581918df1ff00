"""Every bad input to GaussianMixture is a ValueError that names the problem."""

import numpy as np
import pytest
import torch

from gmmgan import GaussianMixture
from gmmgan.mixture import NotFittedError

X = np.random.default_rng(0).normal(size=(50, 2))


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
