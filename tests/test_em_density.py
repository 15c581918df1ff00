"""loss.kind=em_density: D's embedding scored by a Gaussian mixture fitted by EM on real embeddings, refreshed by kimg."""

from __future__ import annotations

import contextlib
import copy
import json
import math
import warnings
from functools import partial

import numpy as np
import pytest
import torch
from _helpers import TINY_TRAIN, assert_same_state, blob_data, cli, train_interrupted_at_step
from _helpers import tiny_train_config as tiny

from gmmgan.gan import sweep as sweep_module
from gmmgan.gan import train_step
from gmmgan.gan.checkpoint import CHECKPOINT_NAME, load_checkpoint
from gmmgan.gan.config import LossConfig, load_config
from gmmgan.gan.density_head import FittedMixtureHead, HeadedDiscriminator, _derived_seed, refresh_due, refresh_head
from gmmgan.gan.losses import build_gan_loss, get_gan_loss
from gmmgan.gan.networks import build_networks
from gmmgan.gan.priors import build_prior
from gmmgan.gan.stacked import StackedModule
from gmmgan.gan.sweep import seed_dir
from gmmgan.gan.training_loop import train
from gmmgan.mixture import GaussianMixture

_EMD = ["loss.kind=em_density", "loss.md_dim=3", "loss.md_components=4", "loss.md_fit_samples=400",
        "loss.md_refresh_kimg=0.1", "optim.eps=1e-8", "prior.kind=gaussian", "prior.z_dim=4"]



def _fit(covariance, k=3, d=3, seed=0):
    x = blob_data(seed, n_per=60, d=d, k=k)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return GaussianMixture(k, covariance_type=covariance, random_state=seed).fit(x), x


def _full_covariances(gmm, k, d):
    c, kind = np.asarray(gmm.covariances_), gmm.covariance_type
    if kind == "full":
        return c
    if kind == "tied":
        return np.broadcast_to(c, (k, d, d))
    if kind == "diag":
        return np.stack([np.diag(v) for v in c])
    return c[:, None, None] * np.eye(d)


def _reference_log_density(x, gmm, k, d):
    """log sum_k w_k N(x | mu_k, Sigma_k) in float64 numpy, from the covariances (not the precisions)."""
    covs, means, w = _full_covariances(gmm, k, d), np.asarray(gmm.means_), np.asarray(gmm.weights_)
    terms = []
    for j in range(k):
        diff = x - means[j]
        sol = np.linalg.solve(covs[j], diff.T).T
        _, logdet = np.linalg.slogdet(covs[j])
        terms.append(np.log(w[j]) - 0.5 * (d * math.log(2 * math.pi) + logdet + (diff * sol).sum(1)))
    terms = np.stack(terms, 1)
    top = terms.max(1, keepdims=True)
    return (top + np.log(np.exp(terms - top).sum(1, keepdims=True)))[:, 0]


# ----------------------------------------------------------------- the head
@pytest.mark.parametrize("covariance", ["full", "diag", "spherical", "tied"])
def test_head_logit_is_the_mixtures_log_density_minus_the_offset(covariance):
    gmm, x = _fit(covariance)
    head = FittedMixtureHead(3, 3)
    head.load_fit(gmm, 1.25)
    want = _reference_log_density(x, gmm, 3, 3)
    np.testing.assert_allclose(np.asarray(gmm.score_samples(x)), want, rtol=1e-10)  # the reference is right
    got = head(torch.as_tensor(x, dtype=torch.float32))
    assert got.dtype == torch.float32 and got.shape == (x.shape[0],)
    np.testing.assert_allclose(got.numpy() + 1.25, want, rtol=1e-5, atol=1e-5)
    head64 = FittedMixtureHead(3, 3).double()
    head64.load_fit(gmm, 0.0)
    np.testing.assert_allclose(head64(torch.as_tensor(x)).numpy(), want, rtol=1e-12)


def test_head_is_exact_far_from_the_origin_and_takes_bf16_embeddings_under_autocast():
    gmm, x = _fit("full")
    want = _reference_log_density(x, gmm, 3, 3)
    shift = 1e4  # the |e|^2 - 2 e.mu + |mu|^2 expansion would lose every digit of the distances here
    gmm.means_ = np.asarray(gmm.means_) + shift
    head = FittedMixtureHead(3, 3)
    head.load_fit(gmm, 0.0)
    got = head(torch.as_tensor(x + shift, dtype=torch.float32))
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-4, atol=1e-2)  # x + 1e4 itself rounds by 5e-4 in float32
    e = torch.as_tensor(x[:8], dtype=torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = head(e)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, head(e.float()))


