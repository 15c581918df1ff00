"""GaussianMixture.load checks that a (hand-edited) file holds one valid mixture.

The file's arrays get the checks the constructor's ``*_init`` arrays get (weights in [0, 1] summing
to 1, positive-definite covariances, ...), they must agree with each other and with the saved
parameters, and every error names the file and the field.
"""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, safe_open, save_file

from gmmgan import GaussianMixture

X = np.random.default_rng(0).normal(size=(200, 3)) * [1.0, 2.0, 0.5]


@pytest.fixture(scope="module", params=["full", "tied", "diag", "spherical"])
def saved(request, tmp_path_factory):
    gm = GaussianMixture(3, covariance_type=request.param, random_state=0).fit(X)
    return gm.save(tmp_path_factory.mktemp("models") / f"{request.param}.safetensors")


def _edit(saved, tmp_path, tensors=None, params=None, fitted=None):
    """A copy of the saved model with some tensors replaced (a function of the old ones) or metadata changed."""
    old = load_file(str(saved))
    with safe_open(str(saved), framework="pt") as f:
        header = f.metadata()
    new = {**old, **{name: make(old[name]) for name, make in (tensors or {}).items()}}
    for key, change in (("params", params), ("fitted", fitted)):
        if change:
            header = {**header, key: json.dumps({**json.loads(header[key]), **change})}
    path = tmp_path / "edited.safetensors"
    save_file({k: v.contiguous() for k, v in new.items()}, str(path), metadata=header)
    return path


def _load_fails(path, *pieces):
    with pytest.raises(ValueError) as info:
        GaussianMixture.load(path)
    message = str(info.value)
    assert str(path) in message and "is corrupt" in message and "Re-create it" in message, message
    for piece in pieces:
        assert piece in message, f"{piece!r} not in {message!r}"
    assert "\n" not in message


def test_an_unedited_file_still_loads(saved):
    gm = GaussianMixture.load(saved)
    assert gm.predict(X).shape == (200,)


def test_weights_summing_to_more_than_one(saved, tmp_path):
    _load_fails(_edit(saved, tmp_path, {"weights": lambda w: w * 1.8}), "field 'weights'", "normalized", "1.80000")


def test_negative_weights(saved, tmp_path):
    def negative(w):
        w = w.clone()
        w[0], w[1] = -0.2, w[1] + w[0] + 0.2  # still sums to 1
        return w

    _load_fails(_edit(saved, tmp_path, {"weights": negative}), "field 'weights'", "range [0, 1]")


def test_negative_covariances(saved, tmp_path):
    _load_fails(_edit(saved, tmp_path, {"covariances": lambda c: -c}), "field 'covariances'", "positive")


def test_covariances_that_do_not_match_the_precisions(saved, tmp_path):
    # Still positive definite, but no longer the Gaussians that the precision factors describe.
    _load_fails(_edit(saved, tmp_path, {"covariances": lambda c: 2 * c}),
                "fields 'covariances' and 'precisions_cholesky'", "do not describe the same Gaussians")


def test_a_non_positive_precision_factor(saved, tmp_path):
    _load_fails(_edit(saved, tmp_path, {"precisions_cholesky": lambda p: -p}), "field 'precisions_cholesky'")


def test_n_components_disagreeing_with_the_arrays(saved, tmp_path):
    _load_fails(_edit(saved, tmp_path, params={"n_components": 5}), "field 'n_components'", "is 5", "hold 3 components")


def test_n_features_disagreeing_with_the_means(saved, tmp_path):
    _load_fails(_edit(saved, tmp_path, fitted={"n_features_in_": 7}), "field 'n_features_in_'", "3 features")


def test_bad_saved_parameters(saved, tmp_path):
    _load_fails(_edit(saved, tmp_path, params={"reg_covar": -1.0}), "field 'params'", "reg_covar")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.int64])
def test_arrays_that_are_not_float32_or_float64(saved, tmp_path, dtype):
    _load_fails(_edit(saved, tmp_path, {"means": lambda m: m.to(dtype)}), "field 'means'",
                str(dtype).replace("torch.", ""), "float32 or float64")


def test_arrays_of_mixed_dtypes(saved, tmp_path):
    _load_fails(_edit(saved, tmp_path, {"means": lambda m: m.float()}), "mix dtypes", "'means' float32")


@pytest.mark.parametrize("field", ["weights", "means", "covariances", "precisions_cholesky"])
def test_nan_names_the_field(saved, tmp_path, field):
    def with_nan(t):
        t = t.clone()
        t.view(-1)[0] = float("nan")
        return t

    _load_fails(_edit(saved, tmp_path, {field: with_nan}), f"field '{field}'", "NaN or infinite")


@pytest.mark.filterwarnings("ignore:Covariance of component:RuntimeWarning", "ignore::UserWarning")  # on purpose
def test_a_float32_model_of_ill_conditioned_data_still_loads(tmp_path):
    # float32 rounding of an ill-conditioned (nearly collinear) fit must not look like an edit.
    rng = np.random.default_rng(1)
    data = rng.normal(size=(2000, 4)) * [1.0, 1e3, 1e-2, 10.0]
    data[:, 3] = 2 * data[:, 0] + 1e-4 * rng.normal(size=2000)
    for covariance_type in ("full", "tied"):
        gm = GaussianMixture(3, covariance_type=covariance_type, dtype="float32", random_state=0, max_iter=20).fit(data)
        loaded = GaussianMixture.load(gm.save(tmp_path / f"{covariance_type}.safetensors"))
        np.testing.assert_allclose(loaded.score_samples(data[:50]), gm.score_samples(data[:50]), rtol=1e-5)


def test_precisions_init_errors_name_the_component():
    bad = np.stack([np.eye(3), -np.eye(3)])
    with pytest.raises(ValueError, match="positive-definite .component 1 is not"):
        GaussianMixture(2, precisions_init=bad).fit(X)
