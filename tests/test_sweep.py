"""Seed sweeps: seed s of a sweep trains as the single run with seed s (weights equal after hundreds of steps)."""

from __future__ import annotations

import json

import pytest
import torch
from _helpers import tiny_train_config as tiny

from gmmgan.gan.checkpoint import CHECKPOINT_NAME, load_checkpoint
from gmmgan.gan.sweep import seed_dir
from gmmgan.gan.training_loop import train

# 300 steps of 32 points on the ring with small MLPs; no checkpoint in between (written at the end only).
_MLP_STEPS = ["schedule.batch_size=32", "schedule.total_kimg=9.6", "schedule.snapshot_kimg=100",
              "schedule.log_kimg=3.2", "schedule.ema_kimg=1", "prior.warm_start_steps=20", "nets.d_batch_norm=false"]
_PRIORS = {
    "gaussian": ["prior.kind=gaussian", "prior.z_dim=4"],
    "fitted_gmm": ["prior.kind=fitted_gmm"],
    "fixed_gmm": ["prior.kind=fixed_gmm", "prior.z_dim=4"],
    "learnable_gmm": ["prior.kind=learnable_gmm", "prior.z_dim=4"],
    "gmm_reg": ["prior.kind=gmm_reg", "prior.z_dim=4"],
    "fitted_gmm-consistency": ["prior.kind=fitted_gmm", "prior.consistency=0.5"],
}



def _weights(run_dir):
    ckpt = load_checkpoint(run_dir / CHECKPOINT_NAME)
    return {f"{net}.{k}": v for net in ("G", "D", "G_ema", "prior") for k, v in ckpt[net].items()
            if torch.is_floating_point(v)}, ckpt


def _assert_same_training(sweep_dir, single_dirs, rtol=1e-4):
    for seed, single in single_dirs.items():
        got, ckpt = _weights(seed_dir(sweep_dir, seed))
        want, want_ckpt = _weights(single)
        assert got.keys() == want.keys()
        for k in want:
            scale = want[k].abs().max().clamp_min(1e-6)
            err = float((got[k] - want[k]).abs().max() / scale)
            assert err < rtol, f"seed {seed}, {k}: relative difference {err:.2e}"
        assert ckpt["cur_nimg"] == want_ckpt["cur_nimg"] and ckpt["step"] == want_ckpt["step"]
        # The random streams went on exactly as in the single run.
        assert torch.equal(ckpt["z_generator"], want_ckpt["z_generator"])
        for k, v in want_ckpt["batcher"].items():
            assert torch.equal(ckpt["batcher"][k], v) if torch.is_tensor(v) else ckpt["batcher"][k] == v, k
        # Adam's moments too (the resumed seed goes on like the resumed single run), on the scale of
        # each moment over the whole net: a bias followed by BatchNorm has a gradient of rounding noise.
        for net in ("opt_g", "opt_d"):
            states = want_ckpt[net]["state"]
            for name in ("exp_avg", "exp_avg_sq"):
                scale = max(float(st[name].abs().max()) for st in states.values())
                for i, st in states.items():
                    err = float((ckpt[net]["state"][i][name] - st[name]).abs().max()) / scale
                    assert err < rtol, f"seed {seed}, {net}[{i}].{name}: {err:.2e}"


def _sweep_and_singles(tmp_path, overrides, seeds=(0, 3)):
    result = train(tiny(*overrides, f"seeds={','.join(map(str, seeds))}", f"out={tmp_path / 'sweep'}"), quiet=True)
    singles = {s: train(tiny(*overrides, f"seed={s}", f"out={tmp_path / 'single'}"), quiet=True)["run_dir"]
               for s in seeds}
    return result, singles


@pytest.mark.parametrize("prior", sorted(_PRIORS))
def test_each_seed_of_an_mlp_sweep_trains_as_its_single_run(tmp_path, prior):
    # In float32: these small MLPs without BatchNorm do not amplify rounding over 300 steps.
    result, singles = _sweep_and_singles(tmp_path, _MLP_STEPS + _PRIORS[prior])
    _assert_same_training(result["run_dir"], singles)
    # The final 2-D metrics of each seed are those of its single run (a sample may cross a boundary).
    for run in result["runs"]:
        want = json.loads((singles[run["seed"]] / "metrics.json").read_text())
        assert run["metrics"]["modes"] == want["modes"]
        assert abs(run["metrics"]["hq"] - want["hq"]) <= 2 / want["n_samples"]
    summary = result["metrics"]
    assert summary["seeds"] == [0, 3] and summary["finished"] == [0, 3]
    assert set(summary["metrics"]) >= {"modes", "hq", "kl"}


