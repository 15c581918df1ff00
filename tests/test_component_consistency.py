"""Component consistency (gmmgan.gan.component_consistency) and the fitted prior's prior.consistency."""

from __future__ import annotations

import math

import pytest
import torch
from _helpers import three_kinds
from hypothesis import given, settings
from hypothesis import strategies as st

from gmmgan.gan.component_consistency import ComponentHead, consistency_loss
from gmmgan.gan.config import PriorConfig
from gmmgan.gan.contrastive import ContrastiveEmbedding
from gmmgan.gan.embed import PCAEmbedding
from gmmgan.gan.fitted_mixture import FittedMixture
from gmmgan.gan.priors import FittedGMMPrior, build_prior

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SHAPE = (1, 8, 8)


def random_mixture(k, d, seed):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(k, d, d, generator=g, dtype=torch.float64) * 0.5
    cov = a @ a.transpose(1, 2) + 0.3 * torch.eye(d, dtype=torch.float64)
    w = torch.rand(k, generator=g, dtype=torch.float64) + 0.1
    return w / w.sum(), torch.randn(k, d, generator=g, dtype=torch.float64) * 2, torch.linalg.cholesky(cov)


@settings(max_examples=25, deadline=None)
@given(k=st.integers(1, 6), d=st.integers(1, 5), seed=st.integers(0, 10_000))
def test_the_posterior_is_bayes_rule_on_the_mixture(k, d, seed):
    w, mu, L = random_mixture(k, d, seed)
    x = torch.randn(7, d, generator=torch.Generator().manual_seed(seed + 1), dtype=torch.float64) * 3
    D = torch.distributions
    joint = D.MultivariateNormal(mu, scale_tril=L).log_prob(x[:, None, :]) + w.log()
    want = joint - torch.logsumexp(joint, 1, keepdim=True)
    mixture = FittedMixture(k)
    mixture.weights, mixture.means, mixture.scale_tril = w, mu, L
    got = mixture.log_posterior(x)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(got.exp().sum(1), torch.ones(7, dtype=torch.float64))


def test_the_loss_is_the_cross_entropy_and_only_the_prediction_is_trained():
    target = torch.log_softmax(torch.randn(5, 3), 1).requires_grad_(True)
    pred = torch.log_softmax(torch.randn(5, 3), 1).requires_grad_(True)
    loss = consistency_loss(target, pred)
    torch.testing.assert_close(loss, -(target.exp() * pred).sum(1).mean())
    loss.backward()
    assert target.grad is None and float(pred.grad.abs().sum()) > 0
    # It is smallest, over predictions, at the target itself (Gibbs' inequality).
    assert float(consistency_loss(target, target).detach()) <= float(loss.detach())


def test_the_head_learns_the_components_of_separable_features_and_survives_a_state_round_trip():
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[4.0, 0.0], [0.0, 4.0], [-4.0, -4.0]])
    labels = torch.arange(3).repeat_interleave(50)
    feats = centres[labels] + 0.5 * torch.randn(150, 2, generator=g)
    target = torch.log(torch.nn.functional.one_hot(labels, 3).float() * 0.98 + 0.01)
    head = ComponentHead()
    with pytest.raises(ValueError, match="not fitted"):
        head.log_probs(feats)
    head.fit(feats, target)
    assert head.agreement == 1.0 and head.weight.shape == (3, 2)
    loaded = ComponentHead()
    loaded.load_state_dict(head.state_dict())  # empty buffers take the saved shapes
    torch.testing.assert_close(loaded.log_probs(feats), head.log_probs(feats))
    x = feats[:4].clone().requires_grad_(True)
    loaded.log_probs(x)[:, 0].sum().backward()
    assert float(x.grad.abs().sum()) > 0


def pca_prior(consistency):
    x, _ = three_kinds()
    prior = FittedGMMPrior(PCAEmbedding(SHAPE, 3), 3, noise_dim=2, reg_covar=1e-3, consistency=consistency, seed=0)
    return prior.fit(x), x


def test_without_a_weight_there_is_no_penalty_and_no_head():
    prior, x = pca_prior(0.0)
    assert prior.penalty(x[:4], prior.sample(4)) is None and prior.head is None
    assert not any(k.startswith("head.") for k in prior.state_dict())  # older runs' states load


def test_with_a_differentiable_embedding_the_penalty_is_the_mixtures_own_posterior():
    prior, x = pca_prior(0.5)
    assert prior.head is None  # PCA's encode has a gradient: the mixture's posterior is used directly
    z, k = prior.sample_with_components(6, torch.Generator().manual_seed(1))
    fake = x[:6].clone().requires_grad_(True)
    m = prior.mixture
    want = 0.5 * consistency_loss(m.log_posterior(z[:, :3]), m.log_posterior(prior.embedding.encode(fake)))
    got = prior.penalty(fake, z)
    torch.testing.assert_close(got, want)
    got.backward()
    assert float(fake.grad.abs().sum()) > 0
    with pytest.raises(ValueError, match="needs the latents"):
        prior.penalty(fake)