def test_initial_head_is_finite_and_load_fit_copies_in_place():
    head = FittedMixtureHead(2, 5)
    assert torch.isfinite(head(torch.randn(7, 2))).all()
    assert not list(head.parameters()) and {n for n, _ in head.named_buffers()} == {
        "means", "prec_chol", "log_weights", "offset"}
    ptrs = [b.data_ptr() for b in head.buffers()]
    gmm, _ = _fit("diag", k=5, d=2)
    head.load_fit(gmm, 0.5)
    assert [b.data_ptr() for b in head.buffers()] == ptrs
    torch.testing.assert_close(head.means, torch.as_tensor(np.asarray(gmm.means_), dtype=torch.float32))
    with pytest.raises(ValueError, match="holds 4 of dim 2"):
        FittedMixtureHead(2, 4).load_fit(gmm, 0.0)


def test_a_stacked_head_gives_each_seeds_logits_and_restacks_in_place():
    heads = []
    for s, covariance in enumerate(["full", "tied", "spherical"]):
        head = FittedMixtureHead(3, 3)
        head.load_fit(_fit(covariance, seed=s)[0], 0.1 * s)
        heads.append(head)
    stacked = StackedModule(heads)
    x = torch.randn(3, 10, 3, generator=torch.Generator().manual_seed(0)) * 3
    torch.testing.assert_close(stacked(x), torch.stack([h(xs) for h, xs in zip(heads, x)]))
    ptrs = [b.data_ptr() for b in stacked.buffers()]
    heads[1].load_fit(_fit("diag", seed=7)[0], 2.0)
    stacked.restack_buffers_from(heads)
    assert [b.data_ptr() for b in stacked.buffers()] == ptrs
    torch.testing.assert_close(stacked(x)[1], heads[1](x[1]))


def test_headed_d_outputs_logits_and_the_loss_is_non_saturating():
    cfg = load_config(None, ["data.name=ring", "loss.kind=em_density", "loss.md_dim=5", "nets.pack=2",
                             "nets.d_spectral_norm=true"])
    torch.manual_seed(0)
    _, D = build_networks(cfg, (2,), 2)
    assert isinstance(D, HeadedDiscriminator) and D.head.components == 6  # md_dim + 1
    x = torch.randn(8, 2)
    assert D.embed(x).shape == (4, 5) and D(x).shape == (4,)
    assert build_gan_loss(cfg.loss) is get_gan_loss("ns")
    one = load_config(None, ["data.name=ring", "loss.kind=em_density", "loss.md_dim=1", "loss.md_components=2"])
    _, D1 = build_networks(one, (2,), 2)
    assert D1.embed(x).shape == (8, 1) and D1(x).shape == (8,)


def test_refreshes_are_due_by_image_count():
    assert [refresh_due(n, 300, 1.0) for n in (0, 300, 900, 1200, 1500, 2100, 3000)] == [0, None, None, 1, None, 2, 3]
    assert [refresh_due(n, 50, 0.1) for n in (0, 50, 100, 150, 200)] == [0, None, 1, None, 2]


@pytest.mark.parametrize("nets", [["nets.d_batch_norm=true"], ["nets.d_batch_norm=false", "nets.d_spectral_norm=true"]],
                         ids=["batch-norm", "spectral-norm"])
def test_a_refresh_fits_the_head_and_leaves_the_rest_of_d_as_it_was(nets):
    cfg = load_config(None, ["loss.kind=em_density", "loss.md_dim=3", "loss.md_components=2", "loss.md_fit_samples=64",
                             "nets.arch=dcgan", "nets.d_width=4", "nets.pack=2", *nets])
    torch.manual_seed(0)
    _, D = build_networks(cfg, (1, 16, 16), 4)
    D.train()
    images = torch.rand(100, 1, 16, 16) * 2 - 1
    D(images[:32])  # a training step's forward: BatchNorm's running statistics / spectral norm's vectors move
    before = {k: v.clone() for k, v in D.state_dict().items()}
    refresh_head(D, images, seed=3, index=1, loss_cfg=cfg.loss, batch_size=32, autocast=contextlib.nullcontext)
    after = {k: v.clone() for k, v in D.state_dict().items()}
    assert D.training and all(torch.equal(after[k], v) for k, v in before.items() if not k.startswith("head."))
    assert not torch.equal(after["head.means"], before["head.means"])
    again, probe = copy.deepcopy(D), copy.deepcopy(D)  # (a forward in train mode moves spectral norm's vectors)
    with torch.no_grad():  # reals sit at logit ~0 right after the fit: the offset is their mean log-density
        rows = torch.randperm(100, generator=torch.Generator().manual_seed(_derived_seed(3, 1, 0)))[:64]
        logits = torch.cat([probe(images[rows[i:i + 32]]) for i in (0, 32)])
    assert abs(float(logits.mean())) < 1e-4
    refresh_head(again, images, seed=3, index=1, loss_cfg=cfg.loss, batch_size=32, autocast=contextlib.nullcontext)
    assert all(torch.equal(again.state_dict()[k], v) for k, v in after.items())  # deterministic


