"""GaussianMixture.save / load (gmmgan.mixture._io): paths that are folders, bad options, damaged files."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gmmgan import GaussianMixture

X = np.random.default_rng(0).normal(size=(60, 2))
COV_TYPES = ["full", "tied", "diag", "spherical"]


def _blobs(n_per=150, seed=0):
    """Four separated 2-D clusters (as in test_mixture_api)."""
    rng = np.random.default_rng(seed)
    centers = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])
    return np.concatenate([c + rng.normal(scale=0.5, size=(n_per, 2)) for c in centers])


@pytest.fixture(scope="module")
def fitted():
    return GaussianMixture(2, random_state=0).fit(X)


def test_save_to_a_folder_is_a_clear_error_and_leaves_the_folder_alone(fitted, tmp_path):
    (tmp_path / "keep.txt").write_text("x")
    with pytest.raises(IsADirectoryError, match="is a folder; give a file name"):
        fitted.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]  # no stray temporary file
    assert sorted(p.name for p in tmp_path.parent.iterdir() if p.name.startswith(tmp_path.name + ".")) == []


def test_load_a_folder_or_bad_array_kind(fitted, tmp_path):
    with pytest.raises(IsADirectoryError, match="is a folder, not a model file"):
        GaussianMixture.load(tmp_path)
    path = fitted.save(tmp_path / "m.safetensors")
    with pytest.raises(ValueError, match="array_kind must be 'numpy', 'torch' or None"):
        GaussianMixture.load(path, array_kind="jax")
    with pytest.raises(FileNotFoundError, match="does not exist; write one with"):
        GaussianMixture.load(tmp_path / "nope.safetensors")


def _damaged_model(fitted, tmp_path, *, tensors=None, metadata=None):
    from safetensors.torch import load_file, safe_open, save_file

    good = fitted.save(tmp_path / "good.safetensors")
    with safe_open(str(good), framework="pt") as f:
        header = f.metadata()
    path = tmp_path / "damaged.safetensors"
    save_file({**load_file(str(good)), **(tensors or {})}, str(path), metadata={**header, **(metadata or {})})
    return path


@pytest.mark.parametrize("change, message", [
    ({"metadata": {"params": "{bad json"}}, "unreadable parameters"),
    ({"metadata": {"params": '{"bogus": 1}'}}, "unreadable parameters"),
    ({"metadata": {"fitted": "[1, 2]"}}, "unreadable parameters"),
    ({"metadata": {"params": '{"covariance_type": "x"}'}}, "do not have the shapes of one mixture"),
    ({"tensors": {"means": torch.zeros(3, 2, dtype=torch.float64)}}, "do not have the shapes of one mixture"),
    ({"tensors": {"precisions_cholesky": torch.zeros(2, 3, 3, dtype=torch.float64)}},
     "do not have the shapes of one mixture"),
    ({"tensors": {"weights": torch.tensor([float("nan"), 1.0], dtype=torch.float64)}}, "NaN or infinite"),
])
def test_model_file_damaged_inside_is_a_clear_error(fitted, tmp_path, change, message):
    path = _damaged_model(fitted, tmp_path, **change)
    with pytest.raises(ValueError, match=f"is corrupt: .*{message}.*Re-create it"):
        GaussianMixture.load(path)


def test_model_without_metadata_keys_is_a_clear_error(fitted, tmp_path):
    from safetensors.torch import load_file, safe_open, save_file

    good = fitted.save(tmp_path / "good.safetensors")
    with safe_open(str(good), framework="pt") as f:
        header = {k: v for k, v in f.metadata().items() if k != "params"}
    save_file(load_file(str(good)), str(tmp_path / "b.safetensors"), metadata=header)
    with pytest.raises(ValueError, match="is corrupt: unreadable parameters"):
        GaussianMixture.load(tmp_path / "b.safetensors")


@pytest.mark.parametrize("cov_type", COV_TYPES)
def test_save_load_round_trip(tmp_path, cov_type):
    X = _blobs()
    gm = GaussianMixture(4, covariance_type=cov_type, random_state=3).fit(X)
    path = gm.save(tmp_path / "sub" / "model.safetensors")
    back = GaussianMixture.load(path)
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_", "precisions_"):
        np.testing.assert_array_equal(getattr(back, name), getattr(gm, name))
    assert back.get_params()["covariance_type"] == cov_type and back.random_state == 3
    assert (back.n_iter_, back.converged_, back.lower_bound_) == (gm.n_iter_, gm.converged_, gm.lower_bound_)
    np.testing.assert_array_equal(back.predict(X), gm.predict(X))
    assert not list((tmp_path / "sub").glob("*.tmp"))


def test_save_load_torch_model(tmp_path):
    X = torch.as_tensor(_blobs(), dtype=torch.float32)
    gm = GaussianMixture(4, random_state=0).fit(X)
    back = GaussianMixture.load(gm.save(tmp_path / "m.safetensors"))
    assert isinstance(back.means_, torch.Tensor) and back.means_.dtype == torch.float32
    torch.testing.assert_close(back.score_samples(X), gm.score_samples(X))


def test_load_corrupt_or_foreign_files(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"this is not a safetensors file")
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        GaussianMixture.load(bad)
    gm = GaussianMixture(2, random_state=0).fit(_blobs())
    good = gm.save(tmp_path / "good.safetensors")
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(good.read_bytes()[:-40])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        GaussianMixture.load(truncated)
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="not a gmmgan GaussianMixture"):
        GaussianMixture.load(tmp_path / "other.safetensors")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        GaussianMixture.load(tmp_path / "missing.safetensors")
