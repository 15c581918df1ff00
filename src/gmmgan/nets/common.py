"""Pieces shared by the architectures: DCGAN weight init, spectral norm, PacGAN packing."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import _SpectralNorm

__all__ = ["dcgan_init_", "apply_spectral_norm_", "pack_samples", "count_parameters"]


@torch.no_grad()
def dcgan_init_(module: nn.Module, std: float = 0.02) -> nn.Module:
    """DCGAN init in place: conv/linear weights ~ N(0, std), BatchNorm weights ~ N(1, std), biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.normal_(m.weight, 1.0, std)
            nn.init.zeros_(m.bias)
    return module


class _StackableSpectralNorm(_SpectralNorm):
    """torch's spectral-norm parametrization, with its power iteration written without ``out=``.

    The same arithmetic and the same state-dict names (``parametrizations.weight.original``,
    ``..._u``, ``..._v``), but ``torch.func.vmap`` can run it, which a seed sweep needs
    (:mod:`gmmgan.gan.stacked`): vmap has no batching rule for the ``out=`` division torch uses.
    """

    @torch.autograd.no_grad()
    def _power_method(self, weight_mat: torch.Tensor, n_power_iterations: int) -> None:
        for _ in range(n_power_iterations):
            self._u.copy_(F.normalize(torch.mv(weight_mat, self._v), dim=0, eps=self.eps))
            self._v.copy_(F.normalize(torch.mv(weight_mat.H, self._u), dim=0, eps=self.eps))


def apply_spectral_norm_(module: nn.Module) -> nn.Module:
    """Wrap every Conv/ConvTranspose/Linear weight of ``module`` in spectral normalisation, in place.

    Apply after :func:`dcgan_init_`: the parametrization then normalises the initialised weights.
    """
    targets = [m for m in module.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))]
    for m in targets:
        # ConvTranspose2d stores weights as (in, out, kh, kw); its output dimension is 1.
        dim = 1 if isinstance(m, nn.ConvTranspose2d) else 0
        parametrize.register_parametrization(m, "weight", _StackableSpectralNorm(m.weight, 1, dim, 1e-12))
    return module


def pack_samples(x: torch.Tensor, pack: int) -> torch.Tensor:
    """Group consecutive samples into PacGAN packs, concatenated along the feature/channel dim.

    Parameters
    ----------
    x : Tensor of shape (N, D) or (N, C, H, W)
        N must be a multiple of ``pack``.
    pack : int

    Returns
    -------
    Tensor of shape (N // pack, pack * D) or (N // pack, pack * C, H, W)
        Pack i holds samples i*pack .. i*pack + pack - 1, in order.
    """
    if pack < 1:
        raise ValueError(f"pack must be >= 1, got {pack}.")
    if x.ndim < 2:
        raise ValueError(f"x must have shape (N, D) or (N, C, H, W), got {tuple(x.shape)}.")
    n = x.shape[0]
    if n % pack:
        raise ValueError(
            f"batch of {n} samples cannot be split into packs of {pack}; use a batch size that is a "
            f"multiple of pack (e.g. {max(pack, n - n % pack)})."
        )
    if pack == 1:
        return x
    return x.reshape(n // pack, pack * x.shape[1], *x.shape[2:])


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
