"""GAN losses on discriminator logits, gradient penalties, and the GMM-likelihood regulariser.

Every loss returns a scalar (mean over the batch). Notation: ``r`` are D's logits on real data,
``f`` on generated data, sigma is the logistic function, softplus(t) = log(1 + e^t).

==============  ======================================  ============================
loss            discriminator                           generator
==============  ======================================  ============================
non-saturating  E softplus(-r) + E softplus(f)          E softplus(-f)
                (= -E log sigma(r) - E log(1-sigma(f)))  (= -E log sigma(f))
hinge           E relu(1 - r) + E relu(1 + f)           -E f
wgan            E f - E r                               -E f
rpgan           E softplus(-(r - f))                    E softplus(-(f - r))
==============  ======================================  ============================

``rpgan`` is the relativistic pairing GAN (Jolicoeur-Martineau, 2019; with R1 and R2 the loss of
R3GAN, Huang et al., NeurIPS 2024): D scores each real sample against the generated one it is paired
with (row i of the real batch with row i of the fake batch), so G is pulled towards every real
sample it is paired against; its authors show this loss has no mode-dropping local minima, and R3GAN
reports 1,000 Stacked-MNIST modes at KL 0.029 with it. Its G loss needs D's logits on real data too
(``GANLoss.paired``).

``mixture_density`` (:mod:`gmmgan.gan.mixture_density`): D outputs an embedding, not a logit; its
loss object has the same ``d`` / ``g`` interface, and ``score(out)`` maps D's output to the one number
per sample that R1 and WGAN-GP differentiate (the identity for the logit losses above). With
``loss.md_learnable`` the mixture is a head of D that outputs that number, and the loss
(:data:`MIXTURE_DENSITY_SCORES`) takes it as a logit loss takes logits.
``em_density`` (:mod:`gmmgan.gan.density_head`): D's own head turns its embedding into a logit (a
Gaussian mixture's log-density), and the loss is the non-saturating one above.

Penalties (added to the D loss with a weight): :func:`gradient_penalty` (WGAN-GP) and
:func:`r1_penalty` (R1 at real samples; the same function at generated samples is R2). The
regulariser :func:`gmm_nll` is added to the G loss (docs/protocols.md, section 'Latent priors',
item 4):
``loss_G + lam * gmm_nll(gmm, embed(G(z)))``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from gmmgan.gan.mixture_density import MixtureDensityLoss, score_d_loss, score_g_loss

__all__ = [
    "d_loss_nonsaturating", "g_loss_nonsaturating",
    "d_loss_hinge", "g_loss_hinge",
    "d_loss_wgan", "g_loss_wgan",
    "d_loss_rpgan", "g_loss_rpgan",
    "gradient_penalty", "r1_penalty", "gmm_nll",
    "GANLoss", "get_gan_loss", "build_gan_loss", "GAN_LOSSES", "MIXTURE_DENSITY_SCORES",
]


def _check_logits(*logits: torch.Tensor) -> None:
    for t in logits:
        if t.ndim != 1:
            raise ValueError(f"logits must have shape (N,), got {tuple(t.shape)}; squeeze D's output.")


# ---------------------------------------------------------------- adversarial losses

def d_loss_nonsaturating(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of D: E softplus(-r) + E softplus(f)."""
    _check_logits(real_logits, fake_logits)
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def g_loss_nonsaturating(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator loss: E softplus(-f) = -E log sigma(f)."""
    _check_logits(fake_logits)
    return F.softplus(-fake_logits).mean()


def d_loss_hinge(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Hinge loss of D: E relu(1 - r) + E relu(1 + f)."""
    _check_logits(real_logits, fake_logits)
    return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()


def g_loss_hinge(fake_logits: torch.Tensor) -> torch.Tensor:
    """Hinge generator loss: -E f."""
    _check_logits(fake_logits)
    return -fake_logits.mean()


def d_loss_wgan(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Wasserstein critic loss: E f - E r (pair with :func:`gradient_penalty`)."""
    _check_logits(real_logits, fake_logits)
    return fake_logits.mean() - real_logits.mean()


def g_loss_wgan(fake_logits: torch.Tensor) -> torch.Tensor:
    """Wasserstein generator loss: -E f."""
    _check_logits(fake_logits)
    return -fake_logits.mean()


def _check_pairs(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> None:
    _check_logits(real_logits, fake_logits)
    if real_logits.shape != fake_logits.shape:
        raise ValueError(f"the relativistic pairing loss pairs real sample i with generated sample i, so both "
                         f"batches must be as large; got {real_logits.shape[0]} real and {fake_logits.shape[0]} "
                         "generated logits.")


def d_loss_rpgan(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Relativistic pairing loss of D: E softplus(-(r_i - f_i)), real sample i against generated sample i."""
    _check_pairs(real_logits, fake_logits)
    return F.softplus(fake_logits - real_logits).mean()


def g_loss_rpgan(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Relativistic pairing loss of G: E softplus(-(f_i - r_i))."""
    _check_pairs(real_logits, fake_logits)
    return F.softplus(real_logits - fake_logits).mean()


@dataclass(frozen=True)
class GANLoss:
    """A matched pair ``d(real_logits, fake_logits)`` / ``g(fake_logits)``; ``score(D's output)`` is
    what R1 / WGAN-GP differentiate: the logit itself.

    ``paired``: the G loss is ``g(real_logits, fake_logits)``, D's logits on a real batch beside the
    generated one (the relativistic losses), instead of ``g(fake_logits)``."""

    name: str
    d: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    g: Callable[..., torch.Tensor]
    paired: bool = False

    @staticmethod
    def score(out: torch.Tensor) -> torch.Tensor:
        return out


GAN_LOSSES = {
    "nonsaturating": GANLoss("nonsaturating", d_loss_nonsaturating, g_loss_nonsaturating),
    "hinge": GANLoss("hinge", d_loss_hinge, g_loss_hinge),
    "wgan": GANLoss("wgan", d_loss_wgan, g_loss_wgan),
    "rpgan": GANLoss("rpgan", d_loss_rpgan, g_loss_rpgan, paired=True),
}
# loss.md_learnable: D (a SimplexMixtureHead on its embedding) outputs the score s = log p(real), so the loss
# takes scores and R1 / WGAN-GP differentiate them as they are (GANLoss.score is the identity).
MIXTURE_DENSITY_SCORES = GANLoss("mixture_density", score_d_loss, score_g_loss)
_ALIASES = {"ns": "nonsaturating", "non-saturating": "nonsaturating", "bce": "nonsaturating", "wgan-gp": "wgan",
            "relativistic": "rpgan"}


def get_gan_loss(name: str) -> GANLoss:
    """The loss pair called ``name``: 'nonsaturating' (alias 'ns'), 'hinge', 'wgan' or 'rpgan'."""
    key = _ALIASES.get(str(name).lower(), str(name).lower())
    if key not in GAN_LOSSES:
        raise ValueError(f"Unknown GAN loss {name!r}; expected one of {sorted(GAN_LOSSES)} (or alias 'ns').")
    return GAN_LOSSES[key]


def build_gan_loss(loss_cfg) -> GANLoss | MixtureDensityLoss:
    """The loss object of a ``LossConfig``: :func:`get_gan_loss` of its kind, or a
    :class:`~gmmgan.gan.mixture_density.MixtureDensityLoss` with its ``md_*`` fields
    (:data:`MIXTURE_DENSITY_SCORES` with ``md_learnable``: the mixture is then in D)."""
    if loss_cfg.kind == "mixture_density" and loss_cfg.md_learnable:  # D's head outputs s = log p itself
        return MIXTURE_DENSITY_SCORES
    if loss_cfg.kind == "mixture_density":
        return MixtureDensityLoss(loss_cfg.md_dim, loss_cfg.md_components, loss_cfg.md_sigma, loss_cfg.md_distance)
    if loss_cfg.kind == "em_density":  # D's mixture head makes a logit (gmmgan.gan.density_head): the plain ns loss
        return get_gan_loss("ns")
    return get_gan_loss(loss_cfg.kind)


# ---------------------------------------------------------------- penalties

def _grad_norms_sq(logits: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """Squared norm of d logit_i / d inputs, one per logit (a PacGAN pack groups consecutive rows)."""
    if logits.ndim != 1:
        raise ValueError(f"logits must have shape (N,), got {tuple(logits.shape)}.")
    if not logits.requires_grad:
        raise ValueError("logits do not depend on inputs through autograd; compute them from inputs with grad enabled.")
    (grad,) = torch.autograd.grad(logits.sum(), inputs, create_graph=True)
    n_out = logits.shape[0]
    if inputs.shape[0] % n_out:
        raise ValueError(f"{inputs.shape[0]} inputs cannot map onto {n_out} logits (packs of equal size).")
    # Each logit depends only on its own pack, so the gradient of the sum splits by pack.
    return grad.reshape(n_out, -1).square().sum(1)


def gradient_penalty(
    D: Callable[[torch.Tensor], torch.Tensor],
    real: torch.Tensor,
    fake: torch.Tensor,
    *,
    target: float = 1.0,
    eps: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """WGAN-GP penalty E (||grad_x D(x_hat)||_2 - target)^2 on x_hat = eps * real + (1 - eps) * fake.

    Parameters
    ----------
    D : callable, (N, ...) -> logits (N // pack,)
    real, fake : Tensors of the same shape (N, ...)
        ``fake`` is detached: the penalty trains D only.
    target : float, default=1.0
        The gradient norm aimed at (1 for WGAN-GP; 0 gives the "zero-centred" variant).
    eps : Tensor of shape (N,), optional
        Interpolation weights; default U(0, 1), one per sample (drawn with ``generator``).
        With packing, each sample of a pack gets its own weight.
    reduction : {'mean', 'none'}, default='mean'
        'none' returns one term per logit (a seed sweep averages them per seed).

    Returns
    -------
    Scalar Tensor (or (N // pack,) with reduction='none'), differentiable w.r.t. D's parameters
    (multiply by lambda, e.g. 10).
    """
    _check_reduction(reduction)
    if real.shape != fake.shape:
        raise ValueError(f"real and fake must have the same shape, got {tuple(real.shape)} and {tuple(fake.shape)}.")
    n = real.shape[0]
    if eps is None:
        device = generator.device if generator is not None else real.device
        eps = torch.rand(n, generator=generator, device=device).to(real.device, real.dtype)
    if eps.shape != (n,):
        raise ValueError(f"eps must have shape ({n},), got {tuple(eps.shape)}.")
    eps = eps.view(n, *([1] * (real.ndim - 1)))
    x_hat = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)
    norms = _grad_norms_sq(D(x_hat), x_hat).add(1e-12).sqrt()  # 1e-12: finite gradient at norm 0
    terms = (norms - target).square()
    return terms.mean() if reduction == "mean" else terms


def r1_penalty(d_real_logits: torch.Tensor, real: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """R1 penalty E ||grad_x D(x)||^2 on real data (Mescheder et al. 2018).

    Usage: ``real.requires_grad_(True); logits = D(real); loss_D += gamma / 2 * r1_penalty(logits, real)``.

    Parameters
    ----------
    d_real_logits : Tensor of shape (N // pack,), computed from ``real`` with autograd on
    real : Tensor of shape (N, ...) with requires_grad=True
    reduction : {'mean', 'none'}, default='mean'
        'none' returns one squared gradient norm per logit.

    Returns
    -------
    Scalar Tensor (or (N // pack,) with reduction='none'), differentiable w.r.t. D's parameters.
    """
    _check_reduction(reduction)
    if not real.requires_grad:
        raise ValueError("real must require grad before D sees it: call real.requires_grad_(True), then D(real).")
    norms = _grad_norms_sq(d_real_logits, real)
    return norms.mean() if reduction == "mean" else norms


def _check_reduction(reduction: str) -> None:
    if reduction not in ("mean", "none"):
        raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}.")


# ---------------------------------------------------------------- GMM likelihood regulariser

def gmm_nll(gmm, embedded: torch.Tensor) -> torch.Tensor:
    """Negative mean GMM log-likelihood of embedded generated samples: -E log p_GMM(embed(G(z))).

    Parameters
    ----------
    gmm : object with a differentiable ``log_prob(x: Tensor (n, d)) -> Tensor (n,)``
        A fitted :class:`gmmgan.GaussianMixture` (fitted on embeddings of real data) or any
        ``torch.distributions`` mixture.
    embedded : Tensor of shape (n, d)
        ``embed(G(z))``; gradients flow back through it to the generator.

    Returns
    -------
    Scalar Tensor.
    """
    if embedded.ndim != 2:
        raise ValueError(f"embedded must have shape (n, d), got {tuple(embedded.shape)}; flatten or embed first.")
    log_p = gmm.log_prob(embedded)
    if log_p.shape != (embedded.shape[0],):
        raise ValueError(f"gmm.log_prob returned shape {tuple(log_p.shape)}, expected ({embedded.shape[0]},).")
    return -log_p.mean()
