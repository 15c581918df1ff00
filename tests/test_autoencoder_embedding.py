"""The learned autoencoder embedding (gmmgan.gan.autoencoder) and its file (gmmgan.gan.embedding_file)."""

from __future__ import annotations

import pytest
import torch

from gmmgan.gan.autoencoder import AutoencoderEmbedding
from gmmgan.gan.config import DataConfig, PriorConfig
from gmmgan.gan.embedding_file import EMBEDDING_NAME, data_identity, load_embedding, save_embedding
from gmmgan.gan.embedding_kinds import build_embedding
from gmmgan.gan.priors import build_prior, trained_parameters

SHAPE = (1, 8, 8)


def two_patterns(n=96, seed=0):
    """Images of two kinds (a bright left half or a bright top half) with a little noise, in [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    x = -torch.ones(n, *SHAPE)
    x[: n // 2, :, :, :4] = 1
    x[n // 2:, :, :4, :] = 1
    return (x + 0.1 * torch.randn(x.shape, generator=g)).clamp(-1, 1), torch.arange(n) >= n // 2


def trained(seed=0, epochs=30, **kw):
    return AutoencoderEmbedding(SHAPE, 3, epochs=epochs, width=4, batch_size=32, lr=3e-3, seed=seed, **kw)


def test_training_reconstructs_and_codes_are_standardised():
    x, kind = two_patterns()
    ae = trained().fit(x)
    assert ae.history[-1] < 0.5 * ae.history[0]
    e = ae.encode(x)
    assert e.shape == (96, 3)
    torch.testing.assert_close(e.mean(0), torch.zeros(3), atol=1e-4, rtol=0)
    torch.testing.assert_close(e.std(0), torch.ones(3), atol=1e-4, rtol=0)
    # The decoder tells the two kinds apart: each reconstruction is nearer its own kind's mean image.
    rec = ae.decode(e)
    assert rec.shape == x.shape
    means = torch.stack([x[~kind].mean(0), x[kind].mean(0)])
    nearest = torch.cdist(rec.flatten(1), means.flatten(1)).argmin(1)
    assert bool((nearest == kind.long()).all())


def test_training_is_seeded_and_leaves_the_global_rng_alone():
    x, _ = two_patterns()
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a, b, c = trained(seed=1, epochs=3).fit(x), trained(seed=1, epochs=3).fit(x), trained(seed=2, epochs=3).fit(x)
    assert torch.equal(torch.get_rng_state(), before)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(pa, pb), name
    assert not torch.equal(a.encoder.linear.weight, c.encoder.linear.weight)


def test_weights_are_frozen_outside_fit_but_encode_is_differentiable():
    x, _ = two_patterns()
    ae = trained(epochs=2).fit(x)
    assert not any(p.requires_grad for p in ae.parameters())
    fake = x[:4].clone().requires_grad_(True)
    ae.encode(fake).square().sum().backward()
    assert fake.grad is not None and float(fake.grad.abs().sum()) > 0
    # In a fitted prior, no optimizer of the GAN gets the embedding's weights.
    cfg = PriorConfig(kind="fitted_gmm", embed="autoencoder", embed_dim=3, embed_epochs=2, embed_width=4,
                      n_components=2, fit_max_iter=5)
    prior = build_prior(cfg, SHAPE, seed=0).fit(x)
    assert trained_parameters(prior) == [] and len(list(prior.parameters())) > 0
    assert prior.sample(5).shape == (5, 3)
    assert prior.warm_start_target(prior.sample(5)).shape == (5, *SHAPE)


def test_state_dict_round_trip_into_a_fresh_embedding():
    x, _ = two_patterns()
    ae = trained(epochs=2).fit(x)
    fresh = trained(seed=9, epochs=2)
    assert not fresh.fitted
    fresh.load_state_dict(ae.state_dict())
    assert fresh.fitted
    torch.testing.assert_close(fresh.encode(x), ae.encode(x), rtol=0, atol=0)


@pytest.mark.parametrize("shape, dim, match", [
    ((2,), 1, "needs images"),
    ((2, 8, 8), 3, "1- or 3-channel"),
    ((1, 30, 30), 3, "multiples of 4"),
    ((1, 8, 8), 64, "not smaller than the data"),
    ((1, 8, 8), 0, "dim must be a positive int"),
])
def test_shapes_and_sizes_that_do_not_fit(shape, dim, match):
    with pytest.raises(ValueError, match=match):
        AutoencoderEmbedding(shape, dim)


def test_bad_training_data_and_unfitted_use():
    ae = trained(epochs=1)
    with pytest.raises(ValueError, match="not trained yet"):
        ae.encode(torch.zeros(2, *SHAPE))
    with pytest.raises(ValueError, match="NaN"):
        ae.fit(torch.full((4, *SHAPE), float("nan")))
    with pytest.raises(ValueError, match="at least 2"):
        ae.fit(torch.zeros(1, *SHAPE))
    with pytest.raises(ValueError, match="expected samples of shape"):
        ae.fit(torch.zeros(4, 1, 4, 4))


def test_build_embedding_and_config_know_the_autoencoder():
    ae = build_embedding("autoencoder", SHAPE, 3, seed=4, epochs=2, width=4)
    assert isinstance(ae, AutoencoderEmbedding) and ae.learned and (ae.epochs, ae.width, ae.seed) == (2, 4, 4)
    assert not build_embedding("pca", SHAPE, 3).learned
    with pytest.raises(ValueError, match="needs images"):
        build_prior(PriorConfig(kind="fitted_gmm", embed="autoencoder"), (2,))
    with pytest.raises(ValueError, match="embed_from reuses a learned embedding"):
        PriorConfig(embed="pca", embed_from="runs/00000")
    with pytest.raises(ValueError, match="embed_epochs"):
        PriorConfig(embed_epochs=0)


# ----------------------------------------------------------------------------- the embedding's file
def test_file_round_trip_and_refusals(tmp_path):
    x, _ = two_patterns()
    ae = trained(epochs=2).fit(x)
    mnist = data_identity(DataConfig(name="mnist-limited", per_class=5), SHAPE)
    path = save_embedding(tmp_path / EMBEDDING_NAME, ae, mnist)
    fresh = trained(epochs=2, seed=5)
    assert load_embedding(tmp_path, fresh, mnist) == path  # the run folder is enough
    torch.testing.assert_close(fresh.encode(x), ae.encode(x), rtol=0, atol=0)

    fashion = data_identity(DataConfig(name="fashion-mnist-limited", per_class=5), SHAPE)
    with pytest.raises(ValueError, match="trained on other data.*fashion-mnist-limited"):
        load_embedding(path, trained(epochs=2), fashion)
    with pytest.raises(ValueError, match="trained on other data"):
        load_embedding(path, trained(epochs=2), data_identity(DataConfig(name="mnist-limited", per_class=6), SHAPE))
    wider = AutoencoderEmbedding(SHAPE, 3, width=8)
    with pytest.raises(ValueError, match="width=4.*asks for width=8"):
        load_embedding(path, wider, mnist)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no embedding.safetensors"):
        load_embedding(tmp_path / "empty", trained(), mnist)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_embedding(tmp_path / "nowhere", trained(), mnist)
    (tmp_path / "sweep" / "seed-0000").mkdir(parents=True)
    (tmp_path / "sweep" / "seed-0000" / EMBEDDING_NAME).write_bytes(path.read_bytes())
    with pytest.raises(FileNotFoundError, match="seed sweep's folder.*seed-0000"):
        load_embedding(tmp_path / "sweep", trained(), mnist)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match="corrupt or truncated"):
        load_embedding(bad, trained(), mnist)


def test_data_identity_ignores_the_seed_and_the_data_root_but_not_a_folder(tmp_path):
    a = data_identity(DataConfig(name="stacked-mnist", n=1000, root="/a"), (3, 28, 28))
    b = data_identity(DataConfig(name="stacked-mnist", n=1000, root="/b"), (3, 28, 28))
    assert a == b and "per_class" not in a
    f1 = data_identity(DataConfig(name="folder", root=str(tmp_path / "x"), resolution=32), (3, 32, 32))
    f2 = data_identity(DataConfig(name="folder", root=str(tmp_path / "y"), resolution=32), (3, 32, 32))
    assert f1 != f2


@pytest.mark.parametrize("covariance_type", ["full", "diag", "spherical", "tied"])
def test_every_covariance_type_and_auto_k_fit_in_the_autoencoder(covariance_type):
    x, kind = two_patterns()
    for k in (2, "auto"):
        cfg = PriorConfig(kind="fitted_gmm", embed="autoencoder", embed_dim=2, embed_epochs=30, embed_width=4,
                          n_components=k, covariance_type=covariance_type, reg_covar=1e-3, fit_max_iter=50)
        prior = build_prior(cfg, SHAPE, seed=0).fit(x)
        assert prior.n_components >= 2
        z = prior.sample(8, torch.Generator().manual_seed(0), component=1)
        assert z.shape == (8, 2) and bool(torch.isfinite(z).all())


def test_the_likelihood_penalty_differentiates_through_the_autoencoder():
    x, _ = two_patterns()
    cfg = PriorConfig(kind="gmm_reg", z_dim=4, embed="autoencoder", embed_dim=2, embed_epochs=2, embed_width=4,
                      n_components=2, fit_max_iter=5)
    prior = build_prior(cfg, SHAPE, seed=0).fit(x)
    fake = x[:6].clone().requires_grad_(True)
    penalty = prior.penalty(fake)
    penalty.backward()
    assert penalty.ndim == 0 and float(fake.grad.abs().sum()) > 0
