"""The contrastive embedding (gmmgan.gan.contrastive), its random views (gmmgan.gan.digit_views) and its file."""

from __future__ import annotations

import math
from functools import partial

import pytest
import torch
import torch.nn.functional as F
from _helpers import assert_clean_error, cli
from _helpers import three_kinds as _three_kinds

from gmmgan.gan.config import DataConfig, PriorConfig
from gmmgan.gan.contrastive import ContrastiveEmbedding, nt_xent
from gmmgan.gan.digit_views import ViewSettings, random_views
from gmmgan.gan.embedding_file import EMBEDDING_NAME, data_identity, load_embedding, save_embedding
from gmmgan.gan.embedding_kinds import build_embedding
from gmmgan.gan.priors import build_prior, trained_parameters
from gmmgan.metrics.clustering import clustering_accuracy

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SHAPE = (1, 8, 8)
three_kinds = partial(_three_kinds, n_per=40)  # 40 images per kind unless told


def embedding(seed=0, dim=4, manifold_dim=None, epochs=3, shape=SHAPE, **kw):
    return ContrastiveEmbedding(shape, dim, manifold_dim, epochs=epochs, width=4, batch_size=32, seed=seed, **kw)


# ----------------------------------------------------------------------------- the random views
def test_views_are_seeded_keep_the_shape_and_leave_the_global_rng_alone():
    x, _ = three_kinds()
    torch.manual_seed(5)
    before = torch.get_rng_state()
    a = random_views(x, torch.Generator().manual_seed(3))
    b = random_views(x, torch.Generator().manual_seed(3))
    c = random_views(x, torch.Generator().manual_seed(4))
    assert torch.equal(torch.get_rng_state(), before)
    assert a.shape == x.shape and a.dtype == x.dtype
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.equal(a, x)  # each image is moved


def test_views_without_change_give_the_image_and_fill_the_border_with_background():
    x, _ = three_kinds(n_per=4)
    still = ViewSettings(rotation=0, scale=0, shear=0, translate=0, elastic=0, noise=0)
    torch.testing.assert_close(random_views(x, torch.Generator().manual_seed(0), still), x, atol=1e-5, rtol=0)
    # A blank (all background) image stays blank however it is warped: no grey border comes in.
    blank = -torch.ones(6, *SHAPE)
    moved = random_views(blank, torch.Generator().manual_seed(0), ViewSettings(noise=0, translate=0.3))
    torch.testing.assert_close(moved, blank, atol=1e-5, rtol=0)


def test_views_work_when_float64_is_the_default_dtype(float64):
    x, _ = three_kinds(n_per=2)
    v = random_views(x.double(), torch.Generator().manual_seed(0))
    assert v.dtype == torch.float64 and v.shape == x.shape and torch.isfinite(v).all()


def test_intensity_scales_the_foreground_about_the_background():
    x, _ = three_kinds(n_per=4)
    only = ViewSettings(rotation=0, scale=0, shear=0, translate=0, elastic=0, noise=0, intensity=0.3)
    v = random_views(x, torch.Generator().manual_seed(0), only)
    gain = (v + 1).flatten(1).sum(1) / (x + 1).flatten(1).sum(1)  # one gain per image
    assert bool(((gain > 0.7 - 1e-4) & (gain < 1.3 + 1e-4)).all()) and float(gain.std()) > 0.01
    torch.testing.assert_close(v + 1, (x + 1) * gain[:, None, None, None], atol=1e-4, rtol=0)
    torch.testing.assert_close(v[x == -1], x[x == -1])  # the background stays where it is


def test_erase_cuts_one_square_of_background_out_of_each_view():
    x = torch.ones(5, *SHAPE)  # all foreground, so the hole is the only background
    only = ViewSettings(rotation=0, scale=0, shear=0, translate=0, elastic=0, noise=0, erase=0.25)
    v = random_views(x, torch.Generator().manual_seed(0), only)
    holes = v[:, 0] == -1
    assert holes.flatten(1).sum(1).tolist() == [4] * 5  # round(0.25 * 8) = 2: a 2 x 2 square
    rows, cols = holes.any(2), holes.any(1)
    assert rows.sum(1).tolist() == [2] * 5 and cols.sum(1).tolist() == [2] * 5
    assert len({tuple(h.flatten().tolist()) for h in holes}) > 1  # at other places in other views


