"""Tests of gmmgan.gan.config: defaults, YAML files, dotted overrides, type checks, the shipped configs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gmmgan.gan.config import (
    PRIOR_KINDS,
    TrainConfig,
    config_from_dict,
    config_to_dict,
    load_config,
    save_config,
    valid_keys,
)

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


def test_defaults_are_the_quickstart():
    cfg = load_config()
    assert (cfg.data.name, cfg.prior.kind, cfg.prior.n_components) == ("grid", "fitted_gmm", 25)


def test_overrides_are_typed_and_coerced():
    cfg = load_config(None, ["prior.kind=gaussian", "schedule.total_kimg=10", "optim.g_lr=1e-3",
                             "optim.betas=[0.0, 0.99]", "bf16=false", "data.n=null", "nets.g_width=none",
                             "schedule.batch_size=64.0", "seed=3", "data.root=/x/y"])
    assert cfg.prior.kind == "gaussian" and cfg.schedule.total_kimg == 10.0
    assert cfg.optim.g_lr == 1e-3 and isinstance(cfg.optim.g_lr, float)
    assert cfg.optim.betas == (0.0, 0.99) and cfg.bf16 is False
    assert cfg.data.n is None and cfg.nets.g_width is None
    assert cfg.schedule.batch_size == 64 and isinstance(cfg.schedule.batch_size, int)
    assert cfg.seed == 3 and cfg.data.root == "/x/y"
    assert load_config(None, ["optim.betas=0.9,0.99"]).optim.betas == (0.9, 0.99)


@pytest.mark.parametrize("override, message", [
    ("prior.kindd=gaussian", "unknown config key 'prior.kindd' (did you mean prior.kind?); valid keys: data.name"),
    ("prior=3", "unknown config key 'prior'"),
    ("nokey", "is not key=value"),
    ("schedule.batch_size=1.5", "schedule.batch_size must be an integer, got 1.5"),
    ("schedule.batch_size=true", "schedule.batch_size must be an integer"),
    ("optim.g_lr=fast", "optim.g_lr must be a number, got 'fast'"),
    ("optim.g_lr=-1", "optim.g_lr must be > 0"),
    ("optim.betas=[0.5]", "optim.betas must be a list of 2 numbers"),
    ("optim.betas=[0.5, 1.0]", "optim.betas must both be in [0, 1)"),
    ("bf16=maybe", "bf16 must be true or false"),
    ("prior.kind=vae", "prior.kind must be one of"),
    ("loss.kind=lsgan", "loss.kind must be one of"),
    ("loss.r2_gamma=-1", "loss.r2_gamma must be >= 0"),
    ("device=tpu", "device must be auto, cpu, cuda or cuda:N"),
    ("schedule.total_kimg=inf", "schedule.total_kimg must be finite"),
    ("prior.n_components=many", "prior.n_components must be an integer or 'auto', got 'many'"),
    ("prior.n_components=0", "prior.n_components must be > 0"),
])
def test_bad_overrides(override, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        load_config(None, [override])


def test_automatic_k_only_for_fitted_mixtures():
    assert load_config(None, ["prior.n_components=auto"]).prior.n_components == "auto"
    assert load_config(None, ["prior.kind=gmm_reg", "prior.n_components=auto"]).prior.n_components == "auto"
    with pytest.raises(ValueError, match="'auto' needs a fitted mixture .* not prior.kind=learnable_gmm"):
        load_config(None, ["prior.kind=learnable_gmm", "prior.n_components=auto"])


def test_unknown_key_message_lists_every_valid_key():
    with pytest.raises(ValueError) as e:
        load_config(None, ["x=1"])
    for key in valid_keys():
        assert key in str(e.value)


def test_yaml_round_trip(tmp_path):
    cfg = load_config(None, ["prior.kind=learnable_gmm", "optim.betas=[0.1, 0.2]", "data.n=123"])
    save_config(cfg, tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == cfg
    assert config_from_dict(config_to_dict(cfg)) == cfg


def test_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.yaml' does not exist"):
        load_config(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("prior: [unclosed\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        load_config(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("prior: 3\n")
    with pytest.raises(ValueError, match="config section prior must be a mapping"):
        load_config(tmp_path / "list.yaml")


def test_shipped_configs_load_and_cover_the_design():
    names = {p.stem for p in CONFIGS}
    for data in ("ring", "grid"):
        assert {f"{data}_{kind}" for kind in PRIOR_KINDS} <= names
    assert {"stacked_mnist_gaussian", "stacked_mnist_fitted_gmm", "stacked_mnist_dquarter_gaussian",
            "stacked_mnist_dquarter_fitted_gmm", "mnist500_gaussian", "mnist500_fitted_gmm",
            "fashion_mnist_gaussian", "fashion_mnist_fitted_gmm", "mnist_cluster_fitted_gmm"} <= names
    for path in CONFIGS:
        cfg = load_config(path)
        assert isinstance(cfg, TrainConfig)
        # Each name says its prior, except the CPU quick start's, whose twin is mnist_quick_gaussian.
        stem = "mnist_quick_fitted_gmm" if path.stem == "mnist_quick" else path.stem
        assert cfg.prior.kind in stem.replace("dquarter_", "")


# ---------------------------------------------------------------------- bad values, files and keys
@pytest.mark.parametrize("override, message", [
    ("device=cuda:x", "device must be auto, cpu, cuda or cuda:N"),
    ("device=cuda:-1", "device must be auto, cpu, cuda or cuda:N"),
    ("data.resolution=0", "data.resolution must be > 0"),
])
def test_config_values_checked_before_training(override, message):
    with pytest.raises(ValueError, match=message):
        load_config(None, [override])


def test_config_path_that_is_a_folder(tmp_path):
    with pytest.raises(IsADirectoryError, match="is a folder; give a YAML file"):
        load_config(tmp_path)


def test_unknown_config_key_suggests_the_close_one():
    with pytest.raises(ValueError, match=r"unknown config key 'schedule.total_kim' \(did you mean schedule.total_kimg\?\)"):
        load_config(None, ["schedule.total_kim=3"])
    with pytest.raises(ValueError, match=r"'total_kimg' \(did you mean schedule.total_kimg\?\)"):  # section left out
        load_config(None, ["total_kimg=3"])
    with pytest.raises(ValueError, match=r"unknown config key 'zzz'; valid keys: data.name"):  # nothing close: no hint
        load_config(None, ["zzz=3"])