# ----------------------------------------------------------------- bad configs
@pytest.mark.parametrize("fields, message", [
    (dict(md_dim=0), "loss.md_dim"),
    (dict(md_components=0), "loss.md_components"),
    (dict(md_refresh_kimg=0.0), "loss.md_refresh_kimg"),
    (dict(md_refresh_kimg=-1.0), "loss.md_refresh_kimg"),
    (dict(md_fit_samples=15, md_components=8), r"md_fit_samples=15 is too few .* \(at least 2 \* md_components = 16\)"),
    (dict(md_covariance="banded"), "loss.md_covariance must be one of"),
    (dict(md_reg_covar=0.0), "loss.md_reg_covar"),
])
def test_bad_em_density_values_are_clear_errors(fields, message):
    with pytest.raises(ValueError, match=message):
        LossConfig(kind="em_density", **fields)


def test_packing_needs_enough_packs_to_fit():
    with pytest.raises(ValueError, match=r"gives 12 packs of nets.pack=4.*raise loss.md_fit_samples to >= 80"):
        load_config(None, ["loss.kind=em_density", "nets.pack=4", "loss.md_fit_samples=48"])
    assert LossConfig(kind="em_density", md_components=30).md_components == 30  # more than md_dim + 1 is fine


# ----------------------------------------------------------------- training
def _record_refreshes(monkeypatch):
    calls = []
    real = sweep_module.refresh_head

    def recording(D, data, **kw):
        real(D, data, **kw)
        calls.append((kw["seed"], kw["index"], {n: b.clone() for n, b in D.head.named_buffers()}))

    monkeypatch.setattr(sweep_module, "refresh_head", recording)
    return calls


def test_a_short_ring_run_refits_the_head_at_every_refresh(tmp_path, monkeypatch):
    calls = _record_refreshes(monkeypatch)
    cfg = tiny(*_EMD, "schedule.total_kimg=3", "loss.md_refresh_kimg=1", "loss.r1_gamma=1", "nets.pack=2",
               "schedule.snapshot_kimg=1.5", "schedule.log_kimg=0.5")
    result = train(cfg, run_dir=tmp_path / "run", quiet=True)
    assert [c[1] for c in calls] == [0, 1, 2]
    for (_, _, a), (_, _, b) in zip(calls, calls[1:]):
        assert not torch.equal(a["means"], b["means"]) and not torch.equal(a["prec_chol"], b["prec_chol"])
    final = result["D"].head
    assert torch.equal(final.means, calls[-1][2]["means"]) and torch.equal(final.offset, calls[-1][2]["offset"])
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").open()]
    assert len(log) == 6 and all(math.isfinite(e["loss_d"]) and math.isfinite(e["loss_g"]) for e in log)
    ckpt = load_checkpoint(tmp_path / "run" / CHECKPOINT_NAME)
    assert torch.equal(ckpt["D"]["head.means"], final.means)


@pytest.mark.parametrize("every", [0.1, 0.15], ids=["refresh-at-the-resume", "checkpointed-head"])
def test_a_stopped_and_resumed_run_equals_an_uninterrupted_one(tmp_path, monkeypatch, every):
    # every=0.1: the resume at 0.2 kimg is itself a refresh; 0.15: it goes on with the checkpoint's head (fitted at 0.15).
    overrides = (*_EMD, f"loss.md_refresh_kimg={every}", "loss.r1_gamma=1")
    full = train(tiny(*overrides), run_dir=tmp_path / "full", quiet=True)
    # Ctrl-C in the 6th step: the last checkpoint is at 0.2 kimg
    train_interrupted_at_step(monkeypatch, 6, lambda: train(tiny(*overrides), run_dir=tmp_path / "part", quiet=True))
    assert load_checkpoint(tmp_path / "part" / CHECKPOINT_NAME)["cur_nimg"] == 200
    resumed = train(tiny(*overrides), run_dir=tmp_path / "part", resume=True, quiet=True)
    assert resumed["kimg"] == full["kimg"] == 0.4
    assert_same_state(full, resumed)


