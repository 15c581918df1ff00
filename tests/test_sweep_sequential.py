"""sweep_mode=sequential: each seed's own single-run step in turn; auto's choice for DCGAN on the CPU.

On a small image folder (so these run wherever the tests do, without MNIST): seed s of a sequential
sweep is bitwise its single run, since it runs exactly the single run's step on its own nets.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from _helpers import TINY_TRAIN

from gmmgan.gan.checkpoint import CHECKPOINT_NAME, load_checkpoint
from gmmgan.gan.config import load_config
from gmmgan.gan.sweep import seed_dir, sweep_mode
from gmmgan.gan.training_loop import train
from gmmgan.nets.dcgan import DCGANDiscriminator
from gmmgan.nets.mlp import MLPDiscriminator


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    from PIL import Image

    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for i in range(24):  # blobs of a few colours, so a GMM and a D have something to learn
        img = np.zeros((12, 12, 3), np.uint8)
        r, c = rng.integers(0, 8, 2)
        img[r:r + 4, c:c + 4] = rng.integers(64, 256, 3)
        Image.fromarray(img).save(folder / f"{i:02d}.png")
    return folder


def _dcgan(folder, *extra):
    return ["data.name=folder", f"data.root={folder}", "data.resolution=8", "nets.arch=dcgan", "nets.g_width=4",
            "nets.d_width=4", "prior.n_components=2", "prior.embed_dim=4", "prior.noise_dim=2",
            "prior.warm_start_steps=4", "prior.fit_samples=24", "schedule.batch_size=4", "schedule.total_kimg=0.2",
            "schedule.snapshot_kimg=100", "schedule.log_kimg=0.1", "schedule.sample_kimg=0", "eval_samples=16",
            "device=cpu", *extra]


def _assert_bitwise_single_runs(tmp_path, overrides, seeds=(1, 2)):
    sweep = train(load_config(None, [*overrides, f"seeds={','.join(map(str, seeds))}"]),
                  run_dir=tmp_path / "sweep", quiet=True)
    for s in seeds:
        single = train(load_config(None, [*overrides, f"seed={s}"]), run_dir=tmp_path / f"single{s}", quiet=True)
        got = load_checkpoint(seed_dir(sweep["run_dir"], s) / CHECKPOINT_NAME)
        want = load_checkpoint(single["run_dir"] / CHECKPOINT_NAME)
        for net in ("G", "D", "G_ema"):
            for k, v in want[net].items():
                assert torch.equal(got[net][k], v), f"seed {s}, {net}.{k}"
        for net in ("opt_g", "opt_d"):
            for i, st in want[net]["state"].items():
                assert torch.equal(got[net]["state"][i]["exp_avg_sq"], st["exp_avg_sq"]), f"seed {s}, {net}[{i}]"
        assert torch.equal(got["z_generator"], want["z_generator"]) and got["step"] == want["step"]
    return sweep


@pytest.mark.parametrize("extra", [
    ["prior.kind=fitted_gmm"],
    ["prior.kind=gaussian", "prior.z_dim=6", "loss.kind=rpgan", "loss.r1_gamma=1", "loss.r2_gamma=1",
     "schedule.lr_decay=cosine", "schedule.lr_decay_start_kimg=0.1"],
    ["prior.kind=learnable_gmm", "prior.z_dim=6", "prior.n_components=2", "nets.pack=2"],
], ids=["fitted", "rpgan-r1-r2-decay", "learnable-pack"])
def test_a_dcgan_sweep_on_the_cpu_runs_each_seeds_own_step_bitwise(tmp_path, image_folder, extra):
    sweep = _assert_bitwise_single_runs(tmp_path, _dcgan(image_folder, *extra))
    assert sweep["sweep_mode"] == "sequential"  # auto's choice for convolutional nets on the CPU


def test_an_explicit_sequential_sweep_of_mlps_trains_as_single_runs(tmp_path):
    sweep = _assert_bitwise_single_runs(tmp_path, [*TINY_TRAIN, "sweep_mode=sequential"], seeds=(0, 3))
    assert sweep["sweep_mode"] == "sequential"


@pytest.mark.parametrize(("device", "d", "graph", "world", "want"), [
    ("cpu", DCGANDiscriminator(width=4, resolution=8), False, 1, "sequential"),
    ("cpu", MLPDiscriminator(), False, 1, "stacked"),
    ("cuda", DCGANDiscriminator(width=4, resolution=8), True, 1, "streams"),
    ("cuda", DCGANDiscriminator(width=4, resolution=8), False, 1, "stacked"),  # no graph (learnable prior)
    ("cuda", DCGANDiscriminator(width=4, resolution=8), True, 2, "stacked"),   # torchrun
])
def test_auto_picks_the_engine_from_the_device_the_nets_and_the_processes(monkeypatch, device, d, graph, world, want):
    monkeypatch.setattr("gmmgan.gan.sweep.distributed.world_size", lambda: world)
    runs = [SimpleNamespace(device=torch.device(device), D=d, seed=s) for s in (0, 1)]
    assert sweep_mode("auto", runs, graph) == want
    assert sweep_mode("sequential", runs, graph) == "sequential"
