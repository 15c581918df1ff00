"""loss.md_learnable: the Mixture Density GAN's means and shared sigma as parameters of D (SimplexMixtureHead)."""

from __future__ import annotations

import copy
import math
import os

import pytest
import torch
import torch.multiprocessing as mp
from _helpers import TINY_DDP, TINY_RING, assert_same_state, cli, free_port, train_interrupted_at_step
from _helpers import tiny_train_config as tiny

from gmmgan.gan import train_step
from gmmgan.gan.checkpoint import CHECKPOINT_NAME, load_checkpoint
from gmmgan.gan.config import LossConfig, load_config
from gmmgan.gan.density_head import HeadedDiscriminator
from gmmgan.gan.losses import MIXTURE_DENSITY_SCORES, build_gan_loss
from gmmgan.gan.mixture_density import (
    SIGMA_FLOOR,
    MixtureDensityLoss,
    SimplexMixtureHead,
    _log_peak,
    score_d_loss,
    score_g_loss,
)
from gmmgan.gan.networks import build_networks
from gmmgan.gan.stacked import StackedModule
from gmmgan.gan.sweep import seed_dir
from gmmgan.gan.training_loop import train

_LEARN = ["loss.kind=mixture_density", "loss.md_learnable=true", "loss.md_dim=4", "loss.r1_gamma=1", "nets.pack=2",
          "optim.eps=1e-8", "prior.kind=gaussian", "prior.z_dim=4"]


def _moved_head(seed=0, k=5, dim=4, scale=0.8) -> SimplexMixtureHead:
    """A head whose means and sigma are no longer the simplex's (as after training)."""
    head = SimplexMixtureHead(dim, k, 1.0, 3.0)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        head.means.add_(torch.randn(head.means.shape, generator=g, dtype=head.means.dtype) * scale)
        head.raw_log_sigma.add_(-0.3)
    return head


# ----------------------------------------------------------------- the head
def test_a_fresh_head_scores_as_the_fixed_mixture(float64):
    loss = MixtureDensityLoss(dim=9, sigma=1.3, distance=5.0)
    head = SimplexMixtureHead(9, None, 1.3, 5.0)
    torch.testing.assert_close(head.means, loss.means("cpu", torch.float64), rtol=0, atol=0)
    torch.testing.assert_close(head.log_sigma().exp(), torch.tensor(1.3), rtol=1e-12, atol=0)
    e = torch.cat([torch.randn(64, 9, generator=torch.Generator().manual_seed(0)) * 3, head.means.detach()])
    torch.testing.assert_close(head(e), loss.score(e), rtol=0, atol=1e-10)
    # and the loss on those scores is the fixed loss (every s < 0 here, so the clamps change nothing)
    real, fake = e[:40], e[40:]
    torch.testing.assert_close(score_d_loss(head(real), head(fake)), loss.d(real, fake), rtol=0, atol=1e-10)
    torch.testing.assert_close(score_g_loss(head(fake)), loss.g(fake), rtol=0, atol=1e-10)


def test_the_peak_follows_the_means_and_its_gradient_is_the_envelope_one(float64):
    head = _moved_head()
    mu, sigma = head.means.detach().clone(), float(head.log_sigma().detach().exp())
    peak = head.log_peak()
    assert abs(float(peak.detach()) - _log_peak(mu, sigma, 5000)) < 1e-8  # the fixed-step search finds the peak
    start = SimplexMixtureHead(4, 5, 1.0, 3.0).log_peak().detach()
    assert abs(float(peak.detach()) - float(start)) > 1e-3  # ... of these means, not of the simplex
    (g_mu, g_raw) = torch.autograd.grad(peak, [head.means, head.raw_log_sigma])
    h = 1e-6  # central differences of the (converged) reference peak
    for k, d in [(0, 0), (2, 1), (4, 3)]:
        up, down = mu.clone(), mu.clone()
        up[k, d] += h
        down[k, d] -= h
        fd = (_log_peak(up, sigma, 5000) - _log_peak(down, sigma, 5000)) / (2 * h)
        assert abs(float(g_mu[k, d]) - fd) < 1e-6, (k, d)
    raw = float(head.raw_log_sigma.detach())
    dsig = math.exp(float(head.log_sigma().detach())) * torch.sigmoid(torch.tensor(raw - head.log_sigma_min)).item()
    fd = (_log_peak(mu, sigma + h, 5000) - _log_peak(mu, sigma - h, 5000)) / (2 * h) * dsig
    assert abs(float(g_raw) - fd) < 1e-6


