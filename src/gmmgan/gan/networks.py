"""The generator and discriminator a training config asks for, for samples of a given shape.

Training builds its nets here, and so does :func:`gmmgan.gan.sampling.load_generator` when it
rebuilds a generator from a snapshot: both must build exactly the same architecture.
"""

from __future__ import annotations

from torch import nn

from gmmgan.gan.config import TrainConfig
from gmmgan.gan.density_head import FittedMixtureHead, HeadedDiscriminator
from gmmgan.gan.mixture_density import SimplexMixtureHead
from gmmgan.nets import DiscriminatorConfig, GeneratorConfig, build_discriminator, build_generator

__all__ = ["build_networks"]


def build_networks(cfg: TrainConfig, data_shape: tuple[int, ...], z_dim: int) -> tuple[nn.Module, nn.Module]:
    """G and D for samples of ``data_shape`` (MLP for vectors, DCGAN for square images).

    D ends in one logit, or in ``loss.md_dim`` units (an embedding) for ``loss.kind=mixture_density``; for
    ``loss.kind=em_density`` that embedding net is the body of a
    :class:`~gmmgan.gan.density_head.HeadedDiscriminator`, whose mixture head makes it a logit again, and
    so it is for ``mixture_density`` with ``loss.md_learnable`` (a
    :class:`~gmmgan.gan.mixture_density.SimplexMixtureHead`, whose output is the score log p)."""
    n = cfg.nets
    d_out = cfg.loss.md_dim if cfg.loss.kind in ("mixture_density", "em_density") else 1
    arch = n.arch if n.arch != "auto" else ("mlp" if len(data_shape) == 1 else "dcgan")
    if arch == "mlp":
        if len(data_shape) != 1:
            raise ValueError(f"nets.arch=mlp needs vector data (N, D) but samples have shape {data_shape}; use dcgan.")
        g = GeneratorConfig("mlp", z_dim=z_dim, out_dim=data_shape[0], width=n.g_width, width_mult=n.g_width_mult,
                            n_layers=n.g_layers, batch_norm=n.g_batch_norm, spectral_norm=n.g_spectral_norm)
        d = DiscriminatorConfig("mlp", in_dim=data_shape[0], width=n.d_width, width_mult=n.d_width_mult,
                                n_layers=n.d_layers, spectral_norm=n.d_spectral_norm, pack=n.pack,
                                leaky_slope=n.leaky_slope, out_dim=d_out)
    else:
        if len(data_shape) != 3 or data_shape[1] != data_shape[2]:
            raise ValueError(f"nets.arch=dcgan needs square images (N, C, H, H) but samples have shape {data_shape}.")
        c, r = data_shape[0], data_shape[1]
        g = GeneratorConfig("dcgan", z_dim=z_dim, channels=c, resolution=r, width=n.g_width,
                            width_mult=n.g_width_mult, spectral_norm=n.g_spectral_norm)
        d = DiscriminatorConfig("dcgan", channels=c, resolution=r, width=n.d_width, width_mult=n.d_width_mult,
                                batch_norm=n.d_batch_norm, spectral_norm=n.d_spectral_norm, pack=n.pack,
                                leaky_slope=n.leaky_slope, out_dim=d_out)
    G, D = build_generator(g), build_discriminator(d)  # in this order: both draw their init from the global RNG
    loss = cfg.loss
    if loss.kind == "em_density":
        k = loss.md_components or loss.md_dim + 1
        D = HeadedDiscriminator(D, FittedMixtureHead(loss.md_dim, k))
    elif loss.kind == "mixture_density" and loss.md_learnable:  # the head draws nothing from the RNG
        D = HeadedDiscriminator(D, SimplexMixtureHead(loss.md_dim, loss.md_components, loss.md_sigma,
                                                      loss.md_distance))
    return G, D
