"""Typed configs and factories: ``build_generator(cfg)`` / ``build_discriminator(cfg)``.

One config class per role; ``arch`` picks the architecture and the fields that do not apply to it
are ignored (documented per field). ``width=None`` means the architecture's reference width:
MLP G 400, MLP D 200 (PacGAN), DCGAN 64.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from torch import nn

from gmmgan.nets.dcgan import DCGANDiscriminator, DCGANGenerator
from gmmgan.nets.mlp import MLPDiscriminator, MLPGenerator

__all__ = ["GeneratorConfig", "DiscriminatorConfig", "build_generator", "build_discriminator", "ARCHS"]

ARCHS = ("mlp", "dcgan")


class _FromDict:
    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        """Build from a plain dict (e.g. a YAML section); unknown keys are an error."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} keys {unknown}; valid keys: {sorted(names)}.")
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __post_init__(self):
        if self.arch not in ARCHS:
            raise ValueError(f"arch must be one of {ARCHS}, got {self.arch!r}.")


@dataclass
class GeneratorConfig(_FromDict):
    """Generator architecture.

    arch : 'mlp' (2-D data) or 'dcgan' (images).
    z_dim : latent size (2 for the ring/grid protocol, 100 for Stacked MNIST).
    out_dim : MLP only, data dimension.
    channels, resolution : DCGAN only, output image shape.
    width : hidden units (MLP) or base channels (DCGAN); None = reference width.
    width_mult : multiplies width.
    n_layers : MLP only, hidden layers.
    batch_norm : MLP only (DCGAN G always uses BatchNorm).
    spectral_norm : spectral normalisation on every weight.
    """

    arch: str = "dcgan"
    z_dim: int = 100
    out_dim: int = 2
    channels: int = 1
    resolution: int = 28
    width: int | None = None
    width_mult: float = 1.0
    n_layers: int = 4
    batch_norm: bool = False
    spectral_norm: bool = False


@dataclass
class DiscriminatorConfig(_FromDict):
    """Discriminator architecture.

    arch : 'mlp' or 'dcgan'.
    in_dim : MLP only, data dimension.
    channels, resolution : DCGAN only, input image shape.
    width, width_mult : as for the generator; width_mult=0.5 makes a DCGAN D about 1/4 the size.
    n_layers : MLP only.
    batch_norm : DCGAN only.
    spectral_norm : spectral normalisation on every weight.
    pack : PacGAN packing degree (batch size must be a multiple of it).
    leaky_slope : LeakyReLU negative slope.
    out_dim : outputs per sample (pack): 1 = a logit, shape (N // pack,); more = an embedding,
        shape (N // pack, out_dim) (the Mixture Density GAN, ``loss.kind=mixture_density``).
    """

    arch: str = "dcgan"
    in_dim: int = 2
    channels: int = 1
    resolution: int = 28
    width: int | None = None
    width_mult: float = 1.0
    n_layers: int = 3
    batch_norm: bool = True
    spectral_norm: bool = False
    pack: int = 1
    leaky_slope: float = 0.2
    out_dim: int = 1


def build_generator(cfg: GeneratorConfig | dict) -> nn.Module:
    """The generator described by ``cfg`` (a GeneratorConfig or a dict of its fields)."""
    if isinstance(cfg, dict):
        cfg = GeneratorConfig.from_dict(cfg)
    if cfg.arch == "mlp":
        width = round((cfg.width or 400) * cfg.width_mult)
        return MLPGenerator(cfg.z_dim, cfg.out_dim, width, cfg.n_layers, cfg.batch_norm, cfg.spectral_norm)
    return DCGANGenerator(cfg.z_dim, cfg.channels, cfg.resolution, cfg.width or 64, cfg.width_mult, cfg.spectral_norm)


def build_discriminator(cfg: DiscriminatorConfig | dict) -> nn.Module:
    """The discriminator described by ``cfg`` (a DiscriminatorConfig or a dict of its fields)."""
    if isinstance(cfg, dict):
        cfg = DiscriminatorConfig.from_dict(cfg)
    if cfg.arch == "mlp":
        width = round((cfg.width or 200) * cfg.width_mult)
        return MLPDiscriminator(cfg.in_dim, width, cfg.n_layers, cfg.pack, cfg.leaky_slope, cfg.spectral_norm,
                               cfg.out_dim)
    return DCGANDiscriminator(cfg.channels, cfg.resolution, cfg.width or 64, cfg.width_mult, cfg.batch_norm,
                              cfg.spectral_norm, cfg.pack, cfg.leaky_slope, cfg.out_dim)
