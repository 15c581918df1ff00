"""Loading a trained generator, drawing samples from it, and writing them as pictures (2-D plots, image grids).

Used by training (periodic and final samples), ``gmmgan sample`` and ``gmmgan eval``. Samples are
drawn from fresh generators seeded by the caller, so drawing them never disturbs training's RNGs.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from gmmgan.data.toy import toy_spec
from gmmgan.gan.checkpoint import load_snapshot
from gmmgan.gan.config import config_from_dict
from gmmgan.gan.networks import build_networks
from gmmgan.gan.priors import GMMRegularizedPrior, Prior, build_prior
from gmmgan.plotting.samples import plot_points, save_image_grid

__all__ = ["generate", "generate_blocks", "image_grid", "load_generator", "write_samples"]


def load_generator(run: str | Path, device="cpu") -> tuple[nn.Module, Prior, dict]:
    """(EMA generator in eval mode, prior, metadata) from a run folder or a ``generator.safetensors``."""
    g_state, p_state, meta = load_snapshot(run)
    cfg = config_from_dict(meta["config"])
    shape = tuple(meta["data_shape"])
    try:
        prior = build_prior(cfg.prior, shape, cfg.seed)
        prior.load_state_dict(p_state)
        G, _ = build_networks(cfg, shape, prior.z_dim)
        G.load_state_dict(g_state)
    except (RuntimeError, KeyError) as e:  # weights that do not fit the config stored beside them
        raise ValueError(
            f"the generator snapshot in '{run}' is corrupt: its weights do not fit its own config "
            f"({str(e).splitlines()[0]}). Sample from another snapshot or retrain the run."
        ) from None
    return G.to(device).eval().requires_grad_(False), prior.to(device).requires_grad_(False), meta


@torch.no_grad()
def generate_blocks(G: nn.Module, prior: Prior, n: int, seed: int, device, component=None,
                    batch: int = 2500) -> Iterator[torch.Tensor]:
    """The n samples of :func:`generate`, as blocks of ``batch`` rows (the last may be shorter), on ``device``.

    For outputs larger than memory: a caller that writes each block away holds one block at a
    time. The samples are those of ``generate`` with the same arguments, whatever is done between blocks.
    """
    gen = torch.Generator(device=device).manual_seed(seed)
    for i in range(0, n, batch):
        yield G(prior.sample(min(batch, n - i), gen, component)).float()


def generate(G: nn.Module, prior: Prior, n: int, seed: int, device, component=None, batch: int = 2500) -> torch.Tensor:
    """n samples of G from a fresh generator seeded with ``seed`` (leaves training RNGs untouched)."""
    return torch.cat(list(generate_blocks(G, prior, n, seed, device, component, batch)))


def image_grid(path: Path, G, prior: Prior, seed: int, device) -> None:
    """64 fixed-z images; with a mixture prior of 2..16 components, one row of 8 per component."""
    k = prior.n_components
    if 2 <= k <= 16 and not isinstance(prior, GMMRegularizedPrior):
        x = torch.cat([generate(G, prior, 8, seed + c, device, component=c) for c in range(k)])
    else:
        x = generate(G, prior, 64, seed, device)
    save_image_grid(path, x, nrow=8)


def write_samples(path: Path, G, prior, data, seed: int, device, kimg: float, n_points: int) -> None:
    """The sample picture of training at ``kimg``: ``n_points`` samples over the true modes (2-D), else a grid."""
    spec = toy_spec(data.name)
    if spec is not None:
        plot_points(path, generate(G, prior, n_points, seed, device), spec.means,
                    f"{data.name}, {kimg:.1f} kimg")
    else:
        image_grid(path, G, prior, seed, device)
