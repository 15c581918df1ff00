"""The clustering embedding: autoencoder codes laid out by the manifold step (gmmgan.gan.manifold_embedding)."""

from __future__ import annotations

import pytest
import torch
from _helpers import assert_clean_error, cli, three_kinds

from gmmgan.gan.config import DataConfig, PriorConfig
from gmmgan.gan.embedding_file import EMBEDDING_NAME, data_identity, load_embedding, save_embedding
from gmmgan.gan.manifold_embedding import ManifoldEmbedding
from gmmgan.gan.priors import build_prior
from gmmgan.metrics.clustering import clustering_accuracy

SHAPE = (1, 8, 8)


def embedding(seed=0, code_dim=4, dim=2):
    emb = ManifoldEmbedding(SHAPE, code_dim, dim, epochs=20, width=4, n_neighbors=10, seed=seed)
    emb.autoencoder.batch_size, emb.autoencoder.lr, emb.manifold.n_epochs = 32, 3e-3, 60
    return emb


def test_a_fitted_prior_in_the_manifold_clusters_the_kinds_and_decodes_them():
    x, labels = three_kinds()
    cfg = PriorConfig(kind="fitted_gmm", embed="manifold", embed_dim=4, embed_manifold_dim=2, n_components=3,
                      fit_n_init=3, reg_covar=1e-3)
    prior = build_prior(cfg, SHAPE, seed=0)
    prior.embedding = embedding()  # the config's sizes, smaller training steps
    prior.fit(x)
    assert prior.z_dim == 2
    mix = prior.mixture
    normal = torch.distributions.MultivariateNormal(mix.means, scale_tril=mix.scale_tril)
    component = (normal.log_prob(prior.embedding.encode(x)[:, None]) + mix.weights.log()).argmax(1)
    assert clustering_accuracy(labels, component) >= 0.95
    # Each component decodes to images of one kind.
    means = torch.stack([x[labels == c].mean(0) for c in range(3)]).flatten(1)
    for k in range(3):
        img = prior.warm_start_target(prior.sample(20, torch.Generator().manual_seed(k), component=k))
        assert img.shape == (20, *SHAPE)
        kinds = torch.cdist(img.flatten(1), means).argmin(1)
        assert float((kinds == kinds.mode().values).float().mean()) >= 0.9


def test_seeded_state_round_trip_and_the_file_checks_the_code_size(tmp_path):
    x, _ = three_kinds()
    a, b = embedding(seed=1).fit(x), embedding(seed=1).fit(x)
    torch.testing.assert_close(a.encode(x), b.encode(x), rtol=0, atol=0)
    fresh = embedding(seed=7)
    assert not fresh.fitted
    fresh.load_state_dict(a.state_dict())
    torch.testing.assert_close(fresh.encode(x), a.encode(x), rtol=0, atol=0)
    identity = data_identity(DataConfig(name="mnist"), SHAPE)
    save_embedding(tmp_path / EMBEDDING_NAME, a, identity)
    with pytest.raises(ValueError, match="code_dim=4.*asks for code_dim=5"):
        load_embedding(tmp_path, embedding(code_dim=5), identity)


def test_sizes_that_do_not_fit_and_the_penalty_it_cannot_serve():
    with pytest.raises(ValueError, match="below the autoencoder's code size"):
        ManifoldEmbedding(SHAPE, 4, 4)
    with pytest.raises(ValueError, match="needs images"):
        ManifoldEmbedding((2,), 1, 1)
    with pytest.raises(ValueError, match="no gradient"):
        PriorConfig(kind="gmm_reg", embed="manifold")
    with pytest.raises(ValueError, match="not trained yet"):
        embedding().encode(torch.zeros(3, *SHAPE))


def test_train_and_sample_a_component_through_the_cli(mnist_root, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("GMMGAN_DATA", str(mnist_root))
    args = ("data.name=mnist-limited", "data.per_class=4", "prior.embed=manifold", "prior.embed_dim=6",
            "prior.embed_manifold_dim=2", "prior.embed_epochs=2", "prior.embed_width=4", "prior.n_components=3",
            "prior.noise_dim=2", "prior.warm_start_steps=2", "nets.g_width=4", "nets.d_width=4",
            "schedule.batch_size=8", "schedule.total_kimg=0.016", "schedule.snapshot_kimg=0.008",
            "schedule.sample_kimg=0", "device=cpu")
    rc, out, err = cli(capsys, "train", "--out", tmp_path, *args)
    assert rc == 0, err
    assert "ManifoldEmbedding trained" in out
    (run,) = tmp_path.iterdir()
    assert (run / EMBEDDING_NAME).is_file()
    rc, _, err = cli(capsys, "sample", run, "-n", 4, "--component", 2, "-o", tmp_path / "g.npy")
    assert rc == 0, err
    rc, _, err = cli(capsys, "train", "--out", tmp_path / "x", *args, "prior.embed_manifold_dim=7")
    assert_clean_error(rc, err, "embed_manifold_dim", "below")
