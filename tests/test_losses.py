"""GAN losses, penalties and the GMM-likelihood regulariser: hand-computed values and gradients."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gmmgan.gan.losses import (
    d_loss_hinge,
    d_loss_nonsaturating,
    d_loss_rpgan,
    d_loss_wgan,
    g_loss_hinge,
    g_loss_nonsaturating,
    g_loss_rpgan,
    g_loss_wgan,
    get_gan_loss,
    gmm_nll,
    gradient_penalty,
    r1_penalty,
)
from gmmgan.nets import pack_samples

logit_lists = st.lists(st.floats(-30, 30), min_size=1, max_size=20)


def test_nonsaturating_values():
    z = torch.zeros(4)
    assert float(d_loss_nonsaturating(z, z)) == pytest.approx(2 * math.log(2))
    assert float(g_loss_nonsaturating(z)) == pytest.approx(math.log(2))
    r, f = torch.tensor([2.0, -1.0]), torch.tensor([0.5, 3.0])
    sig = torch.sigmoid
    expected = -(sig(r).log().mean() + (1 - sig(f)).log().mean())
    assert float(d_loss_nonsaturating(r, f)) == pytest.approx(float(expected), rel=1e-6)
    assert float(g_loss_nonsaturating(f)) == pytest.approx(float(-sig(f).log().mean()), rel=1e-6)


@settings(max_examples=40, deadline=None)
@given(r=logit_lists, f=logit_lists)
def test_nonsaturating_is_bce(r, f):
    r, f = torch.tensor(r, dtype=torch.float64), torch.tensor(f, dtype=torch.float64)
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    expected = bce(r, torch.ones_like(r)) + bce(f, torch.zeros_like(f))
    assert torch.allclose(d_loss_nonsaturating(r, f), expected)
    assert torch.allclose(g_loss_nonsaturating(f), bce(f, torch.ones_like(f)))
    assert torch.isfinite(d_loss_nonsaturating(r * 100, f * 100))  # softplus form: no overflow


def test_hinge_and_wgan_values():
    r, f = torch.tensor([2.0, 0.5, -1.0]), torch.tensor([-2.0, 0.0, 1.0])
    # relu(1 - r) = [0, 0.5, 2] -> 2.5/3 ; relu(1 + f) = [0, 1, 2] -> 1
    assert float(d_loss_hinge(r, f)) == pytest.approx(2.5 / 3 + 1.0)
    assert float(g_loss_hinge(f)) == pytest.approx(1.0 / 3)
    assert float(d_loss_wgan(r, f)) == pytest.approx(-1.0 / 3 - 1.5 / 3)
    assert float(g_loss_wgan(f)) == pytest.approx(1.0 / 3)


def test_loss_gradients():
    f = torch.tensor([0.0, 1.0], requires_grad=True)
    g_loss_nonsaturating(f).backward()
    # d/df softplus(-f) = -sigma(-f), averaged over 2
    assert torch.allclose(f.grad, -torch.sigmoid(-f.detach()) / 2)
    r = torch.tensor([0.5, 2.0], requires_grad=True)
    d_loss_hinge(r, torch.zeros(2)).backward()
    assert torch.allclose(r.grad, torch.tensor([-0.5, 0.0]))


def test_registry():
    assert get_gan_loss("ns").d is d_loss_nonsaturating
    assert get_gan_loss("HINGE").g is g_loss_hinge
    assert get_gan_loss("wgan-gp").name == "wgan"
    assert get_gan_loss("relativistic").paired and not get_gan_loss("ns").paired
    with pytest.raises(ValueError, match="Unknown GAN loss 'lsgan'"):
        get_gan_loss("lsgan")


def test_rpgan_values_pairs_and_gradients():
    r, f = torch.tensor([2.0, -1.0]), torch.tensor([0.5, 3.0])
    # row by row: softplus(-(2 - 0.5)) and softplus(-(-1 - 3)), averaged
    sp = lambda t: math.log1p(math.exp(t))  # noqa: E731
    assert float(d_loss_rpgan(r, f)) == pytest.approx((sp(-1.5) + sp(4.0)) / 2, rel=1e-6)
    assert float(g_loss_rpgan(r, f)) == pytest.approx((sp(1.5) + sp(-4.0)) / 2, rel=1e-6)
    # Only differences count: shifting every logit by the same amount changes nothing (unlike ns).
    assert float(d_loss_rpgan(r + 7, f + 7)) == pytest.approx(float(d_loss_rpgan(r, f)), rel=1e-6)
    # Pairs, not batches: swapping the fake rows changes the loss.
    assert float(d_loss_rpgan(r, f.flip(0))) != pytest.approx(float(d_loss_rpgan(r, f)))
    f_req = f.clone().requires_grad_(True)
    g_loss_rpgan(r, f_req).backward()  # d/df_i softplus(r_i - f_i) / 2 = -sigma(r_i - f_i) / 2
    assert torch.allclose(f_req.grad, -torch.sigmoid(r - f) / 2)
    with pytest.raises(ValueError, match="pairs real sample i with generated sample i"):
        d_loss_rpgan(torch.zeros(3), torch.zeros(2))


@settings(max_examples=30, deadline=None)
@given(r=logit_lists)
def test_rpgan_g_and_d_losses_mirror_each_other(r):
    r = torch.tensor(r, dtype=torch.float64)
    f = r.flip(0) * 0.5
    assert torch.allclose(g_loss_rpgan(r, f), d_loss_rpgan(f, r))
    assert torch.isfinite(d_loss_rpgan(r * 100, -r * 100))


def _linear_D(w: torch.Tensor, b: float = 0.3, pack: int = 1):
    def D(x):
        return pack_samples(x, pack).flatten(1) @ w + b

    return D


def test_gradient_penalty_linear_hand_value():
    w = torch.tensor([3.0, 4.0])  # ||w|| = 5 -> (5 - 1)^2 = 16 for every interpolate
    real, fake = torch.randn(8, 2), torch.randn(8, 2)
    gp = gradient_penalty(_linear_D(w), real, fake, generator=torch.Generator().manual_seed(0))
    assert float(gp) == pytest.approx(16.0, rel=1e-6)
    assert float(gradient_penalty(_linear_D(w), real, fake, target=0.0)) == pytest.approx(25.0, rel=1e-6)


def test_gradient_penalty_packed_and_images():
    w = torch.randn(2 * 3 * 4 * 4)
    D = _linear_D(w, pack=2)
    real, fake = torch.randn(6, 3, 4, 4), torch.randn(6, 3, 4, 4)
    gp = gradient_penalty(D, real, fake)
    assert float(gp) == pytest.approx((float(w.norm()) - 1) ** 2, rel=1e-5)


def test_gradient_penalty_nonlinear_matches_manual_and_trains_D():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    D = lambda x: net(x).squeeze(1)  # noqa: E731
    real, fake = torch.randn(5, 2), torch.randn(5, 2, requires_grad=True)
    eps = torch.rand(5)
    gp = gradient_penalty(D, real, fake, eps=eps)
    gp_value = float(gp.detach())
    x_hat = (eps[:, None] * real + (1 - eps[:, None]) * fake.detach()).requires_grad_(True)
    (g,) = torch.autograd.grad(D(x_hat).sum(), x_hat)
    assert gp_value == pytest.approx(float(((g.norm(dim=1) - 1) ** 2).mean()), rel=1e-5)
    gp.backward()
    # Every weight gets a gradient (the output bias cannot: it does not change grad_x D).
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for n, p in net.named_parameters() if n != "2.bias")
    assert fake.grad is None  # the penalty never trains G


def test_r1_penalty():
    w = torch.tensor([1.0, -2.0, 2.0])  # ||w||^2 = 9
    real = torch.randn(4, 3).requires_grad_(True)
    assert float(r1_penalty(_linear_D(w)(real), real).detach()) == pytest.approx(9.0)
    # Quadratic D(x) = sum x^2: grad 2x, so R1 = 4 E||x||^2.
    x = torch.randn(6, 3).requires_grad_(True)
    assert float(r1_penalty((x**2).sum(1), x).detach()) == pytest.approx(
        float(4 * (x.detach() ** 2).sum(1).mean()), rel=1e-6
    )
    # Packed: pack of 2 samples -> squared norm of the concatenated gradient.
    w2 = torch.randn(6)
    xr = torch.randn(4, 3).requires_grad_(True)
    assert float(r1_penalty(_linear_D(w2, pack=2)(xr), xr).detach()) == pytest.approx(
        float(w2.square().sum()), rel=1e-6
    )


def test_penalty_errors():
    x = torch.randn(4, 2)
    with pytest.raises(ValueError, match="requires_grad_"):
        r1_penalty(x.sum(1), x)
    xg = x.clone().requires_grad_(True)
    with pytest.raises(ValueError, match="do not depend on inputs"):
        r1_penalty(torch.zeros(4), xg)
    with pytest.raises(ValueError, match="same shape"):
        gradient_penalty(lambda t: t.sum(1), x, torch.randn(3, 2))
    with pytest.raises(ValueError, match=r"eps must have shape \(4,\)"):
        gradient_penalty(lambda t: t.sum(1), x, x, eps=torch.rand(3))
    with pytest.raises(ValueError, match=r"logits must have shape \(N,\)"):
        d_loss_hinge(torch.zeros(4, 1), torch.zeros(4))


def _tiny_gmm():
    from gmmgan import GaussianMixture

    X = torch.cat(
        [
            torch.randn(200, 2, generator=torch.Generator().manual_seed(0)) * 0.3 + c
            for c in (torch.tensor([-2.0, 0.0]), torch.tensor([2.0, 0.0]))
        ]
    )
    return GaussianMixture(2, random_state=0).fit(X)


def test_gmm_nll_matches_torch_distribution():
    D = torch.distributions
    mix = D.MixtureSameFamily(
        D.Categorical(probs=torch.tensor([0.25, 0.75])),
        D.MultivariateNormal(torch.tensor([[0.0, 0.0], [3.0, 1.0]]), covariance_matrix=torch.eye(2).expand(2, 2, 2)),
    )
    x = torch.tensor([[0.0, 0.0], [3.0, 1.0], [1.0, 1.0]], requires_grad=True)
    nll = gmm_nll(mix, x)
    # Hand value of the first point: 0.25 N(0;0,I) + 0.75 N(0;(3,1),I) = (0.25 + 0.75 e^{-5}) / (2 pi)
    lp0 = math.log((0.25 + 0.75 * math.exp(-5)) / (2 * math.pi))
    assert float(-mix.log_prob(x[:1]).detach()) == pytest.approx(-lp0, rel=1e-6)
    assert float(nll.detach()) == pytest.approx(float(-mix.log_prob(x).mean().detach()))
    nll.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_gmm_nll_with_gmmgan_mixture_gradient_flows():
    gmm = _tiny_gmm()
    x = torch.tensor([[-2.0, 0.5], [1.0, 0.0]], requires_grad=True)
    nll = gmm_nll(gmm, x)
    assert torch.isfinite(nll)
    nll.backward()
    # Gradient descent on the NLL moves samples toward the nearest mode.
    assert float(x.grad[0, 1]) > 0 and float(x.grad[1, 0]) < 0
    # Through a generator: its parameters get gradients.
    G = torch.nn.Linear(3, 2)
    loss = gmm_nll(gmm, G(torch.randn(5, 3)))
    loss.backward()
    assert G.weight.grad is not None and G.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match=r"embedded must have shape \(n, d\)"):
        gmm_nll(gmm, torch.randn(2, 1, 2))