def test_every_channel_gets_the_same_warp():
    x, _ = three_kinds(n_per=4, shape=(3, 32, 32))
    x = x[:, :1].repeat(1, 3, 1, 1)  # three equal channels
    v = random_views(x, torch.Generator().manual_seed(1), ViewSettings(noise=0))
    assert torch.equal(v[:, 0], v[:, 1]) and torch.equal(v[:, 0], v[:, 2])


def test_nt_xent_is_the_cross_entropy_of_picking_the_partner():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    z = F.normalize(torch.cat([a, b]), dim=1)
    sim = z @ z.T / 0.5
    manual = []
    for i in range(10):
        others = [j for j in range(10) if j != i]
        manual.append(-(sim[i, (i + 5) % 10] - torch.logsumexp(sim[i, others], 0)))
    torch.testing.assert_close(nt_xent(a, b, 0.5), torch.stack(manual).mean())
    assert nt_xent(a, a, 0.1) < nt_xent(a, b, 0.1)  # identical views: each partner is the nearest


# ----------------------------------------------------------------------------- the embedding
def test_fit_encode_decode_shapes_and_standardised_codes():
    x, _ = three_kinds()
    calls = []
    emb = embedding().fit(x, callback=lambda d, t, loss, label: calls.append((d, t, loss, label)))
    assert calls[-1][0] == calls[-1][1] == emb.steps(x.shape[0])  # the bar reaches its end
    assert len(emb.history) == 2 * emb.epochs  # NT-Xent per epoch, then the decoder's MSE per epoch
    # Each epoch's mean loss reaches the bar, named: the encoder's NT-Xent, then the decoder's MSE.
    shown = [(loss, label) for _, _, loss, label in calls if loss is not None]
    assert shown == [(h, "NT-Xent") for h in emb.history[:emb.epochs]] + [(h, "MSE") for h in emb.history[emb.epochs:]]
    e = emb.encode(x)
    assert e.shape == (x.shape[0], 4) and emb.dim == 4
    torch.testing.assert_close(e.mean(0), torch.zeros(4), atol=1e-4, rtol=0)
    torch.testing.assert_close(e.std(0), torch.ones(4), atol=1e-4, rtol=0)
    torch.testing.assert_close(embedding().fit_encode(x), e, rtol=0, atol=0)  # a fresh one of the same seed
    assert emb.decode(e).shape == x.shape
    assert not any(p.requires_grad for p in emb.parameters())
    fake = x[:3].clone().requires_grad_(True)  # without the manifold step, encode is differentiable
    emb.encode(fake).square().sum().backward()
    assert float(fake.grad.abs().sum()) > 0


def test_with_the_manifold_step_codes_are_layout_coordinates():
    x, _ = three_kinds()
    emb = embedding(dim=4, manifold_dim=2)
    emb.manifold.n_epochs = 20
    calls = []
    coords = emb.fit_encode(x, callback=lambda d, t, *_: calls.append((d, t)))
    assert coords.shape == (x.shape[0], 2) and emb.dim == 2
    assert calls[-1][0] == calls[-1][1] == emb.steps(x.shape[0]) + 20
    assert emb.encode(x[:5]).shape == (5, 2)
    assert emb.decode(coords[:5]).shape == (5, *SHAPE)


def test_a_fitted_prior_in_it_clusters_the_kinds_and_decodes_them():
    x, labels = three_kinds(n_per=60)
    cfg = PriorConfig(kind="fitted_gmm", embed="contrastive", embed_dim=4, embed_manifold_dim=2, n_components=3,
                      fit_n_init=3, reg_covar=1e-3)
    prior = build_prior(cfg, SHAPE, seed=0)
    prior.embedding = embedding(dim=4, manifold_dim=2, epochs=15, lr=3e-3)  # the config's sizes, a smaller net
    prior.embedding.manifold.n_epochs = 60
    prior.fit(x)
    assert trained_parameters(prior) == [] and prior.z_dim == 2
    mix = prior.mixture
    normal = torch.distributions.MultivariateNormal(mix.means, scale_tril=mix.scale_tril)
    component = (normal.log_prob(prior.embedding.encode(x)[:, None]) + mix.weights.log()).argmax(1)
    assert clustering_accuracy(labels, component) >= 0.95
    img = prior.warm_start_target(prior.sample(6, torch.Generator().manual_seed(0), component=1))
    assert img.shape == (6, *SHAPE) and bool(torch.isfinite(img).all())


