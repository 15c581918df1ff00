"""schedule.lr_decay: the learning rates follow the schedule, resume and sweeps stay exact, bad values are refused."""

from __future__ import annotations

import math

import pytest
import torch
from _helpers import assert_same_state, train_interrupted_at_step  # the tiny ring run: 8 steps of 50
from _helpers import tiny_train_config as tiny

from gmmgan.gan.checkpoint import CHECKPOINT_NAME, load_checkpoint
from gmmgan.gan.config import ScheduleConfig, load_config
from gmmgan.gan.train_step import lr_scale
from gmmgan.gan.training_loop import train

_DECAY = ["schedule.lr_decay=cosine", "schedule.lr_decay_start_kimg=0.1", "schedule.lr_decay_final=0.1"]


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_lr_scale_is_one_before_the_start_then_falls_to_the_final_value(kind):
    s = ScheduleConfig(total_kimg=10, lr_decay=kind, lr_decay_start_kimg=4, lr_decay_final=0.25)
    assert [lr_scale(s, n) for n in (0, 2000, 4000)] == [1.0, 1.0, 1.0]
    assert lr_scale(s, 7000) == pytest.approx(0.625)  # half way: the mean of 1 and 0.25, either shape
    assert lr_scale(s, 10_000) == pytest.approx(0.25) and lr_scale(s, 20_000) == pytest.approx(0.25)
    if kind == "linear":
        assert lr_scale(s, 5500) == pytest.approx(1 - 0.75 * 0.25)
    else:
        assert lr_scale(s, 5500) == pytest.approx(0.25 + 0.75 * 0.5 * (1 + math.cos(math.pi / 4)))
    values = [lr_scale(s, n) for n in range(0, 10_001, 100)]
    assert all(a >= b for a, b in zip(values, values[1:]))
    assert lr_scale(ScheduleConfig(total_kimg=10), 7000) == 1.0  # lr_decay=none


def test_a_decayed_run_ends_at_the_final_rates_of_g_d_and_a_learnable_prior(tmp_path):
    cfg = tiny(*_DECAY, "prior.kind=learnable_gmm", "prior.z_dim=4", "optim.prior_lr=3e-3")
    result = train_quiet(cfg, tmp_path / "run")
    ckpt = load_checkpoint(tmp_path / "run" / CHECKPOINT_NAME)
    g_lrs = [g["lr"] for g in ckpt["opt_g"]["param_groups"]]
    d_lrs = [g["lr"] for g in ckpt["opt_d"]["param_groups"]]
    assert g_lrs == pytest.approx([0.1 * cfg.optim.g_lr, 0.1 * 3e-3]) and d_lrs == pytest.approx([0.1 * cfg.optim.d_lr])
    assert result["kimg"] == 0.4


def test_no_decay_leaves_the_rates_as_configured(tmp_path):
    cfg = tiny()
    train_quiet(cfg, tmp_path / "run")
    ckpt = load_checkpoint(tmp_path / "run" / CHECKPOINT_NAME)
    assert [g["lr"] for g in ckpt["opt_g"]["param_groups"]] == [cfg.optim.g_lr]


def test_a_run_stopped_mid_decay_and_resumed_equals_uninterrupted(tmp_path, monkeypatch):
    full = train_quiet(tiny(*_DECAY), tmp_path / "full")
    # Ctrl-C in the 6th step (0.25-0.3 kimg): the last checkpoint is at 0.2 kimg
    train_interrupted_at_step(monkeypatch, 6, lambda: train_quiet(tiny(*_DECAY), tmp_path / "part"))
    cfg = tiny(*_DECAY)
    ckpt = load_checkpoint(tmp_path / "part" / CHECKPOINT_NAME)
    assert ckpt["cur_nimg"] == 200  # inside the decay (0.1 -> 0.4 kimg); the checkpoint's rates are plain numbers
    assert ckpt["opt_g"]["param_groups"][0]["lr"] == cfg.optim.g_lr * lr_scale(cfg.schedule, 200)
    resumed = train_quiet(cfg, tmp_path / "part", resume=True)
    assert resumed["kimg"] == full["kimg"] == 0.4
    assert_same_state(full, resumed)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_cuda_graph_run_decays_as_the_eager_one(tmp_path, float64):
    # In a CUDA graph the lr is a device tensor filled in place before each replay; a float lr would
    # stay at its value at capture, and the graphed run would train as one without decay.
    common = ["device=cuda", "bf16=false", "schedule.total_kimg=1", "schedule.snapshot_kimg=100"]
    graphed = train_quiet(tiny(*_DECAY, *common, "cuda_graphs=true"), tmp_path / "graph")
    eager = train_quiet(tiny(*_DECAY, *common, "cuda_graphs=false"), tmp_path / "eager")
    constant = train_quiet(tiny(*common, "cuda_graphs=true"), tmp_path / "constant")
    assert graphed["cuda_graph"] is True and eager["cuda_graph"] is False
    ckpt = load_checkpoint(tmp_path / "graph" / CHECKPOINT_NAME)
    assert ckpt["opt_g"]["param_groups"][0]["lr"] == pytest.approx(0.1 * tiny().optim.g_lr)

    def difference(a, b) -> float:
        return max(float((a[k].state_dict()[n] - t).abs().max() / t.abs().max().clamp_min(1e-6))
                   for k in ("G", "D") for n, t in b[k].state_dict().items() if torch.is_floating_point(t))

    assert difference(graphed, eager) < 1e-6
    assert difference(constant, eager) > 1e-4  # the decay mattered: without it the weights are elsewhere



def train_quiet(cfg, run_dir, resume=False):
    return train(cfg, run_dir=run_dir, resume=resume, quiet=True)


@pytest.mark.parametrize(("overrides", "message"), [
    (["schedule.lr_decay=exp"], r"schedule.lr_decay must be one of \['none', 'linear', 'cosine'\]"),
    (["schedule.lr_decay=cosine", "schedule.lr_decay_start_kimg=100"], r"lr_decay_start_kimg=100 must be below "
                                                                       r"schedule.total_kimg=10.*lr_decay=none"),
    (["schedule.lr_decay=linear", "schedule.lr_decay_start_kimg=10"], "must be below schedule.total_kimg"),
    (["schedule.lr_decay_final=1.5"], r"lr_decay_final .* must be in \[0, 1\], got 1.5"),
    (["schedule.lr_decay_final=-0.1"], r"must be in \[0, 1\]"),
    (["schedule.lr_decay_start_kimg=-1"], "schedule.lr_decay_start_kimg must be >= 0"),
])
def test_bad_decay_settings_say_what_to_do(overrides, message):
    with pytest.raises(ValueError, match=message):
        load_config(None, ["schedule.total_kimg=10", *overrides])


def test_a_start_beyond_the_budget_is_fine_without_decay():
    assert load_config(None, ["schedule.total_kimg=10", "schedule.lr_decay_start_kimg=100"]).schedule.lr_decay == "none"
