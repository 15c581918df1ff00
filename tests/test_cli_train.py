"""`gmmgan train` end to end through the CLI, on tiny runs in tmp_path: run folders, resume rules, bad configs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _helpers import PNG_MAGIC, assert_clean_error, cli
from _helpers import TINY_RING as TINY

from gmmgan.gan.checkpoint import CHECKPOINT_NAME
from gmmgan.gan.config import load_config


def test_train_writes_a_complete_run_folder(ring_run):
    assert ring_run.name == "00000-ring-fitted_gmm"
    names = {p.name for p in ring_run.iterdir()}
    assert {"config.yaml", "log.jsonl", "checkpoint.pt", "generator.safetensors", "final.png", "metrics.json",
            "samples"} <= names
    assert (ring_run / "final.png").read_bytes()[:8] == PNG_MAGIC
    assert sorted(p.name for p in (ring_run / "samples").iterdir()) == [
        "samples-000000.150kimg.png", "samples-000000.300kimg.png"]
    log = [json.loads(s) for s in (ring_run / "log.jsonl").read_text().splitlines()]
    assert [e["kimg"] for e in log] == [0.1, 0.2, 0.3]
    assert all(np.isfinite([e["loss_d"], e["loss_g"]]).all() and e["images_per_s"] > 0 for e in log)
    metrics = json.loads((ring_run / "metrics.json").read_text())
    assert metrics["n_modes"] == 8 and metrics["n_samples"] == 300 and 0 <= metrics["hq"] <= 1
    assert "prior:" in (ring_run / "config.yaml").read_text()


def test_train_prints_metrics_and_plot(tmp_path, capsys):
    rc, out, err = cli(capsys, "train", "--out", tmp_path, *TINY, "prior.kind=gaussian", "schedule.total_kimg=0.1")
    assert rc == 0, err
    out = " ".join(out.split())
    assert "modes" in out and "high quality" in out and "reverse KL" in out and "final.png" in out
    (run,) = tmp_path.iterdir()
    rc, _, err = cli(capsys, "sample", run, "--component", 0, "-o", tmp_path / "c.npy")
    assert rc == 2 and "has no mixture components" in err and "GMM prior" in err
    rc, _, err = cli(capsys, "sample", run, "--component", 1, "-o", tmp_path / "c.npy")
    assert rc == 2 and "--component needs a GMM prior" in err and "prior.kind=gaussian" in err


def test_unknown_key_lists_valid_keys(tmp_path, capsys):
    rc, _, err = cli(capsys, "train", "--out", tmp_path, "prior.kindd=gaussian")
    assert rc == 2
    assert "unknown config key 'prior.kindd'" in err and "prior.kind" in err and "schedule.total_kimg" in err
    rc, _, err = cli(capsys, "train", "--out", tmp_path, "schedule.batch_size=lots")
    assert rc == 2 and "schedule.batch_size must be an integer" in err
    assert not any(tmp_path.iterdir()), "no run folder for a bad config"


def test_bad_resume_arguments(tmp_path, capsys, ring_run):
    rc, _, err = cli(capsys, "train", "--resume", tmp_path / "nope")
    assert rc == 2 and "run folder" in err and "nope" in err
    rc, _, err = cli(capsys, "train", "--resume", ring_run, "--config", "x.yaml")
    assert rc == 2 and "drop --config" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    rc, _, err = cli(capsys, "train", "--resume", empty)
    assert rc == 2 and "config.yaml' does not exist" in err


def test_config_file_and_overrides(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("prior:\n  kind: fixed_gmm\n  n_components: 4\nschedule:\n  total_kimg: 0.1\n")
    rc, _, err = cli(capsys, "train", "--config", cfg, "--out", tmp_path / "o", *TINY, "schedule.total_kimg=0.05")
    assert rc == 0, err
    (run,) = (tmp_path / "o").iterdir()
    text = (run / "config.yaml").read_text()
    assert "kind: fixed_gmm" in text and "total_kimg: 0.05" in text
    rc, _, err = cli(capsys, "train", "--config", tmp_path / "missing.yaml")
    assert rc == 2 and "missing.yaml' does not exist" in err
    bad = tmp_path / "bad.yaml"
    bad.write_text("prior:\n  colour: red\n")
    rc, _, err = cli(capsys, "train", "--config", bad)
    assert rc == 2 and "bad.yaml" in err and "unknown config key 'prior.colour'" in err


def test_nan_through_cli_exits_1_with_message(tmp_path, capsys):
    rc, _, err = cli(capsys, "train", "--out", tmp_path, *TINY, "optim.d_lr=1e30", "optim.g_lr=1e30",
                     "optim.betas=[0,0]")
    assert rc == 1 and "NaN or infinite at step" in err and "checkpoint.pt" in err


def test_image_run_with_pca_prior_and_sampling(mnist_root, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("GMMGAN_DATA", str(mnist_root))
    rc, _, err = cli(capsys, "train", "--out", tmp_path, "data.name=mnist-limited", "data.per_class=4",
                     "prior.n_components=3", "prior.embed_dim=4", "prior.noise_dim=2", "prior.warm_start_steps=2",
                     "nets.g_width=4", "nets.d_width=4", "schedule.batch_size=8", "schedule.total_kimg=0.016",
                     "schedule.snapshot_kimg=0.008", "schedule.sample_kimg=0.008", "device=cpu", "-q")
    assert rc == 0, err
    (run,) = tmp_path.iterdir()
    assert (run / "final.png").read_bytes()[:8] == PNG_MAGIC
    # The data root came from $GMMGAN_DATA: the run records it, so it can be evaluated without it.
    assert load_config(run / "config.yaml").data.root == str(mnist_root)
    rc, _, err = cli(capsys, "sample", run, "-n", 6, "--component", 2, "-o", tmp_path / "g.png")
    assert rc == 0 and (tmp_path / "g.png").read_bytes()[:8] == PNG_MAGIC
    rc, _, err = cli(capsys, "sample", run, "-n", 5, "-o", tmp_path / "g.npy")
    x = np.load(tmp_path / "g.npy")
    assert rc == 0 and x.shape == (5, 1, 28, 28) and x.min() >= -1 and x.max() <= 1


# ----------------------------------------------------------------- resume rules, bad configs, help
def test_resume_given_a_file_asks_for_the_run_folder(ring_run, capsys):
    rc, _, err = cli(capsys, "train", "--resume", ring_run / "checkpoint.pt")
    assert rc == 2 and "run folder, not a file" in err and f"--resume {ring_run}" in err


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


def test_train_with_a_malformed_cuda_device_is_one_error_line(tmp_path, capsys):
    rc, _, err = cli(capsys, "train", "--out", tmp_path, "device=cuda:x")
    assert_clean_error(rc, err, "device must be auto, cpu, cuda or cuda:N")
    assert not list(tmp_path.iterdir())


def test_config_file_that_is_not_text(tmp_path, capsys):
    (tmp_path / "model.pt").write_bytes(b"\x80\x02\x00binary")
    rc, _, err = cli(capsys, "train", "--config", tmp_path / "model.pt", "--out", tmp_path / "runs")
    assert_clean_error(rc, err, "is not a text file", "YAML config")
    assert not (tmp_path / "runs").exists()


def test_help_says_measured_times(capsys):
    rc, out, _ = cli(capsys, "train", "--help")
    assert rc == 0
    assert "a few minutes" not in out and "under a minute" in out
