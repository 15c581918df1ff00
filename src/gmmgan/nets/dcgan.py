"""DCGAN generator and discriminator for 28x28 (or 32x32) images with 1 or 3 channels.

G: z -> Linear -> (4w, R/4, R/4) -> ConvT -> (2w, R/2, R/2) -> ConvT -> (C, R, R), tanh;
   BatchNorm + ReLU after every layer but the last.
D: Conv stride 2 -> (w, R/2) -> Conv stride 2 -> (2w, R/4) -> Conv stride 2 -> (4w, ceil(R/8))
   -> Linear -> logit; LeakyReLU(0.2), optional BatchNorm (not on the first layer, as in DCGAN).
``w = round(width * width_mult)``: ``width_mult=0.5`` gives a net with about 1/4 of the parameters,
the "D at 1/4 the size of G" setting.
"""

from __future__ import annotations

import torch
from torch import nn

from gmmgan.nets.common import apply_spectral_norm_, dcgan_init_, pack_samples
from gmmgan.nets.mlp import _check_positive

__all__ = ["DCGANGenerator", "DCGANDiscriminator"]


def _channels(width: int, width_mult: float) -> int:
    w = round(width * width_mult)
    if w < 1:
        raise ValueError(f"width * width_mult = {width * width_mult} rounds to < 1 channel; increase them.")
    return w


def _check_resolution(resolution: int) -> None:
    if not isinstance(resolution, int) or resolution < 8 or resolution % 4:
        raise ValueError(f"resolution must be a multiple of 4 and >= 8 (e.g. 28 or 32), got {resolution!r}.")


class DCGANGenerator(nn.Module):
    """z (N, z_dim) -> images (N, channels, resolution, resolution) in [-1, 1].

    Parameters
    ----------
    z_dim : int, default=100
    channels : int, default=1
    resolution : int, default=28
    width : int, default=64
    width_mult : float, default=1.0
    spectral_norm : bool, default=False
    """

    def __init__(self, z_dim: int = 100, channels: int = 1, resolution: int = 28, width: int = 64,
                 width_mult: float = 1.0, spectral_norm: bool = False):
        super().__init__()
        _check_positive(z_dim=z_dim, channels=channels, width=width)
        _check_resolution(resolution)
        w = _channels(width, width_mult)
        self.z_dim, self.channels, self.resolution = z_dim, channels, resolution
        s = resolution // 4
        self.fc = nn.Sequential(nn.Linear(z_dim, 4 * w * s * s, bias=False), nn.BatchNorm1d(4 * w * s * s), nn.ReLU())
        self.start = (4 * w, s, s)
        self.conv = nn.Sequential(
            nn.ConvTranspose2d(4 * w, 2 * w, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * w), nn.ReLU(),
            nn.ConvTranspose2d(2 * w, channels, 4, 2, 1), nn.Tanh(),
        )
        dcgan_init_(self)
        if spectral_norm:
            apply_spectral_norm_(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"expected z of shape (N, {self.z_dim}), got {tuple(z.shape)}.")
        return self.conv(self.fc(z).view(z.shape[0], *self.start))


class DCGANDiscriminator(nn.Module):
    """images (N, channels, R, R) -> logits (N // pack,), or embeddings (N // pack, out_dim) when out_dim > 1.

    Parameters
    ----------
    channels : int, default=1
    resolution : int, default=28
    width : int, default=64
    width_mult : float, default=1.0
    batch_norm : bool, default=True
        BatchNorm on the 2nd and 3rd conv layers. Turn off with spectral_norm or gradient penalties,
        which assume each sample's logit depends on that sample only.
    spectral_norm : bool, default=False
    pack : int, default=1
        PacGAN: ``pack`` consecutive samples are concatenated along channels and judged together.
    leaky_slope : float, default=0.2
    out_dim : int, default=1
        Outputs per pack: 1 is a logit (squeezed), more an embedding (Mixture Density GAN).
    """

    def __init__(self, channels: int = 1, resolution: int = 28, width: int = 64, width_mult: float = 1.0,
                 batch_norm: bool = True, spectral_norm: bool = False, pack: int = 1, leaky_slope: float = 0.2,
                 out_dim: int = 1):
        super().__init__()
        _check_positive(channels=channels, width=width, pack=pack, out_dim=out_dim)
        _check_resolution(resolution)
        w = _channels(width, width_mult)
        self.channels, self.resolution, self.pack, self.out_dim = channels, resolution, pack, out_dim

        def block(cin: int, cout: int, k: int, bn: bool) -> list[nn.Module]:
            layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, 2, 1, bias=not bn)]
            if bn:
                layers.append(nn.BatchNorm2d(cout))
            return layers + [nn.LeakyReLU(leaky_slope)]

        self.conv = nn.Sequential(
            *block(channels * pack, w, 4, False),
            *block(w, 2 * w, 4, batch_norm),
            *block(2 * w, 4 * w, 3, batch_norm),
        )
        s = (resolution // 4 + 1) // 2  # R/4 after two k4 s2 p1 convs, then k3 s2 p1: ceil(R/8)
        self.fc = nn.Linear(4 * w * s * s, out_dim)
        dcgan_init_(self)
        if spectral_norm:
            apply_spectral_norm_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        expected = (self.channels, self.resolution, self.resolution)
        if x.ndim != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"expected images of shape (N, {', '.join(map(str, expected))}), got {tuple(x.shape)}.")
        h = self.conv(pack_samples(x, self.pack))
        out = self.fc(h.flatten(1))
        return out.squeeze(1) if self.out_dim == 1 else out
