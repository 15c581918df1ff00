"""The one-place resolvers: the data root, 'is this ring or grid', the device."""

import warnings
from pathlib import Path

import pytest
import torch

from gmmgan._device import resolve_device
from gmmgan.data import DATASET_NAMES, GRID, RING, TOY_NAMES, resolve_data_root, toy_spec


# ----------------------------------------------------------------------------- data root
@pytest.fixture
def no_data_env(monkeypatch, tmp_path):
    monkeypatch.delenv("GMMGAN_DATA", raising=False)
    monkeypatch.delenv("GMMGAN_DATA_ROOT", raising=False)
    monkeypatch.chdir(tmp_path)
    return monkeypatch


def test_data_root_order_explicit_then_env_then_dot_data(no_data_env, tmp_path):
    assert resolve_data_root() == tmp_path.resolve() / "data"
    no_data_env.setenv("GMMGAN_DATA", str(tmp_path / "env"))
    assert resolve_data_root() == tmp_path.resolve() / "env"
    assert resolve_data_root(None) == tmp_path.resolve() / "env"
    assert resolve_data_root("") == tmp_path.resolve() / "env"  # an empty value is no value
    assert resolve_data_root("given") == Path("given")  # explicit: as given (relative stays relative)
    assert resolve_data_root(tmp_path / "x") == tmp_path / "x"


def test_data_root_env_is_made_absolute_and_expanded(no_data_env, tmp_path):
    no_data_env.setenv("HOME", str(tmp_path))
    no_data_env.setenv("GMMGAN_DATA", "~/d")
    assert resolve_data_root() == tmp_path.resolve() / "d"
    no_data_env.setenv("GMMGAN_DATA", "rel")
    assert resolve_data_root() == tmp_path.resolve() / "rel"


def test_data_root_old_variable_still_works_with_a_warning(no_data_env, tmp_path):
    no_data_env.setenv("GMMGAN_DATA_ROOT", str(tmp_path / "old"))
    with pytest.warns(FutureWarning, match="GMMGAN_DATA_ROOT is deprecated; set \\$GMMGAN_DATA"):
        assert resolve_data_root() == tmp_path.resolve() / "old"
    no_data_env.setenv("GMMGAN_DATA", str(tmp_path / "new"))  # the new name wins, silently
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_data_root() == tmp_path.resolve() / "new"


# ----------------------------------------------------------------------------- ring or grid
def test_toy_spec_is_the_one_ring_or_grid_test():
    assert toy_spec("ring") is RING and toy_spec("grid") is GRID
    assert TOY_NAMES == ("ring", "grid") and set(TOY_NAMES) <= set(DATASET_NAMES)
    for other in ("mnist", "stacked-mnist", "folder", "Ring", "ring.npy", "", None, 3):
        assert toy_spec(other) is None


# ----------------------------------------------------------------------------- device
def test_resolve_device_names_the_setting_as_the_user_wrote_it():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="unknown --device 'gpu0'"):
        resolve_device("gpu0")
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(ValueError, match="--device cuda but CUDA is not available here; use --device cpu"):
        resolve_device("cuda")
    with pytest.raises(ValueError, match="device=cuda:1 but CUDA is not available here; use device=cpu"):
        resolve_device("cuda:1", spelling="device={}")
