"""Samples of a trained generator as pictures: 2-D scatter plots over the true modes, image grids.

Used by training (periodic and final samples), ``gmmgan sample`` and ``gmmgan eval``. Samples are
drawn from fresh generators seeded by the caller, so drawing them never disturbs training's RNGs.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from gmmgan.priors import GMMRegularizedPrior, Prior

__all__ = ["generate", "image_grid", "plot_points", "save_image_grid", "write_samples"]


def plot_points(path: str | Path, points: torch.Tensor, means=None, title: str = "") -> None:
    """Scatter plot of 2-D samples (blue) over the true mode centres (red crosses), as a PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    p = points.detach().float().cpu().numpy()
    ax.scatter(p[:, 0], p[:, 1], s=2, alpha=0.5, color="tab:blue", label="generated")
    if means is not None:
        m = torch.as_tensor(means).cpu().numpy()
        ax.scatter(m[:, 0], m[:, 1], s=40, marker="x", color="tab:red", label="true modes")
        pad = 0.25 * float(m.max() - m.min()) + 0.1
        ax.set_xlim(m[:, 0].min() - pad, m[:, 0].max() + pad)
        ax.set_ylim(m[:, 1].min() - pad, m[:, 1].max() + pad)
    ax.set_aspect("equal")
    ax.set_title(title, fontsize=9)
    ax.legend(loc="upper right", fontsize=7)
    fig.tight_layout()
    fig.savefig(path)


def save_image_grid(path: str | Path, images: torch.Tensor, nrow: int | None = None) -> None:
    """Save images (N, C, H, W) in [-1, 1] (C = 1 or 3) as one PNG grid with 2-pixel gaps."""
    from PIL import Image

    from gmmgan.data import from_unit_range

    n, c, h, w = images.shape
    if c not in (1, 3):
        raise ValueError(f"images need 1 or 3 channels to be saved as PNG, got {c}.")
    nrow = nrow or math.ceil(math.sqrt(n))
    ncol = math.ceil(n / nrow)
    grid = torch.zeros(c, ncol * (h + 2), nrow * (w + 2), dtype=torch.uint8)
    x = from_unit_range(images.detach().float().cpu())
    for i in range(n):
        r, q = divmod(i, nrow)
        grid[:, r * (h + 2) + 1 : r * (h + 2) + 1 + h, q * (w + 2) + 1 : q * (w + 2) + 1 + w] = x[i]
    arr = grid[0].numpy() if c == 1 else grid.permute(1, 2, 0).numpy()
    Image.fromarray(arr).save(path)


@torch.no_grad()
def generate(G: nn.Module, prior: Prior, n: int, seed: int, device, component=None, batch: int = 2500) -> torch.Tensor:
    """n samples of G from a fresh generator seeded with ``seed`` (leaves training RNGs untouched)."""
    gen = torch.Generator(device=device).manual_seed(seed)
    out = [G(prior.sample(min(batch, n - i), gen, component)).float() for i in range(0, n, batch)]
    return torch.cat(out)


def image_grid(path: Path, G, prior: Prior, seed: int, device) -> None:
    """64 fixed-z images; with a mixture prior of 2..16 components, one row of 8 per component."""
    k = prior.n_components
    if 2 <= k <= 16 and not isinstance(prior, GMMRegularizedPrior):
        x = torch.cat([generate(G, prior, 8, seed + c, device, component=c) for c in range(k)])
    else:
        x = generate(G, prior, 64, seed, device)
    save_image_grid(path, x, nrow=8)


def write_samples(path: Path, G, prior, data, seed: int, device, kimg: float, n_points: int) -> None:
    if "spec" in data.info:
        plot_points(path, generate(G, prior, n_points, seed, device), data.info["means"],
                    f"{data.name}, {kimg:.1f} kimg")
    else:
        image_grid(path, G, prior, seed, device)
