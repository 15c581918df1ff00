"""Tests of gmmgan.gan.priors: shapes, component sampling, fitting, penalties, state dicts, the factory."""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch

from gmmgan.data.toy import MixtureSpec
from gmmgan.gan.config import PriorConfig
from gmmgan.gan.embed import IdentityEmbedding, PCAEmbedding
from gmmgan.gan.priors import (
    FittedGMMPrior,
    FixedGMMPrior,
    GaussianPrior,
    GMMRegularizedPrior,
    LearnableGMMPrior,
    build_prior,
)

# Three well separated 2-D clusters: a 3-component GMM recovers them exactly.
SPEC = MixtureSpec.isotropic([[-4.0, 0.0], [0.0, 4.0], [4.0, 0.0]], sigma=0.1)


@pytest.fixture(scope="module")
def points():
    return SPEC.sample(600, seed=0)[0]


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _all_priors(points):
    fitted = FittedGMMPrior(IdentityEmbedding((2,)), 3, noise_dim=2, seed=0).fit(points)
    reg = GMMRegularizedPrior(4, IdentityEmbedding((2,)), 3, weight=0.5, seed=0).fit(points)
    return {
        "gaussian": GaussianPrior(4),
        "fitted_gmm": fitted,
        "fixed_gmm": FixedGMMPrior(4, 3, sigma=0.1, seed=0),
        "learnable_gmm": LearnableGMMPrior(4, 3, seed=0),
        "gmm_reg": reg,
    }


@pytest.mark.parametrize("kind", ["gaussian", "fitted_gmm", "fixed_gmm", "learnable_gmm", "gmm_reg"])
def test_shapes_determinism_and_state_dict(points, kind):
    prior = _all_priors(points)[kind]
    z = prior.sample(17, _gen(1))
    assert z.shape == (17, 4) == (17, prior.z_dim) and z.dtype == torch.float32
    assert torch.equal(z, prior.sample(17, _gen(1)))
    assert not torch.equal(z, prior.sample(17, _gen(2)))
    # A prior rebuilt from the config (unfitted) takes the saved state and samples identically.
    cfg = PriorConfig(kind=kind, z_dim=4, n_components=3, noise_dim=2)
    rebuilt = build_prior(cfg, (2,), seed=5)
    rebuilt.load_state_dict(prior.state_dict())
    assert torch.equal(rebuilt.sample(9, _gen(3)), prior.sample(9, _gen(3)))


def test_fitted_prior_recovers_clusters_and_samples_components(points):
    prior = FittedGMMPrior(IdentityEmbedding((2,)), 3, seed=0).fit(points)
    means = prior.mixture.means[prior.mixture.means[:, 0].argsort()]
    torch.testing.assert_close(means, SPEC.means.float()[[0, 1, 2]], atol=0.05, rtol=0)
    torch.testing.assert_close(prior.mixture.weights.sort().values, torch.full((3,), 1 / 3), atol=0.08, rtol=0)
    for k in range(3):
        z = prior.sample(200, _gen(k), component=k)
        assert (z - prior.mixture.means[k]).norm(dim=1).max() < 0.6  # all from component k (sigma 0.1)
    z, labels = prior.sample_with_components(3000, _gen(9))
    counts = torch.bincount(labels, minlength=3).float() / 3000
    torch.testing.assert_close(counts, prior.mixture.weights, atol=0.04, rtol=0)
    # Empirical covariance of one component matches the fitted one.
    z0 = prior.sample(4000, _gen(4), component=0)
    torch.testing.assert_close(torch.cov(z0.T), prior.mixture.scale_tril[0] @ prior.mixture.scale_tril[0].T,
                               atol=3e-3, rtol=0.15)


@pytest.mark.parametrize("cov", ["diag", "spherical", "tied"])
def test_fitted_prior_other_covariance_types(points, cov):
    prior = FittedGMMPrior(IdentityEmbedding((2,)), 3, cov, seed=0).fit(points)
    assert prior.mixture.scale_tril.shape == (3, 2, 2)
    assert prior.sample(5, _gen(), component=2).shape == (5, 2)


def test_fitted_prior_in_pca_space_with_noise_and_warm_start_target():
    g = _gen(0)
    imgs = torch.randn(300, 1, 4, 4, generator=g).clamp(-1, 1)
    prior = FittedGMMPrior(PCAEmbedding((1, 4, 4), 3), 2, noise_dim=5, fit_samples=100, seed=0).fit(imgs)
    z = prior.sample(6, _gen(1), component=1)
    assert z.shape == (6, 8) and prior.z_dim == 8
    target = prior.warm_start_target(z)
    assert target.shape == (6, 1, 4, 4)
    torch.testing.assert_close(target, prior.embedding.decode(z[:, :3]))


def test_fixed_prior_means_are_fixed_and_within_range():
    p = FixedGMMPrior(3, 5, sigma=0.01, mean_range=2.0, seed=1)
    assert p.means.abs().max() <= 2.0 and not p.means.requires_grad
    assert list(p.parameters()) == []
    z = p.sample(50, _gen(), component=4)
    assert (z - p.means[4]).abs().max() < 0.06
    assert torch.equal(FixedGMMPrior(3, 5, seed=1).means, FixedGMMPrior(3, 5, seed=1).means)


