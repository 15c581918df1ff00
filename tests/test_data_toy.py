"""Toy 2-D / general Gaussian mixtures: exact means, sigma, determinism, validation."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gmmgan.data.toy import GRID, RING, MixtureSpec, grid, grid_means, ring, ring_means


def test_ring_means_exact():
    expected = torch.tensor(
        [[math.cos(2 * math.pi * k / 8), math.sin(2 * math.pi * k / 8)] for k in range(8)], dtype=torch.float64
    )
    assert torch.equal(RING.means, expected)
    assert RING.sigma == 0.01 and RING.n_components == 8
    assert torch.allclose(RING.weights, torch.full((8,), 1 / 8, dtype=torch.float64))
    # Not linspace with the end point: first and last means differ.
    assert not torch.allclose(RING.means[0], RING.means[-1])


def test_grid_means_exact():
    pts = {(float(a), float(b)) for a, b in GRID.means.tolist()}
    assert pts == {(a, b) for a in (-4.0, -2.0, 0.0, 2.0, 4.0) for b in (-4.0, -2.0, 0.0, 2.0, 4.0)}
    assert GRID.means.shape == (25, 2) and GRID.sigma == 0.05
    assert torch.allclose(GRID.covariances, 0.0025 * torch.eye(2, dtype=torch.float64).expand(25, 2, 2))


@pytest.mark.parametrize("fn,spec", [(ring, RING), (grid, GRID)])
def test_samples_shape_determinism_and_spread(fn, spec):
    x = fn(20_000, seed=3)
    assert x.shape == (20_000, 2) and x.dtype == torch.float32
    assert torch.equal(x, fn(20_000, seed=3))
    assert not torch.equal(x, fn(20_000, seed=4))
    # Every sample lies near its nearest mean; residual std matches sigma.
    d = torch.cdist(x.double(), spec.means)
    nearest = d.argmin(1)
    resid = x.double() - spec.means[nearest]
    assert float(d.min(1).values.max()) < 6 * spec.sigma
    assert abs(float(resid.std()) / spec.sigma - 1) < 0.03
    counts = torch.bincount(nearest, minlength=spec.n_components).double()
    expected = 20_000 / spec.n_components
    assert float((counts - expected).abs().max()) < 5 * math.sqrt(expected)


def test_sample_labels_are_components():
    x, y = GRID.sample(5000, seed=1)
    assert y.dtype == torch.int64 and y.shape == (5000,)
    assert torch.equal(torch.cdist(x.double(), GRID.means).argmin(1), y)


def test_default_training_size():
    assert ring(seed=0).shape == (100_000, 2)


def test_general_mixture_full_covariance():
    means = [[0.0, 0.0, 0.0], [5.0, 5.0, 5.0]]
    a = torch.tensor([[1.0, 0.5, 0.0], [0.5, 2.0, 0.3], [0.0, 0.3, 0.5]])
    cov = torch.stack([a, 0.1 * torch.eye(3)])
    spec = MixtureSpec(means, cov, [0.3, 0.7])
    x, y = spec.sample(40_000, seed=0, dtype=torch.float64)
    assert abs(float((y == 1).double().mean()) - 0.7) < 0.01
    emp = torch.cov(x[y == 0].T)
    assert torch.allclose(emp, a.double(), atol=0.05)
    assert spec.sigma is None
    lp = spec.to_distribution(dtype=torch.float64).log_prob(x[:5])
    assert lp.shape == (5,) and torch.isfinite(lp).all()


@settings(max_examples=25, deadline=None)
@given(k=st.integers(1, 5), d=st.integers(1, 4), n=st.integers(0, 50), seed=st.integers(0, 2**31 - 1))
def test_property_deterministic_and_shapes(k, d, n, seed):
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(k, d, generator=g, dtype=torch.float64)
    a = torch.randn(k, d, d, generator=g, dtype=torch.float64)
    cov = a @ a.transpose(1, 2) + 0.1 * torch.eye(d, dtype=torch.float64)
    spec = MixtureSpec(means, cov)
    x1, y1 = spec.sample(n, seed)
    x2, y2 = spec.sample(n, seed)
    assert x1.shape == (n, d) and y1.shape == (n,)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert ((y1 >= 0) & (y1 < k)).all()


def test_helpers():
    assert torch.allclose(
        ring_means(4, 2.0), torch.tensor([[2.0, 0], [0, 2], [-2, 0], [0, -2]], dtype=torch.float64), atol=1e-12
    )
    assert grid_means((0.0, 1.0)).tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]]
    assert "n_components=8" in repr(RING)


@pytest.mark.parametrize(
    "kwargs,msg",
    [
        (dict(means=[0.0, 1.0], covariances=[[[1.0]]]), r"means must have shape \(n_components, n_features\)"),
        (dict(means=[[0.0]], covariances=[[1.0]]), r"covariances must have shape .* = \(1, 1, 1\)"),
        (dict(means=[[0.0, 0.0]], covariances=[[[1.0, 0.5], [0.0, 1.0]]]), "must be symmetric"),
        (
            dict(means=[[0.0, 0.0]], covariances=[[[1.0, 2.0], [2.0, 1.0]]]),
            r"components \[0\] are not positive definite",
        ),
        (dict(means=[[0.0], [1.0]], covariances=[[[1.0]], [[1.0]]], weights=[0.5, 0.6]), "sum to 1"),
        (dict(means=[[0.0], [1.0]], covariances=[[[1.0]], [[1.0]]], weights=[1.5, -0.5]), "non-negative"),
        (dict(means=[[0.0], [1.0]], covariances=[[[1.0]], [[1.0]]], weights=[1.0]), r"weights must have shape"),
        (dict(means=[[float("nan")]], covariances=[[[1.0]]]), "means contains NaN"),
        (dict(means=[[0.0]], covariances=[[[1.0]]], sigma=2.0), "not all sigma"),
    ],
)
def test_validation_errors(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        MixtureSpec(**kwargs)


def test_bad_sample_args():
    with pytest.raises(ValueError, match="sigma must be > 0"):
        MixtureSpec.isotropic([[0.0]], sigma=0.0)
    with pytest.raises(ValueError, match="non-negative int"):
        RING.sample(-1)


def test_seed_none_leaves_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    a, _ = RING.sample(10, seed=None)
    b, _ = RING.sample(10, seed=None)
    assert not torch.equal(a, b)
    assert torch.equal(torch.rand(3), expected)
