"""Bad inputs get a clear error that says what was wrong and what to do, and saved files survive.

One test per gap found in the bad-input audit (the inputs the other test files already cover are
not repeated here): library parameters and arrays, model files, priors, metrics, config files,
checkpoints, and the command line (one ``error:`` line, exit status 2, no traceback).
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from gmmgan import BayesianGaussianMixture, GaussianMixture
from gmmgan.gan.checkpoint import CHECKPOINT_NAME, load_checkpoint
from gmmgan.cli import main
from gmmgan.gan.config import load_config
from gmmgan.metrics import clustering_accuracy
from gmmgan.gan.priors import (
    FittedGMMPrior,
    FixedGMMPrior,
    GaussianPrior,
    GMMRegularizedPrior,
    LearnableGMMPrior,
)

X = np.random.default_rng(0).normal(size=(60, 2))


def cli(capsys, *argv):
    rc = main([str(a) for a in argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def assert_clean_error(rc, err, *pieces):
    assert rc == 2, err
    assert err.startswith("error:") and "Traceback" not in err, err
    for piece in pieces:
        assert piece in err, err


@pytest.fixture(scope="module")
def fitted():
    return GaussianMixture(2, random_state=0).fit(X)


# ------------------------------------------------------------------------ estimator parameters
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


def test_ragged_rows_say_every_row_needs_the_same_features():
    with pytest.raises(ValueError, match="not a rectangular array.*same number of features"):
        GaussianMixture(2).fit([[1.0, 2.0], [3.0], [4.0, 5.0]])


def test_one_sample_says_what_to_do():
    with pytest.raises(ValueError, match="n_samples >= 2.*pass at least 2 rows"):
        GaussianMixture(1).fit(X[:1])


def test_nan_at_predict_time_does_not_talk_about_fitting(fitted):
    with pytest.raises(ValueError, match="NaN or infinity") as info:
        fitted.predict(np.array([[np.nan, 0.0]]))
    assert "before fitting" not in str(info.value)


@pytest.mark.parametrize("kwargs", [{"n_samples": True}, {"n_samples": 2, "component": True}])
def test_sample_rejects_booleans(fitted, kwargs):
    with pytest.raises(ValueError, match="n_samples|component"):
        fitted.sample(**kwargs)


# --------------------------------------------------------------------------------- model files
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


# ----------------------------------------------------------------------------------- priors
@pytest.mark.parametrize("make, message", [
    (lambda: GaussianPrior(0), "z_dim must be an int >= 1"),
    (lambda: GaussianPrior(-2), "z_dim must be an int >= 1"),
    (lambda: GaussianPrior(2.5), "z_dim must be an int >= 1"),
    (lambda: FixedGMMPrior(2, 0), "n_components must be an int >= 1"),
    (lambda: FixedGMMPrior(2, 3, sigma=-1.0), "sigma must be a finite number > 0"),
    (lambda: FixedGMMPrior(2, 3, sigma=float("nan")), "sigma must be a finite number > 0"),
    (lambda: FixedGMMPrior(2, 3, mean_range=0.0), "mean_range must be a finite number > 0"),
    (lambda: LearnableGMMPrior(2, 0), "n_components must be an int >= 1"),
    (lambda: LearnableGMMPrior(2, 3, sigma_init=0.0), "sigma_init must be a finite number > 0"),
    (lambda: LearnableGMMPrior(2, 3, sigma_penalty=-0.1), "sigma_penalty must be a finite number >= 0"),
    (lambda: GMMRegularizedPrior(0, None, 3), "z_dim must be an int >= 1"),
    (lambda: GMMRegularizedPrior(2, None, 3, weight=-1.0), "weight must be a finite number >= 0"),
])
def test_prior_constructors_check_their_arguments(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_fitted_prior_noise_dim_is_checked():
    from gmmgan.gan.embed import IdentityEmbedding

    with pytest.raises(ValueError, match="noise_dim must be an int >= 0"):
        FittedGMMPrior(IdentityEmbedding((2,)), 3, noise_dim=-1)


def test_prior_sizes_accept_numpy_integers():
    assert GaussianPrior(np.int64(3)).z_dim == 3


# ---------------------------------------------------------------------------------- metrics
def test_string_labels_are_a_value_error():
    with pytest.raises(ValueError, match="labels_true must hold integer labels"):
        clustering_accuracy(["a", "b"], [0, 1])


# --------------------------------------------------------------------- config and checkpoints
def test_config_and_checkpoint_paths_that_are_folders(tmp_path):
    with pytest.raises(IsADirectoryError, match="is a folder; give a YAML file"):
        load_config(tmp_path)
    with pytest.raises(IsADirectoryError, match=f"is a folder; give the {CHECKPOINT_NAME} file"):
        load_checkpoint(tmp_path)


# ----------------------------------------------------------------------------- command line
@pytest.mark.parametrize("command", ["sample", "eval"])
def test_unknown_device_is_a_usage_error(command, tmp_path, capsys):
    rc, _, err = cli(capsys, command, tmp_path / "run", "--device", "gpu")
    assert_clean_error(rc, err, "--device", "unknown device 'gpu'", "cuda:N")


@pytest.mark.parametrize("argv, pieces", [
    (["--seed", "-1"], ["--seed", "must be at least 0"]),
    (["--reg-covar", "inf"], ["--reg-covar", "finite"]),
    (["--tol", "nan"], ["--tol", "finite"]),
])
def test_fit_bad_numbers_are_usage_errors(tmp_path, capsys, argv, pieces):
    rc, _, err = cli(capsys, "fit", "ring", "-k", "2", "-o", tmp_path / "m.safetensors", *argv)
    assert_clean_error(rc, err, *pieces)
    assert not list(tmp_path.iterdir())


def test_os_errors_name_the_path_and_the_fix(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    rc, _, err = cli(capsys, "fit", "ring", "-k", "2", "--n-samples", "200", "--no-plot", "-q",
                     "-o", tmp_path / "afile" / "m.safetensors")
    assert_clean_error(rc, err, "cannot use", "afile", "choose another path")
    assert "[Errno" not in err
    assert (tmp_path / "afile").read_text() == "x"


def test_failed_fit_with_force_keeps_the_saved_model(tmp_path, capsys):
    model = tmp_path / "m.safetensors"
    assert cli(capsys, "fit", "ring", "-k", "2", "--n-samples", "200", "--no-plot", "-q", "-o", model)[0] == 0
    before = model.read_bytes()
    bad = np.ones((20, 2))
    bad[3, 1] = np.nan
    np.save(tmp_path / "bad.npy", bad)
    rc, _, err = cli(capsys, "fit", tmp_path / "bad.npy", "-k", "2", "--no-plot", "--force", "-o", model)
    assert_clean_error(rc, err, "NaN", "row 3")
    assert model.read_bytes() == before


@pytest.fixture
def run_copy(ring_run, tmp_path):
    return shutil.copytree(ring_run, tmp_path / ring_run.name)


@pytest.mark.parametrize("override, changed", [
    ("data.name=grid", "data.name ('ring' -> 'grid')"),
    ("prior.n_components=5", "prior.n_components (8 -> 5)"),
    ("seed=3", "seed (0 -> 3)"),
])
def test_resume_refuses_settings_that_change_what_the_checkpoint_is(run_copy, capsys, override, changed):
    saved = {name: (run_copy / name).read_bytes() for name in ("config.yaml", CHECKPOINT_NAME, "generator.safetensors")}
    rc, _, err = cli(capsys, "train", "-q", "--resume", run_copy, override, "schedule.total_kimg=0.4")
    assert_clean_error(rc, err, changed, "start a new run", "schedule.*")
    assert {name: (run_copy / name).read_bytes() for name in saved} == saved  # nothing saved is touched


def test_resume_still_takes_schedule_and_device_overrides(run_copy, capsys):
    rc, _, err = cli(capsys, "train", "-q", "--resume", run_copy, "schedule.total_kimg=0.4", "device=cpu",
                     "data.root=/somewhere/else")
    assert rc == 0, err
    assert load_config(run_copy / "config.yaml").schedule.total_kimg == 0.4


def _rewrite_snapshot_metadata(path, text):
    from safetensors.torch import load_file, safe_open, save_file

    with safe_open(str(path), framework="pt") as f:
        header = f.metadata()
    save_file(load_file(str(path)), str(path), metadata={**header, "metadata": text})


@pytest.mark.parametrize("metadata", ["{not json", "[1, 2]", '{"kimg": 0.3}'])
@pytest.mark.parametrize("command", ["sample", "eval"])
def test_snapshot_with_unreadable_metadata_is_a_clear_error(run_copy, tmp_path, capsys, command, metadata):
    _rewrite_snapshot_metadata(run_copy / "generator.safetensors", metadata)
    out = tmp_path / ("s.npy" if command == "sample" else "e.json")
    rc, _, err = cli(capsys, command, run_copy, "-n", "50", "-o", out)
    assert_clean_error(rc, err, "generator.safetensors", "no readable metadata", "Re-run or resume training")
    assert not out.exists()


# ------------------------------------------------------------------------- .npy paths to fit
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


# -------------------------------------------------------------------------- config values
@pytest.mark.parametrize("override, message", [
    ("device=cuda:x", "device must be auto, cpu, cuda or cuda:N"),
    ("device=cuda:-1", "device must be auto, cpu, cuda or cuda:N"),
    ("data.resolution=0", "data.resolution must be > 0"),
])
def test_config_values_checked_before_training(override, message):
    with pytest.raises(ValueError, match=message):
        load_config(None, [override])


def test_train_with_a_malformed_cuda_device_is_one_error_line(tmp_path, capsys):
    rc, _, err = cli(capsys, "train", "--out", tmp_path, "device=cuda:x")
    assert_clean_error(rc, err, "device must be auto, cpu, cuda or cuda:N")
    assert not list(tmp_path.iterdir())


# ------------------------------------------------------------------- feature-classifier cache
@pytest.mark.parametrize("json_text, weights", [
    ("{bad json", b"x" * 10),
    ("{}", b"x" * 10),
    ("[1, 2]", b"x" * 10),
    ('{"config": {}}', b"x" * 10),
])
def test_corrupt_classifier_cache_is_a_value_error(tmp_path, json_text, weights):
    from gmmgan.metrics import load_classifier

    (tmp_path / "mnist.json").write_text(json_text)
    (tmp_path / "mnist.safetensors").write_bytes(weights)
    with pytest.raises(ValueError, match="corrupt.*Retrain with `gmmgan eval train-classifier --dataset mnist`"):
        load_classifier("mnist", tmp_path)


# ------------------------------------------------------------- model files damaged inside
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


@pytest.mark.parametrize("name", ["metrics.json", "config.yaml", "generator.safetensors", "checkpoint.pt", "log.jsonl"])
def test_eval_never_writes_over_the_runs_own_files(run_copy, capsys, name):
    before = (run_copy / name).read_bytes()
    rc, _, err = cli(capsys, "eval", run_copy, "-n", "50", "-o", run_copy / name)
    assert_clean_error(rc, err, f"would overwrite the run's own {name}", "choose another file")
    assert (run_copy / name).read_bytes() == before


def test_fit_plot_and_model_with_the_same_name(tmp_path, capsys):
    path = tmp_path / "same.png"
    rc, _, err = cli(capsys, "fit", "ring", "-k", "2", "--n-samples", "200", "-q", "-o", path, "--plot", path)
    assert_clean_error(rc, err, "--plot and -o are both", "another name")
    assert not path.exists()


def test_config_file_that_is_not_text(tmp_path, capsys):
    (tmp_path / "model.pt").write_bytes(b"\x80\x02\x00binary")
    rc, _, err = cli(capsys, "train", "--config", tmp_path / "model.pt", "--out", tmp_path / "runs")
    assert_clean_error(rc, err, "is not a text file", "YAML config")
    assert not (tmp_path / "runs").exists()


def test_overrides_on_both_sides_of_an_option_are_all_applied(tmp_path, capsys):
    # Both groups are read: the unknown key after --out is reported as a config key, not as an argument.
    rc, _, err = cli(capsys, "train", "seed=1", "--out", tmp_path, "bogus.key=1")
    assert_clean_error(rc, err, "unknown config key 'bogus.key'")
    rc, _, err = cli(capsys, "train", "seed=1", "--out", tmp_path, "--not-an-option")
    assert_clean_error(rc, err, "unrecognized arguments: --not-an-option")
    rc, _, err = cli(capsys, "fit", "ring", "k=3")
    assert_clean_error(rc, err, "unrecognized arguments: k=3")


def test_split_overrides_reach_the_saved_config(tmp_path, capsys):
    from conftest import TINY_RING

    half = len(TINY_RING) // 2
    rc, _, err = cli(capsys, "train", *TINY_RING[:half], "--out", tmp_path, "-q", *TINY_RING[half:], "seed=5")
    assert rc == 0, err
    (run,) = tmp_path.iterdir()
    cfg = load_config(run / "config.yaml")
    assert cfg.seed == 5 and cfg.eval_samples == 300 and cfg.data.name == "ring"


@pytest.mark.parametrize("estimator", [GaussianMixture, BayesianGaussianMixture])
def test_warm_start_on_data_of_another_width(estimator):
    gm = estimator(n_components=2, warm_start=True, max_iter=500, random_state=0).fit(X)
    with pytest.raises(ValueError, match=r"X has 3 features, but \w+ is expecting 2 features as input"):
        gm.fit(np.zeros((10, 3)))


def test_pca_embedding_of_nan_data():
    from gmmgan.gan.embed import PCAEmbedding

    x = torch.rand(10, 1, 2, 2)
    x[4, 0, 1, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN or infinite"):
        PCAEmbedding((1, 2, 2), 2).fit(x)
