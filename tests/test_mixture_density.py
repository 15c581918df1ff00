"""loss.kind=mixture_density: the Mixture Density GAN discriminator (simplex kernels on D's embedding)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from _helpers import PNG_MAGIC, TINY_RING, cli
from hypothesis import given
from hypothesis import strategies as st
from torch.func import vmap

from gmmgan.gan.config import LossConfig, load_config
from gmmgan.gan.losses import build_gan_loss, get_gan_loss
from gmmgan.gan.mixture_density import MixtureDensityLoss, simplex_vertices
from gmmgan.gan.networks import build_networks


# ----------------------------------------------------------------- the simplex
@pytest.mark.parametrize("k, dim, dist", [(10, 9, 5.0), (3, 2, 1.5), (4, 8, 3.0), (2, 1, 2.0), (1, 3, 1.0)])
def test_simplex_vertices_are_equidistant_centred_and_deterministic(k, dim, dist):
    v = simplex_vertices(k, dim, dist)
    assert v.shape == (k, dim) and v.dtype == torch.float64
    d = torch.cdist(v, v)
    off = d[~torch.eye(k, dtype=torch.bool)]
    torch.testing.assert_close(off, torch.full_like(off, dist), rtol=0, atol=1e-12)
    torch.testing.assert_close(v.sum(0), torch.zeros(dim, dtype=torch.float64), rtol=0, atol=1e-12)
    assert torch.equal(v, simplex_vertices(k, dim, dist))
    assert torch.all(v[:, k - 1:] == 0)  # K < dim + 1: zero padding


# ----------------------------------------------------------------- the score
def _naive_score(e, mu, sigma, log_peak):
    e, mu = np.asarray(e, np.float64), np.asarray(mu, np.float64)
    sq = ((e[:, None, :] - mu[None]) ** 2).sum(-1)
    with np.errstate(divide="ignore"):
        return np.log(np.exp(-sq / (2 * sigma**2)).sum(1)) - log_peak


def test_score_matches_a_direct_float64_computation_and_is_at_most_zero():
    loss = MixtureDensityLoss(dim=9, sigma=1.3, distance=4.0)
    e = torch.randn(64, 9, generator=torch.Generator().manual_seed(0)) * 2
    got = loss.score(e)
    want = _naive_score(e, loss.means(e.device, torch.float64), 1.3, loss.log_peak)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-5)
    assert got.dtype == torch.float32 and torch.all(got <= 0)


@pytest.mark.parametrize("k, dim, sigma, dist", [(10, 9, 1.0, 5.0), (4, 6, 0.7, 2.0), (1, 2, 1.0, 1.0)])
def test_score_at_a_vertex(k, dim, sigma, dist):
    loss = MixtureDensityLoss(dim, k, sigma, dist)
    mu = loss.means("cpu", torch.float64)
    want = math.log(1 + (k - 1) * math.exp(-dist**2 / (2 * sigma**2))) - loss.log_peak
    torch.testing.assert_close(loss.score(mu), torch.full((k,), want, dtype=torch.float64))
    assert want <= 0


@pytest.mark.parametrize("k, dim, sigma, dist", [(10, 9, 1.0, 5.0), (10, 9, 1.0, 3.0), (4, 6, 0.7, 2.0), (3, 2, 1.0, 1.0)])
def test_p_reaches_one_and_never_exceeds_it(k, dim, sigma, dist):
    # p = f / max f: a D that is sure of a real can say so (p = 1 somewhere), and p <= 1 everywhere.
    loss = MixtureDensityLoss(dim, k, sigma, dist)
    mu = loss.means("cpu", torch.float64)
    g = torch.Generator().manual_seed(0)
    e = torch.cat([torch.randn(20000, dim, generator=g, dtype=torch.float64) * dist,
                   mu.repeat(50, 1) + torch.randn(50 * k, dim, generator=g, dtype=torch.float64) * 0.3 * sigma])
    s = loss.score(e)
    assert s.max() <= 1e-12
    # gradient ascent on s from the best random points finds nothing higher than the peak
    x = e[s.topk(8).indices].clone().requires_grad_(True)
    opt = torch.optim.Adam([x], lr=1e-2)
    for _ in range(300):
        opt.zero_grad()
        (-loss.score(x).sum()).backward()
        opt.step()
    top = loss.score(x.detach()).max()
    assert -1e-6 < top <= 1e-12
    if dist > 1.1 * sigma * math.sqrt(2 * k):  # well separated: the maximum is (next to) a vertex
        assert loss.score(mu).min() > -1e-4


def test_default_mixture_pulls_reals_from_the_centre_to_the_vertices():
    # Why md_distance=5: the centre is a local minimum of p (a fresh D's embeddings are near 0).
    loss = MixtureDensityLoss()
    centre = loss.score(torch.zeros(1, 9, dtype=torch.float64))
    near = loss.score(torch.randn(100, 9, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 0.01)
    assert torch.all(near > centre) and centre < loss.score(loss.means("cpu", torch.float64)).min()


def test_gradients_are_finite_far_from_every_vertex_and_at_a_vertex():
    loss = MixtureDensityLoss(dim=3, components=1, sigma=1.0, distance=1.0)  # K = 1: s = 0 at the vertex
    far = torch.tensor([[1e4, -1e4, 3e3], [50.0, 0, 0], [0.0, 0.0, 0.0]], requires_grad=True)
    naive = torch.log(torch.exp(-far.square().sum(1) / 2))  # underflows to log(0) = -inf for the far ones
    assert torch.isinf(naive[:2]).all()
    for value in (loss.d(far, far), loss.g(far), loss.score(far).sum()):
        (grad,) = torch.autograd.grad(value, far)
        assert torch.isfinite(value) and torch.isfinite(grad).all()


@given(st.integers(0, 2**31 - 1), st.floats(1e-2, 30.0), st.floats(0.2, 3.0), st.floats(0.5, 8.0),
       st.integers(1, 6))
def test_stable_losses_equal_the_naive_float64_formulas_where_those_are_finite(seed, scale, sigma, dist, dim):
    loss = MixtureDensityLoss(dim, None, sigma, dist)
    g = torch.Generator().manual_seed(seed)
    real = torch.randn(8, dim, generator=g, dtype=torch.float64) * scale
    fake = torch.randn(8, dim, generator=g, dtype=torch.float64) * scale
    mu = loss.means("cpu", torch.float64).numpy()
    p_r, p_f = (np.exp(_naive_score(x, mu, sigma, loss.log_peak)) for x in (real, fake))
    with np.errstate(divide="ignore"):
        naive_d = -np.log(p_r).mean() - np.log(1 - p_f).mean()
        naive_g = -np.log(p_f).mean()
    normal = 1e-280  # below, the naive exp is denormal (imprecise) or 0
    if p_r.min() > normal and p_f.min() > normal and p_f.max() < 1 - 1e-9:
        np.testing.assert_allclose(float(loss.d(real, fake)), naive_d, rtol=1e-9)
    if p_f.min() > normal:
        np.testing.assert_allclose(float(loss.g(fake)), naive_g, rtol=1e-9)
    assert torch.isfinite(loss.d(real, fake)) and torch.isfinite(loss.g(fake))


# ----------------------------------------------------------------- the losses
def test_d_loss_falls_as_reals_move_to_a_vertex_and_fakes_far_away():
    loss = MixtureDensityLoss()
    mu = loss.means("cpu", torch.float32)
    g = torch.Generator().manual_seed(0)
    real0, fake0 = torch.randn(16, 9, generator=g), torch.randn(16, 9, generator=g)
    target_r, target_f = mu[torch.arange(16) % 10], fake0 * 20
    values = [float(loss.d(real0 + t * (target_r - real0), fake0 + t * (target_f - fake0)))
              for t in np.linspace(0, 1, 6)]
    assert all(a > b for a, b in zip(values, values[1:])), values
    assert values[-1] < 0.5 * values[0]


def test_vmap_over_a_seed_axis_gives_each_seeds_loss():
    loss = MixtureDensityLoss(dim=4, components=3)
    g = torch.Generator().manual_seed(2)
    real, fake = torch.randn(3, 10, 4, generator=g), torch.randn(3, 10, 4, generator=g)
    torch.testing.assert_close(vmap(loss.d)(real, fake), torch.stack([loss.d(r, f) for r, f in zip(real, fake)]))
    torch.testing.assert_close(vmap(loss.g)(fake), torch.stack([loss.g(f) for f in fake]))
    torch.testing.assert_close(loss.score(real), torch.stack([loss.score(r) for r in real]))


def test_build_gan_loss_and_the_logit_losses_score_is_the_identity():
    md = build_gan_loss(LossConfig(kind="mixture_density", md_dim=4, md_components=3, md_sigma=2.0, md_distance=6.0))
    assert isinstance(md, MixtureDensityLoss) and (md.dim, md.components, md.sigma, md.distance) == (4, 3, 2.0, 6.0)
    assert build_gan_loss(LossConfig(kind="hinge")) is get_gan_loss("hinge")
    x = torch.randn(5)
    assert get_gan_loss("ns").score(x) is x


def test_d_outputs_md_dim_units_and_other_ds_are_unchanged():
    cfg = load_config(None, TINY_RING + ["loss.kind=mixture_density", "loss.md_dim=5", "nets.pack=2"])
    torch.manual_seed(0)
    _, D = build_networks(cfg, (2,), 2)
    assert D(torch.randn(8, 2)).shape == (4, 5)
    plain = load_config(None, TINY_RING)
    torch.manual_seed(0)
    _, D1 = build_networks(plain, (2,), 2)
    assert D1(torch.randn(8, 2)).shape == (8,)


# ----------------------------------------------------------------- bad configs
@pytest.mark.parametrize("fields, message", [
    (dict(md_dim=3, md_components=5), "more than md_dim + 1 = 4"),
    (dict(md_dim=0), "loss.md_dim"),
    (dict(md_dim=1), ">= 2"),
    (dict(md_sigma=0.0), "loss.md_sigma"),
    (dict(md_sigma=-1.0), "loss.md_sigma"),
    (dict(md_distance=0.0), "loss.md_distance"),
    (dict(md_components=0), "loss.md_components"),
])
def test_bad_mixture_density_values_are_clear_errors(fields, message):
    with pytest.raises(ValueError, match=message.replace("+", r"\+")):
        LossConfig(kind="mixture_density", **fields)


def test_bad_values_on_the_command_line(tmp_path, capsys):
    rc, _, err = cli(capsys, "train", "--out", tmp_path, *TINY_RING, "loss.kind=mixture_density", "loss.md_dim=2",
                     "loss.md_components=4")
    assert rc == 2 and "md_components=4" in err and "Traceback" not in err, err


# ----------------------------------------------------------------- end to end
_MD = ["loss.kind=mixture_density", "loss.r1_gamma=1", "nets.pack=2", "loss.md_dim=4", "optim.eps=1e-8"]


@pytest.mark.parametrize("prior", [["prior.kind=fitted_gmm"], ["prior.kind=gaussian", "prior.z_dim=4"]],
                         ids=["fitted_gmm", "gaussian"])
def test_tiny_ring_runs(tmp_path, capsys, prior):
    rc, _, err = cli(capsys, "train", "--out", tmp_path, *TINY_RING, *_MD, *prior, "-q")
    assert rc == 0, err
    (run,) = tmp_path.iterdir()
    assert (run / "final.png").read_bytes()[:8] == PNG_MAGIC and (run / "metrics.json").exists()
    rc, _, err = cli(capsys, "sample", run, "-n", 5, "-o", tmp_path / "g.npy")
    assert rc == 0 and np.load(tmp_path / "g.npy").shape == (5, 2), err


def test_tiny_seed_sweep(tmp_path, capsys):
    rc, _, err = cli(capsys, "train", "--out", tmp_path, *TINY_RING, *_MD, "--seeds", "0,1", "-q")
    assert rc == 0, err


def test_tiny_dcgan_image_run(mnist_root, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("GMMGAN_DATA", str(mnist_root))
    rc, _, err = cli(capsys, "train", "--out", tmp_path, "data.name=mnist-limited", "data.per_class=4",
                     "prior.n_components=3", "prior.embed_dim=4", "prior.noise_dim=2", "prior.warm_start_steps=2",
                     "nets.g_width=4", "nets.d_width=4", "schedule.batch_size=8", "schedule.total_kimg=0.016",
                     "schedule.snapshot_kimg=0.008", "schedule.sample_kimg=0.008", "device=cpu", "-q",
                     "loss.kind=mixture_density", "loss.r1_gamma=1", "nets.pack=2")
    assert rc == 0, err
    (run,) = tmp_path.iterdir()
    assert (run / "final.png").read_bytes()[:8] == PNG_MAGIC
    rc, _, err = cli(capsys, "sample", run, "-n", 5, "-o", tmp_path / "g.npy")
    assert rc == 0 and np.load(tmp_path / "g.npy").shape == (5, 1, 28, 28), err


def test_a_large_adam_eps_is_warned_about(tmp_path, capsys):
    md = [a for a in _MD if not a.startswith("optim.eps")]
    rc, out, err = cli(capsys, "train", "--out", tmp_path, *TINY_RING, *md, "optim.eps=1e-2", "schedule.total_kimg=0.1")
    assert rc == 0, err
    text = " ".join(out.split())
    assert "D's Adam eps 0.01" in text and "set optim.d_eps=1e-8" in text
    rc, out, err = cli(capsys, "train", "--out", tmp_path, *TINY_RING, *md, "optim.eps=1e-2", "optim.d_eps=1e-8",
                       "schedule.total_kimg=0.1")
    assert rc == 0, err
    assert "D's Adam eps" not in " ".join(out.split())  # D's own eps is small: no warning


# ----------------------------------------------------------------- optim.d_eps
@pytest.mark.parametrize("d_eps, want", [(None, 1e-2), (1e-8, 1e-8)])
def test_d_eps_sets_only_ds_adam_epsilon(tmp_path, d_eps, want):
    from _helpers import tiny_train_config

    from gmmgan.gan.checkpoint import CHECKPOINT_NAME, load_checkpoint
    from gmmgan.gan.training_loop import train

    extra = [] if d_eps is None else [f"optim.d_eps={d_eps}"]
    cfg = tiny_train_config("optim.eps=1e-2", *extra)
    train(cfg, run_dir=tmp_path / "run", quiet=True)
    ckpt = load_checkpoint(tmp_path / "run" / CHECKPOINT_NAME)
    assert [g["eps"] for g in ckpt["opt_g"]["param_groups"]] == [1e-2]
    assert [g["eps"] for g in ckpt["opt_d"]["param_groups"]] == [want]


def test_a_negative_d_eps_is_refused():
    from gmmgan.gan.config import load_config

    with pytest.raises(ValueError, match=r"optim.d_eps must be > 0"):
        load_config(None, ["optim.d_eps=-1"])
