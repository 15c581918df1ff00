"""Seed sweeps on a GPU: the stacked step is captured as one CUDA graph and trains each seed as its single run."""

from __future__ import annotations

import json
import math

import pytest
import torch
from _helpers import assert_channels_last_matches_nchw
from _helpers import tiny_train_config as tiny

from gmmgan.gan.checkpoint import CHECKPOINT_NAME, load_checkpoint
from gmmgan.gan.sweep import seed_dir
from gmmgan.gan.training_loop import train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

_DCGAN = ["data.name=mnist", "nets.arch=dcgan", "nets.g_width=16", "nets.d_width=16", "schedule.batch_size=32",
          "schedule.total_kimg=1.6", "schedule.snapshot_kimg=100", "schedule.log_kimg=0.8", "prior.kind=gaussian",
          "prior.z_dim=32", "optim.g_lr=2e-4", "optim.d_lr=2e-4", "eval_samples=64", "device=cuda", "bf16=false"]


def _max_relative_difference(a_dir, b_dir) -> float:
    a, b = load_checkpoint(a_dir / CHECKPOINT_NAME), load_checkpoint(b_dir / CHECKPOINT_NAME)
    worst = 0.0
    for net in ("G", "D"):
        for k, v in b[net].items():
            if torch.is_floating_point(v):
                worst = max(worst, float((a[net][k] - v).abs().max() / v.abs().max().clamp_min(1e-6)))
    return worst



@pytest.mark.parametrize(("graphs", "mode"), [(True, "streams"), (True, "stacked"), (True, "sequential"),
                                              (False, "auto")],
                         ids=["cuda-graph-streams", "cuda-graph-stacked", "cuda-graph-sequential", "eager"])
def test_cuda_sweep_trains_each_seed_as_its_single_run(tmp_path, mnist_root, float64, graphs, mode):
    common = [*_DCGAN, f"data.root={mnist_root}", f"cuda_graphs={str(graphs).lower()}"]
    sweep = train(tiny(*common, "seeds=0,1,2", f"sweep_mode={mode}", f"out={tmp_path / 'sweep'}"), quiet=True)
    assert sweep["cuda_graph"] is graphs
    for s in (0, 2):
        single = train(tiny(*common, f"seed={s}", f"out={tmp_path / 'single'}"), quiet=True)
        assert _max_relative_difference(seed_dir(sweep["run_dir"], s), single["run_dir"]) < 1e-4


@pytest.mark.parametrize("mode", ["streams", "stacked"])
def test_cuda_sweep_in_bf16_with_batch_norm_is_captured(tmp_path, mnist_root, mode):
    result = train(tiny(*_DCGAN, f"data.root={mnist_root}", "bf16=true", "seeds=0,1", f"sweep_mode={mode}",
                        f"out={tmp_path}"), quiet=True)
    assert result["cuda_graph"] is True
    metrics = [json.loads(line) for line in (seed_dir(result["run_dir"], 1) / "log.jsonl").open()]
    assert all(math.isfinite(m["loss_d"]) and math.isfinite(m["loss_g"]) for m in metrics)


def test_cuda_sweep_with_a_learnable_prior_and_bf16_runs_eagerly(tmp_path, mnist_root):
    cfg = tiny(*_DCGAN, f"data.root={mnist_root}", "prior.kind=learnable_gmm", "prior.n_components=4", "bf16=true",
               "seeds=0,1", f"out={tmp_path}")
    result = train(cfg, quiet=True)
    assert result["cuda_graph"] is False and result["diverged"] == {}
    for s in (0, 1):
        assert load_checkpoint(seed_dir(result["run_dir"], s) / CHECKPOINT_NAME)["cur_nimg"] == 1600


@pytest.mark.parametrize("embed", [["prior.embed=pca", "prior.embed_dim=8"],
                                   ["prior.embed=contrastive", "prior.embed_dim=8", "prior.embed_manifold_dim=4",
                                    "prior.embed_epochs=1", "prior.embed_width=8"]], ids=["pca", "contrastive-head"])
