"""The GAN application: configs, priors and embeddings, losses, the training loop and its run folder.

``from gmmgan.gan import load_config, train, load_generator`` is the Python training API. The names
are loaded on first use, so importing this package does not import torch.
"""

from __future__ import annotations

from gmmgan._lazy import lazy_exports

_EXPORTS = {
    "TrainConfig": "gmmgan.gan.config",
    "load_config": "gmmgan.gan.config",
    "save_config": "gmmgan.gan.config",
    "train": "gmmgan.gan.training_loop",
    "load_generator": "gmmgan.gan.sampling",
    "TrainingDivergedError": "gmmgan.gan.training_loop",
    "TrainingInterrupted": "gmmgan.gan.training_loop",
    "build_prior": "gmmgan.gan.priors",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
