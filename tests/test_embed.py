"""Tests of gmmgan.gan.embed: identity, PCA (round trip, whitening, determinism, state_dict), module wrapper."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from gmmgan.gan.embed import (
    IdentityEmbedding,
    ModuleEmbedding,
    PCAEmbedding,
)
from gmmgan.gan.embedding_kinds import build_embedding


def _low_rank_images(n=200, rank=5, shape=(1, 6, 6), seed=0):
    g = torch.Generator().manual_seed(seed)
    d = torch.Size(shape).numel()
    basis = torch.randn(rank, d, generator=g)
    codes = torch.randn(n, rank, generator=g) * torch.linspace(3, 1, rank)
    return (codes @ basis + 0.5).reshape(n, *shape)


def test_identity_round_trip_and_shapes():
    e = IdentityEmbedding((2,))
    x = torch.randn(10, 2)
    assert e.dim == 2
    assert torch.equal(e.decode(e.encode(x)), x)
    with pytest.raises(ValueError, match=r"shape \(N, 2\)"):
        e.encode(torch.randn(10, 3))


@settings(max_examples=8, deadline=None)
@given(rank=st.integers(1, 6), whiten=st.booleans(), seed=st.integers(0, 1000))
def test_pca_round_trip_exact_on_low_rank_data(rank, whiten, seed):
    x = _low_rank_images(rank=rank, seed=seed)
    pca = PCAEmbedding((1, 6, 6), n_components=rank, whiten=whiten).fit(x)
    e = pca.encode(x)
    assert e.shape == (200, rank)
    torch.testing.assert_close(pca.decode(e), x, atol=1e-4, rtol=1e-4)
    if whiten:  # unit variance per coordinate
        torch.testing.assert_close(e.var(0), torch.ones(rank), atol=1e-3, rtol=1e-3)


def test_pca_components_orthonormal_sorted_and_deterministic():
    x = _low_rank_images(rank=8)
    a = PCAEmbedding((1, 6, 6), 4).fit(x)
    b = PCAEmbedding((1, 6, 6), 4).fit(x.clone())
    torch.testing.assert_close(a.components.T @ a.components, torch.eye(4), atol=1e-5, rtol=0)
    assert (a.explained_variance[:-1] >= a.explained_variance[1:]).all()
    assert torch.equal(a.components, b.components)


def test_pca_truncation_is_the_best_rank_k_reconstruction():
    x = _low_rank_images(rank=8)
    pca = PCAEmbedding((1, 6, 6), 3, whiten=False).fit(x)
    err = (pca.decode(pca.encode(x)) - x).square().sum() / (x.shape[0] - 1)
    # Residual variance of a rank-3 PCA = the sum of the discarded eigenvalues.
    centred = x.reshape(200, -1) - x.reshape(200, -1).mean(0)
    eig = torch.linalg.eigvalsh(centred.T @ centred / 199).flip(0)
    torch.testing.assert_close(err, eig[3:].sum(), rtol=1e-3, atol=1e-3)


def test_pca_randomised_path_matches_exact(monkeypatch):
    x = _low_rank_images(rank=4, n=300)
    exact = PCAEmbedding((1, 6, 6), 4).fit(x)
    monkeypatch.setattr(PCAEmbedding, "EXACT_SVD_MAX_ENTRIES", 10)
    state = torch.get_rng_state()
    approx = PCAEmbedding((1, 6, 6), 4).fit(x)
    assert torch.equal(torch.get_rng_state(), state), "the global RNG must be left alone"
    torch.testing.assert_close(approx.components, exact.components, atol=1e-3, rtol=0)


def test_pca_state_dict_round_trip_into_unfitted():
    x = _low_rank_images()
    a = PCAEmbedding((1, 6, 6), 5).fit(x)
    b = PCAEmbedding((1, 6, 6), 5)
    b.load_state_dict(a.state_dict())
    assert torch.equal(a.encode(x), b.encode(x))


def test_pca_bad_inputs():
    with pytest.raises(ValueError, match="positive int"):
        PCAEmbedding((1, 6, 6), 0)
    with pytest.raises(ValueError, match="exceeds the data dimension 36"):
        PCAEmbedding((1, 6, 6), 37)
    with pytest.raises(ValueError, match="not fitted"):
        PCAEmbedding((1, 6, 6), 3).encode(torch.zeros(2, 1, 6, 6))
    with pytest.raises(ValueError, match="needs at least 5 samples"):
        PCAEmbedding((1, 6, 6), 5).fit(torch.zeros(3, 1, 6, 6))
    pca = PCAEmbedding((1, 6, 6), 3).fit(_low_rank_images())
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        pca.decode(torch.zeros(2, 4))


def test_module_embedding_and_factory():
    enc, dec = nn.Sequential(nn.Flatten(), nn.Linear(36, 4)), nn.Linear(4, 36)
    m = ModuleEmbedding((1, 6, 6), enc, 4, dec)
    x = torch.randn(3, 1, 6, 6)
    assert m.encode(x).shape == (3, 4) and m.decode(m.encode(x)).shape == (3, 1, 6, 6)
    with pytest.raises(ValueError, match="no decoder"):
        ModuleEmbedding((1, 6, 6), enc, 4).decode(torch.zeros(1, 4))
    assert isinstance(build_embedding("auto", (2,)), IdentityEmbedding)
    assert isinstance(build_embedding("auto", (1, 6, 6), 3), PCAEmbedding)
    with pytest.raises(ValueError, match="unknown embedding 'umap'"):
        build_embedding("umap", (2,))


def test_pca_embedding_of_nan_data():
    from gmmgan.gan.embed import PCAEmbedding

    x = torch.rand(10, 1, 2, 2)
    x[4, 0, 1, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN or infinite"):
        PCAEmbedding((1, 2, 2), 2).fit(x)