def test_cuda_graph_run_with_component_consistency_trains_as_the_eager_run(tmp_path, mnist_root, float64, embed):
    common = [*_DCGAN, f"data.root={mnist_root}", "prior.kind=fitted_gmm", "prior.n_components=4",
              "prior.noise_dim=4", "prior.warm_start_steps=5", "prior.consistency=0.5", *embed]
    if "prior.embed=contrastive" in embed:
        # One embedding for both runs: the manifold step's scatter-adds are not deterministic on a GPU,
        # and what is compared here is the captured step, not the embedding's training.
        source = train(tiny(*common, "schedule.total_kimg=0.1", f"out={tmp_path / 'embedding'}"), quiet=True)
        common.append(f"prior.embed_from={source['run_dir']}")
    common.append("seeds=0,1")
    graphed = train(tiny(*common, "cuda_graphs=true", f"out={tmp_path / 'graph'}"), quiet=True)
    eager = train(tiny(*common, "cuda_graphs=false", f"out={tmp_path / 'eager'}"), quiet=True)
    assert graphed["cuda_graph"] is True and eager["cuda_graph"] is False
    for s in (0, 1):
        assert _max_relative_difference(seed_dir(graphed["run_dir"], s), seed_dir(eager["run_dir"], s)) < 1e-4


def test_cuda_streams_sweep_with_lr_decay_and_r1_matches_single_runs(tmp_path, mnist_root, float64):
    # The streams engine scales each seed's lr tensors in place between replays, and R1's double backward
    # runs on each seed's own stream: seed s must still end where its single run ends.
    common = [*_DCGAN, f"data.root={mnist_root}", "loss.r1_gamma=1", "schedule.lr_decay=cosine",
              "schedule.lr_decay_start_kimg=0.4"]
    sweep = train(tiny(*common, "seeds=3,4", "sweep_mode=streams", f"out={tmp_path / 'sweep'}"), quiet=True)
    assert sweep["cuda_graph"] is True
    single = train(tiny(*common, "seed=4", f"out={tmp_path / 'single'}"), quiet=True)
    assert _max_relative_difference(seed_dir(sweep["run_dir"], 4), single["run_dir"]) < 1e-4


def test_cuda_streams_sweep_resumes_exactly(tmp_path, mnist_root, float64):
    common = [*_DCGAN, f"data.root={mnist_root}", "seeds=0,1", "sweep_mode=streams"]
    train(tiny(*common), run_dir=tmp_path / "whole", quiet=True)
    train(tiny(*common, "schedule.total_kimg=0.8"), run_dir=tmp_path / "parts", quiet=True)
    resumed = train(tiny(*common), run_dir=tmp_path / "parts", resume=True, quiet=True)
    assert resumed["kimg"] == 1.6 and resumed["cuda_graph"] is True
    for s in (0, 1):
        assert _max_relative_difference(seed_dir(tmp_path / "parts", s), seed_dir(tmp_path / "whole", s)) < 1e-4


def test_cuda_channels_last_nets_compute_what_nchw_nets_do():
    # Training on CUDA keeps the nets NHWC (channels_last=true); here cuDNN runs other kernels for the
    # two layouts, so the numbers agree to rounding (fp32, no TF32), not bit for bit.
    from gmmgan.nets import DCGANDiscriminator, DCGANGenerator

    torch.manual_seed(0)
    G, D = DCGANGenerator(z_dim=16, channels=3, width=16).cuda(), DCGANDiscriminator(channels=3, width=16, pack=2).cuda()
    tf32 = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    try:
        assert_channels_last_matches_nchw(G, D, torch.randn(32, 16, device="cuda"), rtol=1e-4, atol=1e-5,
                                          grad_rtol=1e-3)
    finally:
        torch.backends.cudnn.allow_tf32 = tf32


@pytest.mark.parametrize("mode", ["streams", "stacked"])
def test_cuda_sweep_keeps_its_nets_channels_last(tmp_path, mnist_root, mode):
    common = [*_DCGAN, f"data.root={mnist_root}", "data.name=stacked_mnist", "nets.pack=2", "bf16=true",
              "schedule.total_kimg=0.32", "seeds=0,1", f"sweep_mode={mode}"]
    result = train(tiny(*common, f"out={tmp_path}"), quiet=True)
    assert result["cuda_graph"] is True and result["diverged"] == {}
    ckpt = load_checkpoint(seed_dir(result["run_dir"], 1) / CHECKPOINT_NAME)
    convs = [v for net in ("G", "D") for v in ckpt[net].values() if v.ndim == 4]
    assert convs and all(v.is_contiguous(memory_format=torch.channels_last) for v in convs)