def test_training_is_seeded_and_leaves_the_global_rng_alone():
    x, _ = three_kinds()
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a, b, c = embedding(seed=1).fit(x), embedding(seed=1).fit(x), embedding(seed=2).fit(x)
    assert torch.equal(torch.get_rng_state(), before)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(pa, pb), name
    assert a.history == b.history
    assert not torch.equal(a.encoder.head[-1].weight, c.encoder.head[-1].weight)


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 28, 28), (1, 32, 32), (3, 32, 32)])
def test_mnist_and_folder_image_sizes(shape):
    x, _ = three_kinds(n_per=4, shape=shape)
    emb = embedding(epochs=1, shape=shape).fit(x)
    assert emb.encode(x).shape == (12, 4) and emb.decode(emb.encode(x)).shape == x.shape


def test_state_and_file_round_trip_and_the_file_checks_the_sizes(tmp_path):
    x, _ = three_kinds()
    emb = embedding(manifold_dim=2, epochs=1)
    emb.manifold.n_epochs = 5
    emb.fit(x)
    identity = data_identity(DataConfig(name="mnist"), SHAPE)
    path = save_embedding(tmp_path / EMBEDDING_NAME, emb, identity)
    fresh = embedding(seed=9, manifold_dim=2, epochs=1)
    assert not fresh.fitted
    assert load_embedding(tmp_path, fresh, identity) == path
    assert fresh.fitted
    torch.testing.assert_close(fresh.encode(x), emb.encode(x), rtol=0, atol=0)
    torch.testing.assert_close(fresh.decode(emb.encode(x[:4])), emb.decode(emb.encode(x[:4])), rtol=0, atol=0)
    with pytest.raises(ValueError, match="code_dim=4.*asks for code_dim=5"):
        load_embedding(path, embedding(dim=5, manifold_dim=2), identity)
    with pytest.raises(ValueError, match="kind=contrastive.*asks for kind=manifold"):
        load_embedding(path, build_embedding("manifold", SHAPE, 4, epochs=1, width=4, manifold_dim=2), identity)


@pytest.mark.parametrize("shape, dim, manifold_dim, match", [
    ((2,), 1, None, "needs images"),
    ((2, 8, 8), 3, None, "1- or 3-channel"),
    ((1, 30, 30), 3, None, "multiples of 4"),
    ((1, 8, 8), 64, None, "2 to 63 dimensions"),
    ((1, 8, 8), 1, None, "2 to 63 dimensions"),
    ((1, 8, 8), 4, 4, "below the contrastive code size"),
])
def test_shapes_and_sizes_that_do_not_fit(shape, dim, manifold_dim, match):
    with pytest.raises(ValueError, match=match):
        ContrastiveEmbedding(shape, dim, manifold_dim)


def test_bad_training_data_unfitted_use_and_the_penalty_it_cannot_serve():
    emb = embedding(epochs=1)
    with pytest.raises(ValueError, match="not trained yet"):
        emb.encode(torch.zeros(2, *SHAPE))
    with pytest.raises(ValueError, match="NaN"):
        emb.fit(torch.full((6, *SHAPE), float("nan")))
    with pytest.raises(ValueError, match="at least 4"):
        emb.fit(torch.zeros(3, *SHAPE))
    with pytest.raises(ValueError, match="expected samples of shape"):
        emb.fit(torch.zeros(6, 1, 4, 4))
    with pytest.raises(ValueError, match="more than n_neighbors=20"):
        embedding(manifold_dim=2).fit(torch.zeros(12, *SHAPE))
    with pytest.raises(ValueError, match="temperature"):
        embedding(temperature=0)
    with pytest.raises(ValueError, match="contrastive has no gradient"):
        PriorConfig(kind="gmm_reg", embed="contrastive")
    with pytest.raises(ValueError, match="needs images"):
        build_prior(PriorConfig(kind="fitted_gmm", embed="contrastive"), (2,))


