"""The em_density discriminator (``loss.kind: em_density``): D's embedding scored by a Gaussian mixture fitted by EM.

D is a body that embeds each sample (or PacGAN pack) in R^d (``loss.md_dim`` units) and a head
that scores the embedding by the log-density of a K-component Gaussian mixture, minus an offset:

    logit(x) = log sum_k w_k N(e(x) | mu_k, Sigma_k) - offset.

The logit goes into the plain non-saturating loss (:func:`gmmgan.gan.losses.d_loss_nonsaturating`),
and R1 / WGAN-GP act on it as on any logit: D learns to map reals where the mixture is dense and
fakes where it is not. The mixture is not trained by gradients: before the first step and every
``loss.md_refresh_kimg`` kimg, :func:`refresh_head` embeds ``loss.md_fit_samples`` real samples with
the current body and fits :class:`gmmgan.mixture.GaussianMixture` to them by EM; the offset is the
mean log-density of those embeddings, so right after a refresh reals sit at logit ~0.

How it differs from the Mixture Density GAN (:mod:`gmmgan.gan.mixture_density`): there the mixture
is fixed at the vertices of a simplex and D must move the reals' embeddings onto them; here the
mixture follows wherever D puts the reals. Its cost: one small EM fit (on a few thousand points in
d dimensions) per refresh, outside the training step.

The head's parameters are buffers, copied in place at a refresh (``copy_``), so a CUDA graph that
captured the step (or a seed sweep's stacked buffers, :meth:`gmmgan.gan.stacked.StackedModule.restack_buffers_from`)
sees the new mixture without being captured again; they are part of D's state dict, so checkpoints
hold the mixture and a resumed run scores with the very one it stopped with.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from gmmgan import distributed

__all__ = ["FittedMixtureHead", "HeadedDiscriminator", "fit_mixture", "refresh_due", "refresh_head"]

FIT_MAX_ITER = 50  # EM iterations per refresh: the fit starts afresh (k-means++) each time


class FittedMixtureHead(nn.Module):
    """logit = log sum_k w_k N(e | mu_k, Sigma_k) - offset, with the mixture held in buffers.

    Parameters
    ----------
    dim : int
        Size d of the embedding.
    components : int
        Number of components K.

    Buffers
    -------
    means : (K, d)
    prec_chol : (K, d, d)
        Upper-triangular Cholesky factors of the precisions (Sigma_k^-1 = P_k P_k^T), as
        scikit-learn's ``precisions_cholesky_`` of a 'full' fit; other covariance types are stored
        in this full form.
    log_weights : (K,)
    offset : ()

    They start as K unit-covariance components at 0 with equal weights (finite, before any fit).
    """

    def __init__(self, dim: int, components: int):
        super().__init__()
        self.dim, self.components = int(dim), int(components)
        self.register_buffer("means", torch.zeros(components, dim))
        self.register_buffer("prec_chol", torch.eye(dim).expand(components, dim, dim).clone())
        self.register_buffer("log_weights", torch.full((components,), -math.log(components)))
        self.register_buffer("offset", torch.zeros(()))

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        """Logits (...,) of embeddings ``e`` (..., d), in the buffers' dtype (float32 under bf16 autocast)."""
        if e.shape[-1] != self.dim:
            raise ValueError(f"em_density: the embedding must end in md_dim={self.dim} units, got shape "
                             f"{tuple(e.shape)}.")
        with torch.autocast(device_type=e.device.type, enabled=False):
            e = e.to(self.means.dtype)
            # Whitened differences y_k = (e - mu_k) P_k: exact, unlike |e|^2 - 2 e.mu + |mu|^2, which cancels.
            y = torch.einsum("...kd,kde->...ke", e.unsqueeze(-2) - self.means, self.prec_chol)
            log_det = torch.diagonal(self.prec_chol, dim1=-2, dim2=-1).log().sum(-1)  # P_k is triangular
            log_comp = self.log_weights + log_det - 0.5 * (y.square().sum(-1) + self.dim * math.log(2 * math.pi))
            return torch.logsumexp(log_comp, -1) - self.offset

    @torch.no_grad()
    def load_fit(self, gmm, offset) -> None:
        """Copy a fitted :class:`gmmgan.mixture.GaussianMixture` (any covariance type) and ``offset`` into the buffers.

        In place (``copy_``): the buffers keep their storage, so a captured CUDA graph reads the new values.
        """
        k, d = self.components, self.dim
        as_t = torch.as_tensor
        means = as_t(gmm.means_)
        if means.shape != (k, d):
            raise ValueError(f"the fitted mixture has {means.shape[0]} components of dim {means.shape[-1]}; this "
                             f"head holds {k} of dim {d}.")
        pc = as_t(gmm.precisions_cholesky_)
        kind = gmm.covariance_type
        if kind == "full":
            full = pc
        elif kind == "tied":
            full = pc.expand(k, d, d)
        elif kind == "diag":
            full = torch.diag_embed(pc)
        elif kind == "spherical":
            full = pc[:, None, None] * torch.eye(d, dtype=pc.dtype, device=pc.device)
        else:
            raise ValueError(f"unknown covariance_type {kind!r} of the fitted mixture.")
        self.means.copy_(means)
        self.prec_chol.copy_(full)
        self.log_weights.copy_(as_t(gmm.weights_).log())
        self.offset.copy_(as_t(offset))