def test_learnable_prior_gradients_and_sigma_penalty():
    p = LearnableGMMPrior(2, 4, sigma_init=0.2, sigma_penalty=1.0, seed=0)
    z = p.sample(64, _gen())
    (z.square().sum() + p.penalty(z)).backward()
    assert p.mu.grad is not None and p.mu.grad.abs().sum() > 0
    assert p.sigma.grad is not None and p.sigma.grad.abs().sum() > 0
    torch.testing.assert_close(p.penalty(z), torch.tensor(0.64))  # (1 - 0.2)^2
    # The penalty alone pushes sigma up, towards 1.
    p.zero_grad()
    p.penalty(z).backward()
    assert (p.sigma.grad < 0).all()
    assert LearnableGMMPrior(2, 4, sigma_penalty=0.0).penalty(z) is None


def test_gmm_regulariser_penalises_off_mode_samples(points):
    prior = GMMRegularizedPrior(2, IdentityEmbedding((2,)), 3, weight=1.0, seed=0).fit(points)
    on = prior.penalty(SPEC.sample(100, seed=3)[0])
    off = prior.penalty(torch.zeros(100, 2))
    assert on < off
    x = torch.zeros(4, 2, requires_grad=True)
    prior.penalty(x).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_bad_inputs(points):
    gauss = GaussianPrior(3)
    with pytest.raises(ValueError, match="has no mixture components"):
        gauss.sample(4, component=0)
    with pytest.raises(ValueError, match="n must be a positive int"):
        gauss.sample(0)
    fixed = FixedGMMPrior(2, 3)
    with pytest.raises(ValueError, match=r"component must be an int in \[0, 2\]"):
        fixed.sample(4, component=3)
    with pytest.raises(ValueError, match="not fitted"):
        FittedGMMPrior(IdentityEmbedding((2,)), 3).sample(4)
    with pytest.raises(ValueError, match="cannot fit 50 mixture components to 10 samples"):
        FittedGMMPrior(IdentityEmbedding((2,)), 50).fit(points[:10])
    with pytest.raises(ValueError, match="unknown prior kind"):
        build_prior(types.SimpleNamespace(kind="vae"), (2,))


def test_factory_z_dims():
    cfg = PriorConfig(kind="fitted_gmm", embed="pca", embed_dim=6, noise_dim=4)
    assert build_prior(cfg, (1, 8, 8)).z_dim == 10
    assert build_prior(PriorConfig(kind="fitted_gmm"), (2,)).z_dim == 2
    for kind in ("gaussian", "fixed_gmm", "learnable_gmm", "gmm_reg"):
        assert build_prior(PriorConfig(kind=kind, z_dim=7), (2,)).z_dim == 7


def test_fitted_prior_with_automatic_k(points):
    prior = FittedGMMPrior(IdentityEmbedding((2,)), "auto", seed=0)
    with pytest.raises(ValueError, match="only known after fit"):
        _ = prior.n_components
    prior.fit(points)
    assert prior.n_components == 3  # three well separated clusters
    assert prior.sample(4, _gen(), component=2).shape == (4, 2)
    rebuilt = build_prior(PriorConfig(kind="fitted_gmm", n_components="auto"), (2,))
    rebuilt.load_state_dict(prior.state_dict())
    assert rebuilt.n_components == 3
    assert torch.equal(rebuilt.sample(5, _gen(1)), prior.sample(5, _gen(1)))
    with pytest.raises(ValueError, match="positive int or 'auto'"):
        FittedGMMPrior(IdentityEmbedding((2,)), "many")


# --------------------------------------------------------------------------------- argument checks
@pytest.mark.parametrize("make, message", [
    (lambda: GaussianPrior(0), "z_dim must be an int >= 1"),
    (lambda: GaussianPrior(-2), "z_dim must be an int >= 1"),
    (lambda: GaussianPrior(2.5), "z_dim must be an int >= 1"),
    (lambda: FixedGMMPrior(2, 0), "n_components must be an int >= 1"),
    (lambda: FixedGMMPrior(2, 3, sigma=-1.0), "sigma must be a finite number > 0"),
    (lambda: FixedGMMPrior(2, 3, sigma=float("nan")), "sigma must be a finite number > 0"),
    (lambda: FixedGMMPrior(2, 3, mean_range=0.0), "mean_range must be a finite number > 0"),
    (lambda: LearnableGMMPrior(2, 0), "n_components must be an int >= 1"),
    (lambda: LearnableGMMPrior(2, 3, sigma_init=0.0), "sigma_init must be a finite number > 0"),
    (lambda: LearnableGMMPrior(2, 3, sigma_penalty=-0.1), "sigma_penalty must be a finite number >= 0"),
    (lambda: GMMRegularizedPrior(0, None, 3), "z_dim must be an int >= 1"),
    (lambda: GMMRegularizedPrior(2, None, 3, weight=-1.0), "weight must be a finite number >= 0"),
])
def test_prior_constructors_check_their_arguments(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_fitted_prior_noise_dim_is_checked():
    from gmmgan.gan.embed import IdentityEmbedding

    with pytest.raises(ValueError, match="noise_dim must be an int >= 0"):
        FittedGMMPrior(IdentityEmbedding((2,)), 3, noise_dim=-1)


def test_prior_sizes_accept_numpy_integers():
    assert GaussianPrior(np.int64(3)).z_dim == 3
