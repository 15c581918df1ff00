"""loss.reg_interval (lazy R1/R2): which steps regularize, at what weight; resume, sweeps and CUDA graphs stay exact."""

from __future__ import annotations

import contextlib

import pytest
import torch
from _helpers import assert_same_state, train_interrupted_at_step  # the tiny ring run: 8 steps of 50
from _helpers import tiny_train_config as tiny
from torch import nn

from gmmgan.gan import train_step
from gmmgan.gan.checkpoint import CHECKPOINT_NAME, load_checkpoint
from gmmgan.gan.config import load_config
from gmmgan.gan.losses import get_gan_loss
from gmmgan.gan.priors import GaussianPrior
from gmmgan.gan.sweep import seed_dir
from gmmgan.gan.training_loop import train

_LAZY = ["loss.kind=rpgan", "loss.r1_gamma=2", "loss.r2_gamma=1", "loss.reg_interval=3"]


def _step(first_step=0, **kw):
    torch.manual_seed(0)
    G = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    D = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 1), nn.Flatten(0))
    G_ema = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)).requires_grad_(False)
    G_ema.load_state_dict(G.state_dict())
    cpu = torch.device("cpu")
    opt_g, opt_d = train_step.adam(G.parameters(), cpu, False, lr=1e-3), train_step.adam(D.parameters(), cpu, False, lr=1e-3)
    return train_step.TrainStep(G, D, G_ema, GaussianPrior(4), opt_g, opt_d, get_gan_loss("ns"), gp_weight=0.0,
                                ema_beta=0.5, autocast=contextlib.nullcontext, device=cpu, graph=False,
                                first_step=first_step, **kw)


@pytest.mark.parametrize(("first_step", "want"), [(0, [0, 3, 6]), (2, [3, 6])])
def test_r1_is_taken_at_the_multiples_of_the_interval_counted_from_the_run_start(monkeypatch, first_step, want):
    step = _step(first_step, r1_gamma=1.0, reg_interval=3)
    taken, real_r1 = [], step._r1
    monkeypatch.setattr(step, "_r1", lambda D, x: taken.append(step._next_index - 1) or real_r1(D, x))
    g = torch.Generator().manual_seed(0)
    for _ in range(7 - first_step):
        step(torch.randn(16, 2, generator=g), torch.randn(16, 4, generator=g))
    assert taken == want


def test_a_regularized_step_weighs_the_penalty_by_the_interval():
    g = torch.Generator().manual_seed(1)
    real, z = torch.randn(16, 2, generator=g), torch.randn(16, 4, generator=g)
    plain, every, lazy = _step(r1_gamma=0.0), _step(r1_gamma=0.0, r2_gamma=10.0), _step(r1_gamma=0.0, r2_gamma=10.0,
                                                                                         reg_interval=4)
    for s in (plain, every, lazy):
        s(real, z)
    [(ld_plain, _)], [(ld_every, _)], [(ld_lazy, _)] = plain.pop_means(), every.pop_means(), lazy.pop_means()
    assert ld_lazy - ld_plain == pytest.approx(4 * (ld_every - ld_plain), rel=1e-5)
    assert ld_every - ld_plain > 1e-3  # the penalty is there to be weighed


def test_without_a_penalty_the_interval_changes_nothing():
    a, b = _step(r1_gamma=0.0), _step(r1_gamma=0.0, reg_interval=16)
    assert b.reg_interval == 1  # no R1/R2: a single (graph) variant
    g = torch.Generator().manual_seed(2)
    for _ in range(3):
        real, z = torch.randn(16, 2, generator=g), torch.randn(16, 4, generator=g)
        a(real, z)
        b(real, z)
    assert all(torch.equal(p, q) for p, q in zip(a.D.parameters(), b.D.parameters()))


def test_the_interval_changes_training_and_every_step_is_the_old_default(tmp_path):
    lazy = train(tiny(*_LAZY), run_dir=tmp_path / "lazy", quiet=True)
    every = train(tiny(*_LAZY[:-1]), run_dir=tmp_path / "every", quiet=True)
    one = train(tiny(*_LAZY[:-1], "loss.reg_interval=1"), run_dir=tmp_path / "one", quiet=True)
    d = {k: load_checkpoint(tmp_path / k / CHECKPOINT_NAME)["D"] for k in ("lazy", "every", "one")}
    assert all(torch.equal(v, d["one"][k]) for k, v in d["every"].items())
    assert any(not torch.allclose(v, d["every"][k]) for k, v in d["lazy"].items())
    assert lazy["kimg"] == every["kimg"] == one["kimg"]


def test_a_lazily_regularized_run_stopped_between_penalties_resumes_exactly(tmp_path, monkeypatch):
    full = train(tiny(*_LAZY), run_dir=tmp_path / "full", quiet=True)
    # Ctrl-C in the 6th step: the checkpoint is at step 4 (0.2 kimg), not a multiple of 3
    train_interrupted_at_step(monkeypatch, 6, lambda: train(tiny(*_LAZY), run_dir=tmp_path / "part", quiet=True))
    assert load_checkpoint(tmp_path / "part" / CHECKPOINT_NAME)["step"] == 4
    resumed = train(tiny(*_LAZY), run_dir=tmp_path / "part", resume=True, quiet=True)
    assert_same_state(full, resumed)


@pytest.mark.parametrize("mode", ["stacked", "sequential"])
def test_each_seed_of_a_lazily_regularized_sweep_trains_as_its_single_run(tmp_path, mode):
    sweep = train(tiny(*_LAZY, "seeds=0,2", f"sweep_mode={mode}"), run_dir=tmp_path / "sweep", quiet=True)
    for s in (0, 2):
        single = train(tiny(*_LAZY, f"seed={s}"), run_dir=tmp_path / f"single{s}", quiet=True)
        got = load_checkpoint(seed_dir(sweep["run_dir"], s) / CHECKPOINT_NAME)["D"]
        want = load_checkpoint(single["run_dir"] / CHECKPOINT_NAME)["D"]
        for k, v in want.items():
            assert torch.allclose(got[k], v, rtol=1e-4, atol=1e-6), f"seed {s}, D.{k}"


@pytest.mark.parametrize("value", ["0", "-2", "1.5"])
def test_a_bad_interval_is_refused_with_what_it_means(value):
    with pytest.raises(ValueError, match="loss.reg_interval"):
        load_config(None, [f"loss.reg_interval={value}"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("seeds", ["seed=0", "seeds=0,1"], ids=["single", "streams-sweep"])
def test_a_cuda_graph_run_regularizes_lazily_as_the_eager_run(tmp_path, float64, seeds):
    # Two graphs (with and without R1/R2), each captured after one eager run of its own.
    common = [*_LAZY, seeds, "device=cuda", "bf16=false", "schedule.total_kimg=1", "schedule.snapshot_kimg=100"]
    graphed = train(tiny(*common, "cuda_graphs=true"), run_dir=tmp_path / "graph", quiet=True)
    eager = train(tiny(*common, "cuda_graphs=false"), run_dir=tmp_path / "eager", quiet=True)
    assert graphed["cuda_graph"] is True and eager["cuda_graph"] is False
    folder = (lambda r: seed_dir(r["run_dir"], 1)) if "seeds" in seeds else (lambda r: r["run_dir"])
    a = load_checkpoint(folder(graphed) / CHECKPOINT_NAME)["D"]
    b = load_checkpoint(folder(eager) / CHECKPOINT_NAME)["D"]
    assert max(float((a[k] - v).abs().max() / v.abs().max().clamp_min(1e-6)) for k, v in b.items()) < 1e-6
