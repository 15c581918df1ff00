"""Tests of gmmgan.gan.training_loop on tiny 2-D runs: exact resume, NaN stop, bad checkpoints and settings."""

from __future__ import annotations

import json

import pytest
import torch
from _helpers import assert_same_state  # the tiny ring run: 8 steps of 50
from _helpers import tiny_train_config as tiny

from gmmgan.gan import losses as losses_mod
from gmmgan.gan.checkpoint import (
    CHECKPOINT_NAME,
    SNAPSHOT_NAME,
    load_checkpoint,
    load_snapshot,
)
from gmmgan.gan.training_loop import TrainingDivergedError, load_generator, train


@pytest.mark.parametrize("extra", [[], ["prior.kind=learnable_gmm", "loss.r1_gamma=1", "nets.pack=2"]])
def test_stopped_and_resumed_run_equals_uninterrupted(tmp_path, extra):
    full = train(tiny(*extra), run_dir=tmp_path / "full", quiet=True)
    train(tiny(*extra, "schedule.total_kimg=0.2"), run_dir=tmp_path / "part", quiet=True)
    assert load_checkpoint(tmp_path / "part" / CHECKPOINT_NAME)["cur_nimg"] == 200
    resumed = train(tiny(*extra), run_dir=tmp_path / "part", resume=True, quiet=True)
    assert resumed["kimg"] == full["kimg"] == 0.4
    assert_same_state(full, resumed)
    # The snapshot for sampling holds the EMA generator of the last step.
    g_state, _, meta = load_snapshot(tmp_path / "part")
    assert meta["kimg"] == 0.4
    for name, t in full["G_ema"].state_dict().items():
        assert torch.equal(g_state[name], t)
    # Logs: the resumed run appended to its log, up to the end.
    lines = [json.loads(s) for s in (tmp_path / "part" / "log.jsonl").read_text().splitlines()]
    assert [e["kimg"] for e in lines] == [0.1, 0.2, 0.3, 0.4]


def test_nan_loss_stops_with_step_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    run = tmp_path / "run"
    real_g = losses_mod.get_gan_loss("ns").g
    calls = {"n": 0}

    def g_loss_nan_at_step_5(fake_logits):
        calls["n"] += 1
        loss = real_g(fake_logits)
        return loss * float("nan") if calls["n"] == 6 else loss  # step index 5 (0-based)

    ns = losses_mod.get_gan_loss("ns")
    # build_gan_loss (what train calls) takes the logit losses from get_gan_loss.
    monkeypatch.setattr(losses_mod, "get_gan_loss", lambda name: type(ns)(ns.name, ns.d, g_loss_nan_at_step_5))
    with pytest.raises(TrainingDivergedError, match=r"NaN or infinite at step 5 .*0\.200 kimg"):
        train(tiny(), run_dir=run, quiet=True)
    # The checkpoint on disk is the last good one (after step 4, 200 images), not a NaN state.
    ckpt = load_checkpoint(run / CHECKPOINT_NAME)
    assert ckpt["cur_nimg"] == 200
    assert all(torch.isfinite(t).all() for t in ckpt["G"].values())
    _, _, meta = load_snapshot(run)
    assert meta["kimg"] == 0.2


def test_absurd_learning_rate_is_reported_not_silently_continued(tmp_path):
    # An infinite-ish lr drives the weights to inf and the losses to NaN within a few steps.
    with pytest.raises(TrainingDivergedError, match="NaN or infinite at step"):
        train(tiny("optim.d_lr=1e30", "optim.g_lr=1e30", "optim.betas=[0.0, 0.0]"), run_dir=tmp_path / "r", quiet=True)
    assert load_checkpoint(tmp_path / "r" / CHECKPOINT_NAME)["step"] >= 0


def test_missing_and_corrupt_checkpoint_are_errors_naming_the_file(tmp_path):
    missing = tmp_path / "nothing"
    missing.mkdir()
    with pytest.raises(FileNotFoundError, match=f"{CHECKPOINT_NAME}' does not exist"):
        train(tiny(), run_dir=missing, resume=True, quiet=True)
    assert not (missing / "config.yaml").exists(), "a failed resume must not start writing a fresh run"
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / CHECKPOINT_NAME).write_bytes(b"PK\x03\x04 definitely not a checkpoint")
    with pytest.raises(ValueError, match=rf"checkpoint '.*corrupt/{CHECKPOINT_NAME}' is corrupt or truncated"):
        train(tiny(), run_dir=corrupt, resume=True, quiet=True)
    # A torch file that is not a gmmgan checkpoint.
    torch.save({"a": torch.zeros(1)}, corrupt / "other.pt")
    with pytest.raises(ValueError, match="not a gmmgan training checkpoint"):
        load_checkpoint(corrupt / "other.pt")
    (corrupt / SNAPSHOT_NAME).write_bytes(b"\x00" * 20)
    with pytest.raises(ValueError, match="generator snapshot .* is corrupt or truncated"):
        load_generator(corrupt)
    with pytest.raises(FileNotFoundError, match="generator snapshot .* does not exist"):
        load_generator(missing)


def test_resume_with_incompatible_nets_is_a_value_error(tmp_path):
    train(tiny("schedule.total_kimg=0.1"), run_dir=tmp_path / "r", quiet=True)
    before = (tmp_path / "r" / "config.yaml").read_text()
    with pytest.raises(ValueError, match=r"checkpoint '.*checkpoint.pt' does not fit this config"):
        train(tiny("nets.g_width=32"), run_dir=tmp_path / "r", resume=True, quiet=True)
    assert (tmp_path / "r" / "config.yaml").read_text() == before, "the run's config must stay as it was"


def test_bad_settings_are_value_errors(tmp_path):
    with pytest.raises(ValueError, match=r"multiple of nets.pack \(3\)"):
        train(tiny("nets.pack=3"), run_dir=tmp_path / "a", quiet=True)
    with pytest.raises(ValueError, match="nets.arch=dcgan needs square images"):
        train(tiny("nets.arch=dcgan"), run_dir=tmp_path / "b", quiet=True)