def test_images_of_the_latents_component_cost_less_than_images_of_another():
    prior, x = pca_prior(1.0)
    codes = prior.embedding.encode(x)
    m = prior.mixture
    comp = m.log_posterior(codes).argmax(1)
    z = torch.cat([codes, torch.zeros(codes.shape[0], 2)], 1)  # latents whose mixture part is each image's own code
    own = prior.penalty(x, z)
    other = prior.penalty(x[torch.roll(torch.arange(x.shape[0]), 60)], z)  # each latent paired with another kind
    assert comp.unique().numel() == 3
    assert float(own) < 0.05 < 1.0 < float(other)


def test_with_a_manifold_step_a_head_is_fitted_on_the_features_and_kept_in_the_state():
    x, _ = three_kinds()
    cfg = PriorConfig(kind="fitted_gmm", embed="contrastive", embed_dim=4, embed_manifold_dim=2, n_components=3,
                      embed_epochs=3, embed_width=4, reg_covar=1e-3, noise_dim=1, consistency=1.0)
    prior = build_prior(cfg, SHAPE, seed=0)
    assert isinstance(prior.embedding, ContrastiveEmbedding) and not prior.embedding.differentiable
    prior.embedding.manifold.n_epochs = 20
    prior.fit(x)
    assert prior.head.fitted and prior.head.agreement > 0.9
    z = prior.sample(5, torch.Generator().manual_seed(2))
    fake = x[:5].clone().requires_grad_(True)
    penalty = prior.penalty(fake, z)
    assert penalty.ndim == 0 and math.isfinite(float(penalty))
    penalty.backward()
    assert float(fake.grad.abs().sum()) > 0  # through the encoder's features, not the neighbour average
    loaded = build_prior(cfg, SHAPE, seed=0)  # what --resume and `gmmgan sample` build, then load: no refit
    loaded.load_state_dict(prior.state_dict())
    torch.testing.assert_close(loaded.penalty(x[:5], z), prior.penalty(x[:5], z))


def test_a_manifold_step_embedding_with_its_head_works_when_float64_is_the_default_dtype(float64):
    # The stored layout rows stay float32; float64 latents and images (the sweep tests' setting) met
    # them in a matrix product and failed, in the warm-start target and in the head's fit.
    x, _ = three_kinds(n_per=30)
    cfg = PriorConfig(kind="fitted_gmm", embed="contrastive", embed_dim=4, embed_manifold_dim=2, n_components=3,
                      embed_epochs=1, embed_width=4, reg_covar=1e-3, noise_dim=1, consistency=1.0)
    prior = build_prior(cfg, SHAPE, seed=0)
    prior.embedding.manifold.n_epochs = 5
    prior.fit(x.double())
    z = prior.sample(4, torch.Generator().manual_seed(1))
    target = prior.warm_start_target(z)
    assert target.shape == (4, *SHAPE) and torch.isfinite(target).all()
    assert math.isfinite(float(prior.penalty(x[:4].double(), z)))


def test_fitting_the_mixture_without_the_features_says_how_to_fit():
    x, _ = three_kinds()
    cfg = PriorConfig(kind="fitted_gmm", embed="contrastive", embed_dim=4, embed_manifold_dim=2, n_components=3,
                      embed_epochs=1, embed_width=4, consistency=1.0)
    prior = build_prior(cfg, SHAPE, seed=0)
    with pytest.raises(ValueError, match=r"fit\(real\)"):
        prior.fit_mixture(torch.randn(180, 2))


@pytest.mark.parametrize(("kw", "match"), [
    ({"consistency": -1.0}, "consistency"),
    ({"kind": "gaussian", "consistency": 1.0}, "has none to tie to"),
    ({"kind": "gmm_reg", "embed": "pca", "consistency": 1.0}, "has none to tie to"),
])
def test_bad_consistency_settings_are_clear_errors(kw, match):
    with pytest.raises(ValueError, match=match):
        PriorConfig(**kw)


def test_a_reused_manifold_embedding_fits_the_mixture_on_its_stored_layout_as_the_run_that_trained_it():
    # prior.embed_from: the neighbour averages of encode() blur the clusters (MNIST, shared contrastive
    # embedding: real-test clustering 0.83-0.94 against 0.96); the stored layout rows are the same space.
    x, _ = three_kinds()
    cfg = PriorConfig(kind="fitted_gmm", embed="contrastive", embed_dim=4, embed_manifold_dim=2, n_components=3,
                      embed_epochs=2, embed_width=4, reg_covar=1e-3, noise_dim=1, consistency=1.0)
    trained = build_prior(cfg, SHAPE, seed=0)
    trained.embedding.manifold.n_epochs = 20
    trained.fit(x)
    reused = build_prior(cfg, SHAPE, seed=0)
    reused.embedding.load_state_dict(trained.embedding.state_dict())  # what prior.embed_from loads
    reused.fit(x)
    for name in ("weights", "means", "scale_tril"):
        torch.testing.assert_close(getattr(reused.mixture, name), getattr(trained.mixture, name))
    torch.testing.assert_close(reused.head.weight, trained.head.weight)
    # An embedding without a manifold step has no stored layout: its codes are encode(x) either way.
    assert PCAEmbedding(SHAPE, 3).stored_layout() is None
    assert ContrastiveEmbedding(SHAPE, 4, None, epochs=1, width=4).stored_layout() is None
