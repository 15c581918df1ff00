"""`gmmgan train` and `gmmgan sample` end to end through the CLI, on tiny runs in tmp_path."""

from __future__ import annotations

import json

import numpy as np
import torch

from gmmgan.cli import main
from gmmgan.gan.config import load_config
from gmmgan.gan.training_loop import load_generator

from conftest import TINY_RING as TINY

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def cli(capsys, *argv):
    rc = main([str(a) for a in argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


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


def test_sample_npy_png_and_component(ring_run, tmp_path, capsys):
    rc, _, err = cli(capsys, "sample", ring_run, "-n", 123, "-o", tmp_path / "s.npy")
    assert rc == 0, err
    x = np.load(tmp_path / "s.npy")
    assert x.shape == (123, 2) and np.isfinite(x).all()
    # Same seed, same samples; a component's samples are G applied to that component's z.
    rc, _, _ = cli(capsys, "sample", ring_run, "-n", 50, "--component", 3, "-o", tmp_path / "c3.npy", "--seed", 7)
    assert rc == 0
    G, prior, _ = load_generator(ring_run)
    z = prior.sample(50, torch.Generator().manual_seed(7), component=3)
    np.testing.assert_allclose(np.load(tmp_path / "c3.npy"), G(z).numpy(), rtol=1e-5, atol=1e-6)
    rc, _, _ = cli(capsys, "sample", ring_run, "-o", tmp_path / "s.png")
    assert rc == 0 and (tmp_path / "s.png").read_bytes()[:8] == PNG_MAGIC
    rc, _, err = cli(capsys, "sample", ring_run, "-o", tmp_path / "s.npy")
    assert rc == 2 and "--force" in err
    rc, _, err = cli(capsys, "sample", ring_run, "--component", 8, "-o", tmp_path / "c8.npy")
    assert rc == 2 and "out of range" in err and "8 component" in err
    rc, _, err = cli(capsys, "sample", ring_run, "-o", tmp_path / "s.txt")
    assert rc == 2 and ".npy or .png" in err
    rc, _, err = cli(capsys, "sample", tmp_path / "no_run")
    assert rc == 2 and "does not exist" in err


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
