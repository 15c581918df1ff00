"""The training step module: optimizer flags across devices, loss bookkeeping, NaN detection."""

from __future__ import annotations

import contextlib

import pytest
import torch
from torch import nn

from gmmgan.gan.losses import get_gan_loss
from gmmgan.gan.priors import GaussianPrior
from gmmgan.gan.train_step import TrainStep, adam, load_optimizer_state, match_optimizer_state


def _step(lr=1e-3, loss="ns", r2_gamma=0.0, d_lr=None, r1_gamma=0.1):
    torch.manual_seed(0)
    G, D = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)), nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 1), nn.Flatten(0))
    G_ema = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)).requires_grad_(False)
    G_ema.load_state_dict(G.state_dict())
    cpu = torch.device("cpu")
    opt_g = adam(G.parameters(), cpu, False, lr=lr)
    opt_d = adam(D.parameters(), cpu, False, lr=lr if d_lr is None else d_lr)
    return TrainStep(G, D, G_ema, GaussianPrior(4), opt_g, opt_d, get_gan_loss(loss), r1_gamma=r1_gamma, gp_weight=0.0,
                     ema_beta=0.5, autocast=contextlib.nullcontext, device=cpu, graph=True, r2_gamma=r2_gamma)


def test_r2_adds_the_gradient_penalty_at_generated_samples_to_d_loss():
    g = torch.Generator().manual_seed(1)
    real, z = torch.randn(16, 2, generator=g), torch.randn(16, 4, generator=g)
    plain, with_r2 = _step(), _step(r2_gamma=10.0)
    fake = with_r2.G(z).detach().requires_grad_(True)
    grad = torch.autograd.grad(with_r2.D(fake).sum(), fake)[0]
    r2 = 10.0 / 2 * grad.square().sum(1).mean()  # gamma/2 E|grad D(fake)|^2 at the first step's weights
    plain(real, z)
    with_r2(real, z)
    [(ld_plain, _)], [(ld_r2, _)] = plain.pop_means(), with_r2.pop_means()
    assert ld_r2 - ld_plain == pytest.approx(float(r2), rel=1e-5)


def test_rpgan_g_loss_pairs_each_generated_sample_with_a_real_one():
    # D's learning rate 0: the G step sees the D of the D step, so its loss can be computed by hand.
    step = _step(loss="rpgan", d_lr=0.0, r1_gamma=0.0)
    g = torch.Generator().manual_seed(2)
    real, z = torch.randn(16, 2, generator=g), torch.randn(16, 4, generator=g)
    with torch.no_grad():
        want_d = torch.nn.functional.softplus(step.D(step.G(z)) - step.D(real)).mean()
        want_g = torch.nn.functional.softplus(step.D(real) - step.D(step.G(z))).mean()
    step(real, z)
    [(ld, lg)] = step.pop_means()
    assert ld == pytest.approx(float(want_d), rel=1e-5)
    assert lg == pytest.approx(float(want_g), rel=1e-5)


def test_step_on_cpu_trains_and_keeps_loss_means():
    step = _step()
    assert not step.use_graph  # CUDA graphs are CUDA only
    before = [p.clone() for p in step.G.parameters()]
    g = torch.Generator().manual_seed(1)
    for _ in range(3):
        step(torch.randn(16, 2, generator=g), torch.randn(16, 4, generator=g))
    assert all(not torch.equal(a, b) for a, b in zip(before, step.G.parameters()))
    # EMA moved halfway-ish towards G, not onto it.
    assert all(not torch.equal(a, b) for a, b in zip(step.G_ema.parameters(), step.G.parameters()))
    [(ld, lg)] = step.pop_means()
    assert 0 < ld < 5 and 0 < lg < 5
    assert step.sums.tolist() == [[0.0, 0.0, 0.0]]
    assert step.first_bad_step() == [-1]


def test_non_finite_loss_is_reported_with_its_step():
    step = _step()
    g = torch.Generator().manual_seed(1)
    step(torch.randn(16, 2, generator=g), torch.randn(16, 4, generator=g))
    step(torch.full((16, 2), float("nan")), torch.randn(16, 4, generator=g))
    step(torch.randn(16, 2, generator=g), torch.randn(16, 4, generator=g))
    assert step.first_bad_step() == [1]


def test_optimizer_state_from_a_cuda_graph_run_loads_on_cpu():
    p = nn.Parameter(torch.ones(3))
    opt = adam([p], torch.device("cpu"), False, lr=0.1)
    p.grad = torch.ones(3)
    opt.step()
    saved = opt.state_dict()
    saved["param_groups"][0].update(capturable=True, fused=True)  # as a fused, capturable CUDA Adam writes it
    fresh = adam([p], torch.device("cpu"), False, lr=0.1)
    fresh.load_state_dict(match_optimizer_state(saved, fresh))
    assert not fresh.param_groups[0]["capturable"] and not fresh.param_groups[0]["fused"]
    fresh.step()
    assert torch.isfinite(p).all()


@pytest.mark.parametrize("saved_layout", [torch.channels_last, torch.contiguous_format])
def test_adam_moments_take_their_parameters_layout_on_load(saved_layout):
    # A checkpoint from channels-last nets (CUDA) resumed with NCHW nets (CPU), and the reverse.
    here = torch.channels_last if saved_layout == torch.contiguous_format else torch.contiguous_format
    w = torch.randn(4, 3, 2, 2)
    saved_p = nn.Parameter(w.clone().contiguous(memory_format=saved_layout))
    opt = adam([saved_p], torch.device("cpu"), False, lr=0.1)
    saved_p.grad = torch.randn_like(saved_p)
    opt.step()
    saved = opt.state_dict()
    p = nn.Parameter(w.clone().contiguous(memory_format=here))
    fresh = adam([p], torch.device("cpu"), False, lr=0.1)
    load_optimizer_state(fresh, saved)
    state = fresh.state[p]
    for k in ("exp_avg", "exp_avg_sq"):
        assert state[k].is_contiguous(memory_format=here)
        torch.testing.assert_close(state[k], opt.state[saved_p][k], rtol=0, atol=0)