class HeadedDiscriminator(nn.Module):
    """D of ``loss.kind=em_density``: ``forward(x)`` -> logits (N // pack,); ``embed(x)`` -> the body's (N // pack, d).

    Also D of ``loss.kind=mixture_density`` with ``loss.md_learnable``, whose head's output is the score log p.

    Parameters
    ----------
    body : nn.Module
        The discriminator net with ``out_dim = md_dim`` (it packs samples itself).
    head : FittedMixtureHead or gmmgan.gan.mixture_density.SimplexMixtureHead
        Any module with a ``dim`` (the embedding size) mapping (..., dim) to (...,).
    """

    def __init__(self, body: nn.Module, head: FittedMixtureHead):
        super().__init__()
        self.body, self.head = body, head
        self.pack = getattr(body, "pack", 1)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        e = self.body(x)
        # A body with one output unit squeezes it away (a logit's shape); the head wants (N, 1).
        return e.unsqueeze(-1) if self.head.dim == 1 else e

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))


# ----------------------------------------------------------------------------------- refreshing the mixture
def refresh_due(cur_nimg: int, batch_size: int, every_kimg: float) -> int | None:
    """The refresh index due before the step that starts at ``cur_nimg`` images, or None.

    Due at 0 and whenever the previous step crossed a multiple of ``every_kimg`` thousand images;
    the index is ``cur_nimg // period``. A function of the image count alone, so a resumed run
    refreshes where the uninterrupted one does (its checkpoint is written after a step, before the
    refresh that step may make due).

    >>> [refresh_due(n, 300, 1.0) for n in (0, 300, 900, 1200, 1500, 2100)]
    [0, None, None, 1, None, 2]
    """
    period = max(1, round(every_kimg * 1000))
    index = cur_nimg // period
    if cur_nimg == 0 or index != max(cur_nimg - batch_size, 0) // period:
        return index
    return None


def _derived_seed(*parts: int) -> int:
    """A 32-bit seed from a tuple of integers (seed, refresh index, purpose), independent for each tuple."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


@torch.no_grad()
def _embed_reals(D: HeadedDiscriminator, data: torch.Tensor, n: int, batch_size: int, generator, autocast):
    """D's embeddings (n // pack, d) of ``n`` real rows drawn without replacement, in train mode, D's state unchanged."""
    pack = D.pack
    n = min(n, data.shape[0]) // pack * pack
    idx = torch.randperm(data.shape[0], generator=generator)[:n].to(data.device)
    chunk = max(pack, batch_size // pack * pack)
    # Train mode, as in training (BatchNorm normalises by its batch), but BatchNorm's running statistics
    # and spectral norm's power-iteration vectors are put back afterwards: the refresh is no training step.
    saved = [(b, b.detach().clone()) for b in D.body.buffers()]
    was = D.body.training
    D.body.train()
    try:
        with autocast():
            out = [D.embed(data[idx[i:i + chunk]]).float() for i in range(0, n, chunk)]
    finally:
        D.body.train(was)
        for b, v in saved:
            b.copy_(v)
    return torch.cat(out)


def fit_mixture(e: torch.Tensor, components: int, covariance: str, random_state: int, reg_covar: float):
    """GaussianMixture fitted by EM on embeddings ``e`` (n, d) in float64, and the mean log-density of ``e``.

    ``reg_covar`` (``loss.md_reg_covar``) is added to every covariance's diagonal: a floor on the
    components' widths in embedding units, which bounds the logit's slope (see the module).
    """
    from gmmgan.mixture import GaussianMixture

    e = e.to(torch.float64)
    if not torch.isfinite(e).all():
        raise FloatingPointError("em_density: D's embeddings of the real samples are not finite; the mixture cannot "
                                 "be fitted (try lower learning rates, loss.r1_gamma=1 or nets.d_spectral_norm=true).")
    gmm = GaussianMixture(components, covariance_type=covariance, reg_covar=reg_covar, max_iter=FIT_MAX_ITER,
                          init_params="k-means++", random_state=random_state, device=e.device, dtype=torch.float64)
    with warnings.catch_warnings(), distributed.local_only():  # every rank fits the same rows (no sharding)
        warnings.simplefilter("ignore")  # a short EM per refresh by design: convergence warnings are no news
        gmm.fit(e)
        offset = gmm.score_samples(e).mean()
    return gmm, offset


def refresh_head(D: HeadedDiscriminator, data: torch.Tensor, *, seed: int, index: int, loss_cfg, batch_size: int,
                 autocast: Callable) -> None:
    """Fit the mixture of ``D.head`` on D's embeddings of real data (refresh ``index`` of run ``seed``).

    ``loss_cfg.md_fit_samples`` rows of ``data`` are drawn with a generator of their own, seeded
    from (seed, index), so the batch stream is left alone; the EM's initialisation is seeded from
    (seed, index) too. Every rank of a multi-process run draws the same rows and fits them alone
    (D is the same on every rank), then takes rank 0's mixture, so all ranks hold the same head.
    """
    gen = torch.Generator().manual_seed(_derived_seed(seed, index, 0))
    e = _embed_reals(D, data, loss_cfg.md_fit_samples, batch_size, gen, autocast)
    if e.shape[0] < 2 * D.head.components:
        raise ValueError(f"em_density: only {e.shape[0]} embeddings of real data ({data.shape[0]} samples, packs of "
                         f"{D.pack}) to fit {D.head.components} components; use more data (data.n) or fewer "
                         "components (loss.md_components).")
    gmm, offset = fit_mixture(e, D.head.components, loss_cfg.md_covariance, _derived_seed(seed, index, 1),
                              loss_cfg.md_reg_covar)
    D.head.load_fit(gmm, offset)
    distributed.broadcast_module_(D.head)  # GPU sums need not be bitwise equal across ranks: rank 0's fit wins
