"""Command-line behaviour a new user meets: no silent overwrites, file modes, and errors that say what to do."""

import json
import os
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest
import torch

import gmmgan.metrics
from gmmgan.gan.checkpoint import atomic_write
from gmmgan.cli import main
from gmmgan.gan.config import load_config
from gmmgan.metrics import (
    ClassifierConfig,
    FeatureClassifier,
    load_classifier,
)
from gmmgan.metrics import train_classifier as real_train_classifier
from gmmgan.metrics.classifier import save_classifier
from gmmgan.mixture import GaussianMixture


def cli(capsys, *argv):
    rc = main([str(a) for a in argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.fixture
def run_copy(ring_run, tmp_path):
    return Path(shutil.copytree(ring_run, tmp_path / ring_run.name))


@pytest.fixture
def tiny_training(monkeypatch):
    """train-classifier trains a tiny net on 64 random images (seconds), whatever --data-root says."""
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (64, 28, 28), dtype=torch.uint8, generator=g)
    labels = torch.arange(64) % 10

    def tiny(dataset, root=None, out_dir=None, epochs=None, device="cpu", seed=0, log=print):
        return real_train_classifier(dataset, out_dir=out_dir, epochs=1, device=device, seed=seed, log=log,
                                     config=ClassifierConfig(width=2, feature_dim=4, batch_size=32),
                                     train_data=(images, labels), test_data=(images[:16], labels[:16]))

    monkeypatch.setattr(gmmgan.metrics, "train_classifier", tiny)


# ------------------------------------------------------------------ no silent overwrites
def test_train_classifier_refuses_to_replace_a_cached_classifier(tmp_path, capsys, tiny_training):
    cache = tmp_path / "cache"
    rc, out, err = cli(capsys, "eval", "train-classifier", "--data-root", tmp_path, "--cache-dir", cache)
    assert rc == 0, err
    weights = cache / "mnist.safetensors"
    # A start line (data set, data root, epochs, where it saves) and a last line naming the saved file.
    first, last = out.strip().splitlines()[0], out.strip().splitlines()[-1]
    assert "mnist" in first and str(tmp_path) in first and "epochs" in first and str(weights) in first
    assert last.startswith("saved") and str(weights) in last
    before = {p.name: p.read_bytes() for p in cache.iterdir()}

    rc, _, err = cli(capsys, "eval", "train-classifier", "--data-root", tmp_path, "--cache-dir", cache, "--seeds", "1")
    assert rc == 2 and "already cached" in err and "--force" in err and "--cache-dir OTHER" in err
    assert {p.name: p.read_bytes() for p in cache.iterdir()} == before

    rc, _, err = cli(capsys, "eval", "train-classifier", "--data-root", tmp_path, "--cache-dir", cache, "--seeds", "1",
                     "--force")
    assert rc == 0, err
    assert weights.read_bytes() != before["mnist.safetensors"]  # another seed: another classifier
    assert load_classifier("mnist", cache).info["config"]["seed"] == 1  # and its JSON matches it


def test_eval_refuses_to_overwrite_eval_json(run_copy, capsys):
    args = ("eval", run_copy, "-n", 100, "--no-plots")
    assert cli(capsys, *args)[0] == 0
    (run_copy / "eval.json").write_text("earlier")
    rc, _, err = cli(capsys, *args)
    assert rc == 2 and "eval.json' exists" in err and "--force" in err and "-o" in err
    assert (run_copy / "eval.json").read_text() == "earlier"
    rc, _, err = cli(capsys, *args, "--force")
    assert rc == 0, err
    assert json.loads((run_copy / "eval.json").read_text())["n_samples"] == 100


# ------------------------------------------------------------------ file modes
@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    yield 0o640  # what open() gives under this umask
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_saved_files_get_the_umask_mode_not_0600(tmp_path, umask_027):
    assert _mode(atomic_write(tmp_path / "a.bin", lambda tmp: Path(tmp).write_bytes(b"x"))) == umask_027
    X = np.random.default_rng(0).normal(size=(60, 2))
    model = GaussianMixture(n_components=2, random_state=0).fit(X)
    assert _mode(model.save(tmp_path / "m.safetensors")) == umask_027
    save_classifier(FeatureClassifier(ClassifierConfig(width=2, feature_dim=4)), "mnist", tmp_path / "c")
    assert _mode(tmp_path / "c" / "mnist.safetensors") == _mode(tmp_path / "c" / "mnist.json") == umask_027
    assert not [p for p in tmp_path.rglob("*.tmp")]  # no temporary files left behind


# ------------------------------------------------------------------ errors that say what to do
def test_sample_wrong_run_paths(ring_run, tmp_path, capsys):
    rc, _, err = cli(capsys, "sample", tmp_path / "nope")
    assert rc == 2 and "run folder" in err and "nope' does not exist" in err and "snapshot" not in err
    rc, _, err = cli(capsys, "sample", ring_run / "config.yaml", "-o", tmp_path / "s.npy")
    assert rc == 2 and "not a generator snapshot" in err and f"run folder ('{ring_run}')" in err
    assert "corrupt" not in err
    (tmp_path / "notes.txt").write_text("x")  # not in a run folder: no folder to point at
    rc, _, err = cli(capsys, "sample", tmp_path / "notes.txt")
    assert rc == 2 and "give a run folder written by 'gmmgan train'" in err
    assert not (tmp_path / "s.npy").exists()
    rc, _, err = cli(capsys, "eval", ring_run / "checkpoint.pt", "-o", tmp_path / "e.json")
    assert rc == 2 and "not a generator snapshot" in err


@pytest.mark.parametrize("command", ["sample", "eval"])
def test_cuda_without_cuda_says_the_command_line_option(command, ring_run, tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    rc, _, err = cli(capsys, command, ring_run, "--device", "cuda", "-o", tmp_path / "x.npy")
    assert rc == 2 and "CUDA is not available" in err and "--device cpu" in err and "device=cpu" not in err


def test_resume_given_a_file_asks_for_the_run_folder(ring_run, capsys):
    rc, _, err = cli(capsys, "train", "--resume", ring_run / "checkpoint.pt")
    assert rc == 2 and "run folder, not a file" in err and f"--resume {ring_run}" in err


def test_unknown_option_points_at_the_subcommand_help(capsys):
    rc, _, err = cli(capsys, "fit", "ring", "--covarance-type", "full")
    assert rc == 2 and "--covarance-type" in err and "gmmgan fit --help" in err


def test_missing_classifier_names_the_cache_dir_option(tmp_path):
    with pytest.raises(FileNotFoundError, match="--cache-dir DIR .command line. / cache_dir .Python."):
        load_classifier("mnist", tmp_path)


def test_unknown_config_key_suggests_the_close_one():
    with pytest.raises(ValueError, match=r"unknown config key 'schedule.total_kim' \(did you mean schedule.total_kimg\?\)"):
        load_config(None, ["schedule.total_kim=3"])
    with pytest.raises(ValueError, match=r"'total_kimg' \(did you mean schedule.total_kimg\?\)"):  # section left out
        load_config(None, ["total_kimg=3"])
    with pytest.raises(ValueError, match=r"unknown config key 'zzz'; valid keys: data.name"):  # nothing close: no hint
        load_config(None, ["zzz=3"])


# ------------------------------------------------------------------ no silently ignored input
@pytest.mark.parametrize("option, value", [("--seeds", "0,,1"), ("--seeds", ","), ("--metrics", "fid,,kid")])
def test_empty_list_items_are_errors(ring_run, capsys, option, value):
    rc, _, err = cli(capsys, "eval", ring_run, option, value)
    assert rc == 2 and "empty item" in err and option in err


@pytest.mark.parametrize("argv, pieces", [
    (["--dataset", "mnist"], ["--dataset", "only appl", "train-classifier"]),
    (["--epochs", "2"], ["--epochs", "only appl", "train-classifier"]),
])
def test_train_classifier_options_on_a_run_are_errors(ring_run, tmp_path, capsys, argv, pieces):
    rc, _, err = cli(capsys, "eval", ring_run, "-o", tmp_path / "e.json", *argv)
    assert rc == 2 and all(p in err for p in pieces)
    assert not (tmp_path / "e.json").exists()


def test_run_options_on_train_classifier_are_errors(tmp_path, capsys):
    rc, _, err = cli(capsys, "eval", "train-classifier", "--data-root", tmp_path, "--cache-dir", tmp_path,
                     "-o", tmp_path / "e.json")
    assert rc == 2 and "-o only applies to evaluating a run" in err
    assert not list(tmp_path.iterdir())


def test_misspelt_train_classifier_gets_a_hint(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc, _, err = cli(capsys, "eval", "train-clasifier")
    assert rc == 2 and "did you mean train-classifier?" in err
    rc, _, err = cli(capsys, "eval", "runs/00000-ring")
    assert rc == 2 and "does not exist" in err and "did you mean" not in err


# ------------------------------------------------------------------ help texts
def test_help_texts_use_placeholders_and_measured_times(capsys):
    rc, out, _ = cli(capsys, "eval", "--help")
    assert rc == 0
    assert "../shared" not in out and "--data-root DIR" in out and "--force" in out
    rc, out, _ = cli(capsys, "train", "--help")
    assert "a few minutes" not in out and "under a minute" in out