def test_build_embedding_and_config_know_it():
    emb = build_embedding("contrastive", SHAPE, 6, seed=4, epochs=2, width=4, manifold_dim=3)
    assert isinstance(emb, ContrastiveEmbedding) and emb.learned
    assert (emb.code_dim, emb.dim, emb.epochs, emb.width, emb.seed) == (6, 3, 2, 4, 4)
    assert PriorConfig(embed="contrastive", embed_from="runs/00000").embed_from == "runs/00000"
    assert math.isclose(emb.temperature, 0.2)


# ----------------------------------------------------------------------------- through the CLI
ARGS = ("data.name=mnist-limited", "data.per_class=4", "prior.embed=contrastive", "prior.embed_dim=6",
        "prior.embed_manifold_dim=2", "prior.embed_epochs=2", "prior.embed_width=4", "prior.n_components=3",
        "prior.noise_dim=2", "prior.warm_start_steps=2", "nets.g_width=4", "nets.d_width=4",
        "schedule.batch_size=8", "schedule.total_kimg=0.016", "schedule.snapshot_kimg=0.008",
        "schedule.sample_kimg=0", "device=cpu")


def test_train_reuse_and_sample_a_component_through_the_cli(mnist_root, tmp_path, capsys, monkeypatch):
    from safetensors.torch import load_file

    monkeypatch.setenv("GMMGAN_DATA", str(mnist_root))
    rc, out, err = cli(capsys, "train", "--out", tmp_path / "a", *ARGS)
    assert rc == 0, err
    assert "embedding: ContrastiveEmbedding trained" in out
    (run,) = (tmp_path / "a").iterdir()
    assert (run / EMBEDDING_NAME).is_file()
    rc, _, err = cli(capsys, "sample", run, "-n", 4, "--component", 2, "-o", tmp_path / "g.npy")
    assert rc == 0, err
    rc, out, err = cli(capsys, "train", "--out", tmp_path / "b", *ARGS, "seed=3", f"prior.embed_from={run}")
    assert rc == 0, err
    assert "reusing" in out and "ContrastiveEmbedding trained" not in out
    (reused,) = (tmp_path / "b").iterdir()
    saved = load_file(str(run / EMBEDDING_NAME))
    for name, tensor in load_file(str(reused / EMBEDDING_NAME)).items():
        assert torch.equal(saved[name], tensor), name
    rc, _, err = cli(capsys, "train", "--out", tmp_path / "c", *ARGS, "prior.embed_manifold_dim=7")
    assert_clean_error(rc, err, "embed_manifold_dim", "below")


def test_the_clothing_views_mirror_about_half_of_the_images_and_the_digit_views_never():
    x = torch.linspace(-1, 1, 8).repeat(16, 1, 8, 1)  # every image a left-to-right ramp
    only_flip = ViewSettings(rotation=0.0, scale=0.0, shear=0.0, translate=0.0, elastic=0.0, noise=0.0, hflip=True)
    v = random_views(x, torch.Generator().manual_seed(0), only_flip)
    mirrored = torch.isclose(v, x.flip(-1), atol=1e-5).flatten(1).all(1)
    same = torch.isclose(v, x, atol=1e-5).flatten(1).all(1)
    assert bool((mirrored | same).all()) and 3 <= int(mirrored.sum()) <= 13
    no_flip = ViewSettings(rotation=0.0, scale=0.0, shear=0.0, translate=0.0, elastic=0.0, noise=0.0)
    torch.testing.assert_close(random_views(x, torch.Generator().manual_seed(0), no_flip), x, atol=1e-5, rtol=0)
    from gmmgan.gan.digit_views import VIEW_PRESETS
    assert VIEW_PRESETS["clothing"].hflip and not VIEW_PRESETS["digits"].hflip
    cfg = PriorConfig(kind="fitted_gmm", embed="contrastive", embed_dim=4, embed_manifold_dim=2, embed_views="clothing")
    assert build_prior(cfg, SHAPE).embedding.views == VIEW_PRESETS["clothing"]
    with pytest.raises(ValueError, match="embed_views"):
        PriorConfig(embed="contrastive", embed_views="faces")
