"""MLP generator and discriminator for 2-D data (the PacGAN ring/grid setting).

PacGAN's reference nets: G with 400 hidden units per layer (ReLU), D with 200 (here LeakyReLU
instead of maxout). Depth is configurable.
"""

from __future__ import annotations

import torch
from torch import nn

from gmmgan.nets.common import apply_spectral_norm_, dcgan_init_, pack_samples

__all__ = ["MLPGenerator", "MLPDiscriminator"]


class MLPGenerator(nn.Module):
    """z (N, z_dim) -> x (N, out_dim), linear output (2-D data is not bounded).

    Parameters
    ----------
    z_dim : int, default=2
    out_dim : int, default=2
    width : int, default=400
        Hidden units per layer.
    n_layers : int, default=4
        Number of hidden layers.
    batch_norm : bool, default=False
        BatchNorm after each hidden linear layer (PacGAN uses it).
    spectral_norm : bool, default=False
    """

    def __init__(self, z_dim: int = 2, out_dim: int = 2, width: int = 400, n_layers: int = 4,
                 batch_norm: bool = False, spectral_norm: bool = False):
        super().__init__()
        _check_positive(z_dim=z_dim, out_dim=out_dim, width=width, n_layers=n_layers)
        self.z_dim, self.out_dim = z_dim, out_dim
        layers: list[nn.Module] = []
        d = z_dim
        for _ in range(n_layers):
            layers.append(nn.Linear(d, width))
            if batch_norm:
                layers.append(nn.BatchNorm1d(width))
            layers.append(nn.ReLU())
            d = width
        layers.append(nn.Linear(d, out_dim))
        self.net = nn.Sequential(*layers)
        dcgan_init_(self)
        if spectral_norm:
            apply_spectral_norm_(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class MLPDiscriminator(nn.Module):
    """x (N, in_dim) -> logits (N // pack,), or embeddings (N // pack, out_dim) when out_dim > 1.

    Parameters
    ----------
    in_dim : int, default=2
    width : int, default=200
    n_layers : int, default=3
    pack : int, default=1
        PacGAN: D judges ``pack`` consecutive samples at once (their features concatenated).
    leaky_slope : float, default=0.2
    spectral_norm : bool, default=False
    out_dim : int, default=1
        Outputs per pack: 1 is a logit (squeezed), more an embedding (Mixture Density GAN).
    """

    def __init__(self, in_dim: int = 2, width: int = 200, n_layers: int = 3, pack: int = 1,
                 leaky_slope: float = 0.2, spectral_norm: bool = False, out_dim: int = 1):
        super().__init__()
        _check_positive(in_dim=in_dim, width=width, n_layers=n_layers, pack=pack, out_dim=out_dim)
        self.in_dim, self.pack, self.out_dim = in_dim, pack, out_dim
        layers: list[nn.Module] = []
        d = in_dim * pack
        for _ in range(n_layers):
            layers += [nn.Linear(d, width), nn.LeakyReLU(leaky_slope)]
            d = width
        layers.append(nn.Linear(d, out_dim))
        self.net = nn.Sequential(*layers)
        dcgan_init_(self)
        if spectral_norm:
            apply_spectral_norm_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 2 or x.shape[1] != self.in_dim:
            raise ValueError(f"expected input of shape (N, {self.in_dim}), got {tuple(x.shape)}.")
        out = self.net(pack_samples(x, self.pack))
        return out.squeeze(1) if self.out_dim == 1 else out


def _check_positive(**kw) -> None:
    for k, v in kw.items():
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"{k} must be a positive int, got {v!r}.")