def _train_head_alone(detach_peak: bool, steps: int = 600) -> SimplexMixtureHead:
    """Adam on a head's parameters alone, reals in one blob at the first vertex, fakes spread around."""
    torch.manual_seed(0)
    head = SimplexMixtureHead(4, 5, 1.0, 4.0)
    if detach_peak:
        peak = head.log_peak
        head.log_peak = lambda: peak().detach()
    opt = torch.optim.Adam(head.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    blob = head.means.detach()[0].clone()
    for _ in range(steps):
        real, fake = blob + 0.3 * torch.randn(64, 4, generator=g), torch.randn(64, 4, generator=g) * 4
        loss = score_d_loss(head(real), head(fake))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return head


def test_with_the_peaks_gradient_the_kernels_do_not_stack_on_the_reals():
    # Why log_peak keeps its gradient: detached, D gains by piling every kernel onto the reals (f adds up
    # where kernels overlap); with it, the kernels stay apart (here: a broad top around the blob).
    def closest_pair(head):
        d = torch.cdist(head.means.detach(), head.means.detach())
        return float(d[~torch.eye(5, dtype=torch.bool)].min())

    assert closest_pair(_train_head_alone(detach_peak=False)) > 2.0
    assert closest_pair(_train_head_alone(detach_peak=True)) < 0.05


def test_p_stays_at_most_one_for_moved_means(float64):
    for seed in range(5):
        head = _moved_head(seed, scale=1.5)
        g = torch.Generator().manual_seed(seed)
        e = torch.cat([torch.randn(5000, 4, generator=g) * 3,
                       head.means.detach().repeat(20, 1) + torch.randn(100, 4, generator=g) * 0.3])
        with torch.no_grad():
            assert float(head(e).max()) <= 1e-9


def test_sigma_has_a_smooth_floor():
    head = SimplexMixtureHead(4, 5, 2.0, 6.0)
    assert math.isclose(float(head.log_sigma().detach().exp()), 2.0, rel_tol=1e-6)
    with torch.no_grad():
        head.raw_log_sigma.fill_(-1e4)
    floor = float(head.log_sigma().detach().exp())
    assert math.isclose(floor, SIGMA_FLOOR * 2.0, rel_tol=1e-6)
    with torch.no_grad():
        head.raw_log_sigma.fill_(math.log(SIGMA_FLOOR * 2.0))  # at the floor: still a gradient back up
    s = head(torch.randn(16, 4) * 3)
    (grad,) = torch.autograd.grad(score_d_loss(s[:8], s[8:]), head.raw_log_sigma)
    assert torch.isfinite(s).all() and torch.isfinite(grad) and grad != 0


def test_the_score_losses_are_finite_far_away_and_clamped_above_the_peak():
    head = SimplexMixtureHead(3, 1, 1.0, 1.0)  # K = 1: s = 0 at the vertex
    far = torch.tensor([[1e4, -1e4, 3e3], [50.0, 0, 0], [0.0, 0.0, 0.0]], requires_grad=True)
    for value in (score_d_loss(head(far), head(far)), score_g_loss(head(far))):
        (grad,) = torch.autograd.grad(value, far)
        assert torch.isfinite(value) and torch.isfinite(grad).all()
    above = torch.tensor([1e-3, -1.0], requires_grad=True)  # p a hair above 1: worth no more than p = 1
    assert float(score_g_loss(above.detach())) == pytest.approx(0.5)
    (grad,) = torch.autograd.grad(score_d_loss(above, torch.tensor([-2.0])), above)
    assert grad.tolist() == [0.0, -0.5]
    with pytest.raises(ValueError, match=r"shape \(N,\)"):
        score_d_loss(torch.zeros(4, 2), torch.zeros(4))


def test_a_stacked_head_gives_each_seeds_scores(float64):
    heads = [_moved_head(s) for s in range(3)]
    stacked = StackedModule(heads)
    x = torch.randn(3, 10, 4, generator=torch.Generator().manual_seed(0)) * 2
    torch.testing.assert_close(stacked(x), torch.stack([h(xs) for h, xs in zip(heads, x)]), rtol=0, atol=1e-12)


# ----------------------------------------------------------------- D and the config
def test_the_mixture_is_a_head_of_d_whose_parameters_d_trains():
    cfg = load_config(None, TINY_RING + _LEARN)
    torch.manual_seed(0)
    _, D = build_networks(cfg, (2,), 4)
    assert isinstance(D, HeadedDiscriminator) and isinstance(D.head, SimplexMixtureHead)
    names = {n for n, _ in D.named_parameters()}
    assert {"head.means", "head.raw_log_sigma"} <= names and not list(D.head.buffers())
    x = torch.randn(8, 2)
    assert D.embed(x).shape == (4, 4) and D(x).shape == (4,)
    assert build_gan_loss(cfg.loss) is MIXTURE_DENSITY_SCORES and MIXTURE_DENSITY_SCORES.score(x) is x
    fixed = load_config(None, TINY_RING + [a for a in _LEARN if "learnable" not in a])
    torch.manual_seed(0)
    _, D0 = build_networks(fixed, (2,), 4)  # the same body, drawn from the same RNG (the head draws nothing)
    assert all(torch.equal(a, b) for a, b in zip(D0.state_dict().values(), D.body.state_dict().values()))
    assert isinstance(build_gan_loss(fixed.loss), MixtureDensityLoss)


@pytest.mark.parametrize("fields, message", [
    (dict(kind="mixture_density", md_learnable="yes"), "loss.md_learnable must be true or false, got 'yes'"),
    (dict(kind="mixture_density", md_learnable=1), "loss.md_learnable must be true or false, got 1"),
    (dict(kind="ns", md_learnable=True), "loss.kind=ns has no such mixture"),
    (dict(kind="em_density", md_learnable=True), "loss.kind=em_density has no such mixture"),
])
def test_bad_md_learnable_values_are_clear_errors(fields, message):
    with pytest.raises(ValueError, match=message):
        LossConfig(**fields)


def test_a_bad_md_learnable_on_the_command_line(tmp_path, capsys):
    rc, _, err = cli(capsys, "train", "--out", tmp_path, *TINY_RING, "loss.kind=mixture_density",
                     "loss.md_learnable=maybe")
    assert rc == 2 and "loss.md_learnable must be true or false, got 'maybe'" in err and "Traceback" not in err, err


# ----------------------------------------------------------------- training
def test_training_moves_the_mixture_and_keeps_p_at_most_one(tmp_path):
    cfg = tiny(*_LEARN, "schedule.total_kimg=2", "optim.d_lr=1e-3")
    torch.manual_seed(0)
    _, fresh = build_networks(cfg, (2,), 4)
    result = train(cfg, run_dir=tmp_path / "run", quiet=True)
    head = result["D"].head
    moved = {n: float((p.detach() - fresh.head.get_parameter(n).detach()).abs().max()) for n, p in head.named_parameters()}
    assert moved["means"] > 1e-3 and moved["raw_log_sigma"] > 1e-4, moved
    ckpt = load_checkpoint(tmp_path / "run" / CHECKPOINT_NAME)
    assert torch.equal(ckpt["D"]["head.means"], head.means.detach())
    with torch.no_grad():
        D = result["D"].eval()
        points = torch.cat([torch.randn(4000, 2) * 3, result["G"](result["prior"].sample(1000))])
        s = torch.cat([D(points), head(torch.randn(4000, 4) * 4), head(head.means)])
        assert float(s.max()) <= 1e-5, float(s.max())  # p <= 1 (+ the fixed-step search's float32 slack)
        assert abs(float(head.log_peak()) - _log_peak(head.means.double(), float(head.log_sigma().exp()))) < 1e-5


def test_a_stopped_and_resumed_run_equals_an_uninterrupted_one(tmp_path, monkeypatch):
    full = train(tiny(*_LEARN), run_dir=tmp_path / "full", quiet=True)
    # Ctrl-C in the 6th step: the last checkpoint is at 0.2 kimg
    train_interrupted_at_step(monkeypatch, 6, lambda: train(tiny(*_LEARN), run_dir=tmp_path / "part", quiet=True))
    assert load_checkpoint(tmp_path / "part" / CHECKPOINT_NAME)["cur_nimg"] == 200
    resumed = train(tiny(*_LEARN), run_dir=tmp_path / "part", resume=True, quiet=True)
    assert resumed["kimg"] == full["kimg"] == 0.4
    assert_same_state(full, resumed)
    assert not torch.equal(full["D"].head.means, SimplexMixtureHead(4, None, 1.0, 5.0).means)


@pytest.mark.parametrize("extra", [["loss.gp_weight=1", "nets.d_spectral_norm=true"], ["prior.kind=fitted_gmm"]],
                         ids=["gp-spectral-norm", "fitted-prior"])
def test_each_seed_of_a_sweep_trains_as_its_single_run(tmp_path, float64, extra):
    steps = ["schedule.batch_size=32", "schedule.total_kimg=3.2", "schedule.snapshot_kimg=100",
             "schedule.log_kimg=1.6", "schedule.ema_kimg=1", "nets.d_batch_norm=false", *_LEARN, *extra]
    sweep = train(tiny(*steps, "seeds=0,3", f"out={tmp_path / 'sweep'}"), quiet=True)
    for s in (0, 3):
        single = train(tiny(*steps, f"seed={s}", f"out={tmp_path / 'single'}"), quiet=True)
        got = load_checkpoint(seed_dir(sweep["run_dir"], s) / CHECKPOINT_NAME)
        want = load_checkpoint(single["run_dir"] / CHECKPOINT_NAME)
        assert not torch.equal(want["D"]["head.means"], SimplexMixtureHead(4, None, 1.0, 5.0).means)
        for net in ("G", "D", "G_ema"):
            for k, v in want[net].items():
                if torch.is_floating_point(v):
                    err = float((got[net][k] - v).abs().max() / v.abs().max().clamp_min(1e-6))
                    assert err < 1e-8, f"seed {s}, {net}.{k}: relative difference {err:.2e}"
        for i, st in want["opt_d"]["state"].items():  # Adam's moments (the head's too), on each tensor's scale
            for name in ("exp_avg", "exp_avg_sq"):
                err = float((got["opt_d"]["state"][i][name] - st[name]).abs().max() / st[name].abs().max())
                assert err < 1e-6, f"seed {s}, opt_d[{i}].{name}: {err:.2e}"
        assert torch.equal(got["z_generator"], want["z_generator"])


def _ddp_worker(rank: int, world: int, port: int, out: str) -> None:
    """One rank of a 2-process md_learnable run: its D's state to OUT/rank{rank}.pt."""
    os.environ.update({"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "GMMGAN_DIST_TIMEOUT": "60"})
    import gmmgan.gan.training_loop as training_loop
    from gmmgan.cli import main

    torch.set_num_threads(1)
    train_fn, results = training_loop.train, []
    training_loop.train = lambda *a, **kw: results.append(train_fn(*a, **kw)) or results[-1]
    code = main(["train", "--quiet", "--out", os.path.join(out, "runs"), *TINY_DDP, *_LEARN])
    assert code == 0
    torch.save(results[0]["D"].state_dict(), os.path.join(out, f"rank{rank}.pt"))


def test_two_ranks_end_with_the_same_learned_mixture(tmp_path):
    mp.start_processes(_ddp_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True, start_method="spawn")
    s0, s1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert s0.keys() == s1.keys() and "head.means" in s0
    for k in s0:
        torch.testing.assert_close(s0[k], s1[k], rtol=0, atol=0, msg=k)
    assert not torch.equal(s0["head.means"], SimplexMixtureHead(4, None, 1.0, 5.0).means)


# ----------------------------------------------------------------- CUDA graphs
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("seeds", [[], ["seeds=0,1"]], ids=["single", "sweep"])
def test_a_cuda_graph_run_learns_the_mixture_as_the_eager_run(tmp_path, seeds):
    common = [*_LEARN, "device=cuda", "bf16=false", "schedule.total_kimg=1", "schedule.snapshot_kimg=100",
              "loss.gp_weight=1", *seeds]
    graphed = train(tiny(*common, "cuda_graphs=true", f"out={tmp_path / 'graph'}"), quiet=True)
    eager = train(tiny(*common, "cuda_graphs=false", f"out={tmp_path / 'eager'}"), quiet=True)
    assert graphed["cuda_graph"] is True and eager["cuda_graph"] is False
    dirs = [(seed_dir(graphed["run_dir"], s), seed_dir(eager["run_dir"], s)) for s in (0, 1)] if seeds else \
        [(graphed["run_dir"], eager["run_dir"])]
    for a_dir, b_dir in dirs:
        a, b = (load_checkpoint(d / CHECKPOINT_NAME) for d in (a_dir, b_dir))
        start = SimplexMixtureHead(4, None, 1.0, 5.0).means
        assert not torch.equal(a["D"]["head.means"].cpu(), start)
        for net in ("G", "D"):
            for k, v in b[net].items():
                if torch.is_floating_point(v):
                    err = float((a[net][k] - v).abs().max() / v.abs().max().clamp_min(1e-6))
                    assert err < 1e-4, f"{net}.{k}: relative difference {err:.2e}"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_captured_step_reads_the_heads_current_parameters():
    dev = torch.device("cuda")
    cfg = tiny(*_LEARN, "device=cuda")
    torch.manual_seed(0)
    G, D = (net.to(dev) for net in build_networks(cfg, (2,), 4))
    from gmmgan.gan.priors import build_prior

    prior = build_prior(cfg.prior, (2,), 0).to(dev)
    opt_g = train_step.adam(G.parameters(), dev, True, lr=0.0)
    opt_d = train_step.adam(D.parameters(), dev, True, lr=0.0)  # lr 0: replays on one batch repeat themselves
    no_autocast = lambda: torch.autocast(device_type="cuda", enabled=False)  # noqa: E731
    step = train_step.TrainStep(G, D, copy.deepcopy(G).requires_grad_(False), prior, opt_g, opt_d,
                                MIXTURE_DENSITY_SCORES, r1_gamma=1.0, gp_weight=0.0, ema_beta=0.5,
                                autocast=no_autocast, device=dev, graph=True)
    gen = torch.Generator(dev).manual_seed(1)
    real, z = torch.randn(50, 2, device=dev, generator=gen), prior.sample(50, gen)
    for _ in range(train_step.WARMUP_STEPS + 1):
        step(real, z)
    assert step.graphed
    step.pop_means()

    def replayed():
        step(real, z)
        return step.pop_means()[0]

    def eager():
        with torch.no_grad():
            fake = G(z)
            return float(score_d_loss(D(real), D(fake))), float(score_g_loss(D(fake)))

    before = replayed()
    assert before == pytest.approx(eager(), rel=1e-5)
    with torch.no_grad():  # what D's optimizer does to the head, in place
        D.head.means.mul_(0.6)
        D.head.raw_log_sigma.add_(0.5)
    after = replayed()
    assert abs(after[0] - before[0]) > 1e-3
    assert after == pytest.approx(eager(), rel=1e-5)
