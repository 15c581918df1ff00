"""Pictures of generated samples: 2-D scatter plots over the true modes, image grids as PNG.

Uses matplotlib's object-oriented API with the Agg canvas (no pyplot) for scatter plots and Pillow
for image grids, so both work on headless machines.
"""

from __future__ import annotations

import math
from functools import partial
from pathlib import Path

import torch

from gmmgan._files import atomic_write
from gmmgan.plotting._save import image_format, save_figure

__all__ = ["plot_comparison", "plot_points", "save_image_grid"]


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
    save_figure(fig, path)


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
    image = Image.fromarray(arr)
    atomic_write(path, partial(image.save, format=image_format(path)))


def plot_comparison(path: str | Path, panels: list[tuple[str, torch.Tensor]], means=None, suptitle: str = "") -> None:
    """2-D samples of several generators side by side, each over the true mode centres, as one PNG.

    ``panels`` is a list of (title, points (N, 2)); all panels share the axes' limits so that the
    spread of the samples compares at a glance.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.2 * len(panels), 4.6), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    m = None if means is None else torch.as_tensor(means).cpu().numpy()
    for ax, (title, points) in zip(axes, panels):
        p = points.detach().float().cpu().numpy()
        # Open circles under the samples: a generator that hits a mode exactly must not hide behind it.
        if m is not None:
            ax.scatter(m[:, 0], m[:, 1], s=90, marker="o", facecolors="none", edgecolors="tab:red",
                       linewidths=1.0, label="true modes", zorder=1)
        ax.scatter(p[:, 0], p[:, 1], s=2, alpha=0.4, color="tab:blue", label="generated", zorder=2)
        if m is not None:
            pad = 0.25 * float(m.max() - m.min()) + 0.1
            ax.set_xlim(m[:, 0].min() - pad, m[:, 0].max() + pad)
            ax.set_ylim(m[:, 1].min() - pad, m[:, 1].max() + pad)
        ax.set_aspect("equal")
        ax.set_title(title, fontsize=9)
        ax.legend(loc="upper right", fontsize=7)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)