def test_each_seed_of_a_sweep_trains_as_its_single_run(tmp_path, float64, monkeypatch):
    calls = _record_refreshes(monkeypatch)
    steps = ["schedule.batch_size=32", "schedule.total_kimg=3.2", "schedule.snapshot_kimg=100",
             "schedule.log_kimg=1.6", "loss.md_refresh_kimg=1", "loss.r1_gamma=1", "nets.pack=2",
             "nets.d_spectral_norm=true", "loss.md_covariance=diag"]
    sweep = train(tiny(*_EMD, *steps, "seeds=0,3", f"out={tmp_path / 'sweep'}"), quiet=True)
    assert sorted((s, i) for s, i, _ in calls) == [(s, i) for s in (0, 3) for i in range(4)]
    for s in (0, 3):
        single = train(tiny(*_EMD, *steps, f"seed={s}", f"out={tmp_path / 'single'}"), quiet=True)
        got = load_checkpoint(seed_dir(sweep["run_dir"], s) / CHECKPOINT_NAME)
        want = load_checkpoint(single["run_dir"] / CHECKPOINT_NAME)
        for net in ("G", "D", "G_ema"):
            for k, v in want[net].items():
                if torch.is_floating_point(v):
                    err = float((got[net][k] - v).abs().max() / v.abs().max().clamp_min(1e-6))
                    assert err < 1e-4, f"seed {s}, {net}.{k}: relative difference {err:.2e}"
        assert torch.equal(got["z_generator"], want["z_generator"])


def test_a_large_adam_eps_is_warned_about(tmp_path, capsys):
    args = [a for a in _EMD if not a.startswith("optim.eps")]
    rc, out, err = cli(capsys, "train", "--out", tmp_path, *TINY_TRAIN, *args, "optim.eps=1e-2",
                       "schedule.total_kimg=0.1")
    assert rc == 0, err
    text = " ".join(out.split())
    assert "loss.kind=em_density with D's Adam eps 0.01" in text and "set optim.d_eps=1e-8" in text


# ----------------------------------------------------------------- CUDA graphs
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_cuda_graph_run_sees_every_refresh_as_the_eager_run(tmp_path, monkeypatch):
    calls = _record_refreshes(monkeypatch)
    common = [*_EMD, "device=cuda", "bf16=false", "schedule.total_kimg=1", "schedule.snapshot_kimg=100",
              "loss.md_refresh_kimg=0.25", "loss.r1_gamma=1"]
    graphed = train(tiny(*common, "cuda_graphs=true"), run_dir=tmp_path / "graph", quiet=True)
    eager = train(tiny(*common, "cuda_graphs=false"), run_dir=tmp_path / "eager", quiet=True)
    assert graphed["cuda_graph"] is True and eager["cuda_graph"] is False
    assert [c[1] for c in calls] == [0, 1, 2, 3] * 2

    def difference(a, b) -> float:
        return max(float((a[k].state_dict()[n] - t).abs().max() / t.abs().max().clamp_min(1e-6))
                   for k in ("G", "D") for n, t in b[k].state_dict().items() if torch.is_floating_point(t))

    assert difference(graphed, eager) < 1e-4


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_refresh_changes_what_the_captured_step_computes():
    dev = torch.device("cuda")
    cfg = tiny(*_EMD, "device=cuda")
    torch.manual_seed(0)
    G, D = (net.to(dev) for net in build_networks(cfg, (2,), 4))
    prior = build_prior(cfg.prior, (2,), 0).to(dev)
    # lr 0: the nets stay where they are, so every replay on the same batch computes the same losses
    opt_g = train_step.adam(G.parameters(), dev, True, lr=0.0)
    opt_d = train_step.adam(D.parameters(), dev, True, lr=0.0)
    no_autocast = partial(torch.autocast, device_type="cuda", enabled=False)
    step = train_step.TrainStep(G, D, copy.deepcopy(G).requires_grad_(False), prior, opt_g, opt_d,
                                get_gan_loss("ns"), r1_gamma=0.0, gp_weight=0.0, ema_beta=0.5,
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
            return float(get_gan_loss("ns").d(D(real), D(fake))), float(get_gan_loss("ns").g(D(fake)))

    before = replayed()
    assert replayed() == before
    np.testing.assert_allclose(before, eager(), rtol=1e-5)
    gmm, _ = _fit("full", k=D.head.components, d=D.head.dim)
    D.head.load_fit(gmm, -3.0)
    after = replayed()
    assert abs(after[0] - before[0]) > 1e-3
    np.testing.assert_allclose(after, eager(), rtol=1e-5)
