"""Generator / discriminator architectures: MLP for 2-D data, DCGAN for 28/32 px images.

Discriminators return one logit per sample (per pack with PacGAN packing), shape (N // pack,).
"""

from gmmgan.nets.common import apply_spectral_norm_, count_parameters, dcgan_init_, pack_samples
from gmmgan.nets.dcgan import DCGANDiscriminator, DCGANGenerator
from gmmgan.nets.factory import (
    ARCHS,
    DiscriminatorConfig,
    GeneratorConfig,
    build_discriminator,
    build_generator,
)
from gmmgan.nets.mlp import MLPDiscriminator, MLPGenerator

__all__ = [
    "GeneratorConfig", "DiscriminatorConfig", "build_generator", "build_discriminator", "ARCHS",
    "MLPGenerator", "MLPDiscriminator", "DCGANGenerator", "DCGANDiscriminator",
    "pack_samples", "dcgan_init_", "apply_spectral_norm_", "count_parameters",
]