@pytest.mark.parametrize("extra", [
    ["loss.r1_gamma=1"],
    ["loss.kind=wgan", "loss.gp_weight=1"],
    ["nets.pack=2"],
    ["nets.d_spectral_norm=true", "nets.g_spectral_norm=true"],
    ["nets.d_batch_norm=true", "nets.g_batch_norm=true"],
    ["loss.kind=mixture_density", "loss.r1_gamma=1", "loss.gp_weight=1", "nets.pack=2", "optim.eps=1e-8"],
    ["loss.kind=rpgan", "loss.r1_gamma=1", "loss.r2_gamma=1", "nets.pack=2"],
], ids=["r1", "wgan-gp", "pack", "spectral-norm", "batch-norm", "mixture-density", "rpgan-r1-r2"])
def test_sweep_matches_single_runs_with_penalties_packing_and_norms(tmp_path, float64, extra):
    result, singles = _sweep_and_singles(tmp_path, _MLP_STEPS + ["prior.kind=gaussian", "prior.z_dim=4"] + extra)
    _assert_same_training(result["run_dir"], singles)


@pytest.mark.parametrize("prior", ["fitted_gmm", "learnable_gmm"])
def test_a_sweep_with_lr_decay_trains_each_seed_as_its_single_run(tmp_path, prior):
    # schedule.lr_decay scales the stacked optimizers' rates (a learnable prior's group too) as each single run's.
    decay = ["schedule.lr_decay=linear", "schedule.lr_decay_start_kimg=3.2", "schedule.lr_decay_final=0.05"]
    result, singles = _sweep_and_singles(tmp_path, _MLP_STEPS + _PRIORS[prior] + decay)
    _assert_same_training(result["run_dir"], singles)
    for seed, single in singles.items():  # each seed's checkpoint records the final rates, as its single run's
        got = load_checkpoint(seed_dir(result["run_dir"], seed) / CHECKPOINT_NAME)
        want = load_checkpoint(single / CHECKPOINT_NAME)
        for net in ("opt_g", "opt_d"):
            assert [g["lr"] for g in got[net]["param_groups"]] == [g["lr"] for g in want[net]["param_groups"]]


_DCGAN = ["nets.arch=dcgan", "nets.g_width=8", "nets.d_width=8", "schedule.batch_size=16",
          "schedule.total_kimg=3.2", "schedule.snapshot_kimg=100", "schedule.log_kimg=1.6", "schedule.ema_kimg=0.5",
          "prior.warm_start_steps=10", "prior.fit_samples=1000", "prior.fit_max_iter=10",
          "optim.g_lr=2e-4", "optim.d_lr=2e-4"]
_DCGAN_PRIORS = {
    "gaussian": ["prior.kind=gaussian", "prior.z_dim=16"],
    "fitted_gmm": ["prior.kind=fitted_gmm", "prior.embed=pca", "prior.embed_dim=8", "prior.n_components=4",
                   "prior.reg_covar=1e-3", "prior.noise_dim=4"],
    "fixed_gmm": ["prior.kind=fixed_gmm", "prior.z_dim=16", "prior.n_components=4"],
    "learnable_gmm": ["prior.kind=learnable_gmm", "prior.z_dim=16", "prior.n_components=4"],
    "gmm_reg": ["prior.kind=gmm_reg", "prior.z_dim=16", "prior.embed=pca", "prior.embed_dim=8",
                "prior.n_components=4", "prior.reg_covar=1e-3"],
}


@pytest.mark.parametrize("prior", sorted(_DCGAN_PRIORS))
def test_each_seed_of_a_dcgan_sweep_trains_as_its_single_run(tmp_path, mnist_root, float64, prior):
    # 200 steps of 16 MNIST digits through DCGAN nets with BatchNorm in G and D (in float64: see float64).
    data = ["data.name=mnist", f"data.root={mnist_root}", "eval_samples=64"]
    # sweep_mode=stacked: the wide net (on the CPU auto steps DCGAN seeds in turn, tests/test_sweep_sequential.py).
    result, singles = _sweep_and_singles(tmp_path, data + _DCGAN + _DCGAN_PRIORS[prior] + ["sweep_mode=stacked"],
                                         seeds=(1, 2))
    _assert_same_training(result["run_dir"], singles)


@pytest.mark.parametrize("extra", [
    ["nets.pack=2", "loss.r1_gamma=1"],
    ["loss.kind=mixture_density", "loss.gp_weight=1"],
    ["nets.d_spectral_norm=true"],  # not the wide net's: vmap runs it
    ["loss.kind=rpgan", "loss.r1_gamma=1", "loss.r2_gamma=1"],
], ids=["pack-r1", "mixture-density", "spectral-norm", "rpgan-r1-r2"])
def test_a_dcgan_sweep_with_packing_penalties_and_heads_trains_as_its_single_runs(tmp_path, mnist_root, float64, extra):
    # The wide DCGAN net (gmmgan.nets.wide) under the R1 gradient, PacGAN packs and an embedding-valued D.
    data = ["data.name=mnist", f"data.root={mnist_root}", "eval_samples=64"]
    short = ["schedule.total_kimg=1.6", "schedule.log_kimg=0.8", "sweep_mode=stacked"]
    result, singles = _sweep_and_singles(tmp_path, data + _DCGAN + _DCGAN_PRIORS["gaussian"] + extra + short,
                                         seeds=(1, 2))
    _assert_same_training(result["run_dir"], singles)
