"""Random views of digit-like images for contrastive training (:mod:`gmmgan.gan.contrastive`).

A contrastive encoder learns what two random views of one image share and what tells them from
the other images' views; what the views change is what it learns to ignore. For handwritten digits
the changes that keep the class are the ones a pen makes: a slightly rotated, scaled, slanted or
shifted digit, a wobblier stroke, a noisier scan. Flips are left out of the ``digits`` views (a mirrored 2
is no digit, a flipped 6 is a 9; the ``clothing`` preset mirrors, see :data:`VIEW_PRESETS`), and so are colour changes (MNIST has none; the channels of Stacked MNIST are
three digits, so all three get the same warp).

:func:`random_views` draws, per image, one affine map (rotation, scale, shear, translation) and one
smooth random displacement field (an elastic distortion, Simard et al. 2003, made cheap: a coarse
grid of random offsets upsampled bilinearly), composes them into a single sampling grid and reads
the image through it with ``grid_sample``; then it adds a little Gaussian pixel noise. The whole
batch is one call (no Python loop over images), on the images' device.

The uncovered border is filled with the background: images are in [-1, 1] with the background at
-1, and ``grid_sample`` pads with zeros, so the image is shifted to [0, 2] for the sampling and back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["VIEW_PRESETS", "ViewSettings", "random_views"]


@dataclass(frozen=True)
class ViewSettings:
    """How far :func:`random_views` moves an image (each drawn uniformly per image in +-the value).

    rotation : degrees. scale : relative size change (0.15: 0.85x to 1.15x). shear : degrees of
    horizontal slant. translate : fraction of the image side. elastic : displacement of the coarse
    field's points, as a fraction of the image side. elastic_grid : points per side of that field.
    noise : standard deviation of the added pixel noise (images in [-1, 1]).
    hflip : mirror half of the views left to right (for clothing, never for digits).
    intensity : relative change of the ink (or fabric) brightness against the background: the
    foreground is scaled by 1 +- intensity, the background stays at -1 (0.3: 0.7x to 1.3x).
    erase : side of a square cut out of each view at a random place and filled with background, as a
    fraction of the image side (cutout, DeVries and Taylor 2017; 0: none).
    """

    rotation: float = 15.0
    scale: float = 0.15
    shear: float = 15.0
    translate: float = 0.1
    elastic: float = 0.03
    elastic_grid: int = 4
    noise: float = 0.1
    hflip: bool = False
    intensity: float = 0.0
    erase: float = 0.0


# prior.embed_views: the changes that keep the class. A mirrored shirt is a shirt, a mirrored 2 is no
# digit; clothing is photographed upright, so it gets small rotations and slants and no wobble, and
# fabrics differ in brightness and the class shows in parts (a collar, a heel), so it gets brighter or
# darker views with a square cut out (Fashion-MNIST, full data, tuning seeds 100-101: test clustering
# 0.661 against 0.561 without the two; docs/results.md).
VIEW_PRESETS = {
    "digits": ViewSettings(),
    "clothing": ViewSettings(rotation=5.0, scale=0.2, shear=5.0, translate=0.1, elastic=0.0, noise=0.1, hflip=True,
                             intensity=0.4, erase=0.35),
}


def _uniform(n: int, half_width: float, generator: torch.Generator, device) -> torch.Tensor:
    return (torch.rand(n, generator=generator, device=device) * 2 - 1) * half_width


def _erase(views: torch.Tensor, side: float, generator: torch.Generator) -> torch.Tensor:
    """Each view with one square of ``side`` x the image side set to the background (-1)."""
    n, _, h, w = views.shape
    dev = views.device
    sh, sw = max(1, round(side * h)), max(1, round(side * w))
    top = (torch.rand(n, generator=generator, device=dev) * (h - sh + 1)).long()
    left = (torch.rand(n, generator=generator, device=dev) * (w - sw + 1)).long()
    rows, cols = torch.arange(h, device=dev), torch.arange(w, device=dev)
    inside_r = (rows[None] >= top[:, None]) & (rows[None] < top[:, None] + sh)
    inside_c = (cols[None] >= left[:, None]) & (cols[None] < left[:, None] + sw)
    hole = (inside_r[:, :, None] & inside_c[:, None, :])[:, None]
    return views.masked_fill(hole, -1.0)


def random_views(x: torch.Tensor, generator: torch.Generator, settings: ViewSettings = ViewSettings()) -> torch.Tensor:
    """One random view of each image of ``x`` (N, C, H, W) in [-1, 1]; same shape, about [-1, 1].

    Parameters
    ----------
    x : Tensor (N, C, H, W)
    generator : torch.Generator
        On ``x``'s device; every random number comes from it, so a seeded generator gives the same
        views of the same images (the global RNG is left alone).
    settings : ViewSettings

    Returns
    -------
    Tensor (N, C, H, W), in ``x``'s dtype.
    """
    n, _, h, w = x.shape
    dev, s = x.device, settings
    angle = _uniform(n, math.radians(s.rotation), generator, dev)
    scale = 1 + _uniform(n, s.scale, generator, dev)
    shear = _uniform(n, math.radians(s.shear), generator, dev)
    shift = torch.stack([_uniform(n, 2 * s.translate, generator, dev) for _ in range(2)], 1)  # grid units: side = 2
    # The sampling grid maps output to input coordinates: the inverse of "rotate, slant, scale", so a
    # positive angle turns the digit, not the page. Scale and shear act in the image's own frame.
    cos, sin, tan = torch.cos(angle), torch.sin(angle), torch.tan(shear)
    rot = torch.stack([torch.stack([cos, -sin], 1), torch.stack([sin, cos], 1)], 1)
    slant = torch.eye(2, device=dev).repeat(n, 1, 1)
    slant[:, 0, 1] = tan
    forward = rot @ slant * scale[:, None, None]
    if s.hflip:  # x -> -x for half of the images (drawn after the affine ranges)
        flip = torch.where(torch.rand(n, generator=generator, device=dev) < 0.5, -1.0, 1.0)
        forward = forward * torch.stack([flip, torch.ones_like(flip)], 1)[:, None, :]
    theta = torch.cat([torch.linalg.inv(forward), shift[:, :, None]], 2)
    grid = F.affine_grid(theta, [n, 1, h, w], align_corners=False)
    if s.elastic > 0:
        g = s.elastic_grid
        coarse = (torch.rand(n, 2, g, g, generator=generator, device=dev) * 2 - 1) * (2 * s.elastic)
        grid = grid + F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=True).permute(0, 2, 3, 1)
    views = F.grid_sample(x.float() + 1, grid.float(), mode="bilinear", padding_mode="zeros", align_corners=False) - 1
    if s.intensity > 0:  # about the background (-1), so only the foreground gets brighter or darker
        gain = 1 + _uniform(n, s.intensity, generator, dev)
        views = (views + 1) * gain[:, None, None, None] - 1
    if s.erase > 0:
        views = _erase(views, s.erase, generator)
    if s.noise > 0:
        views = views + s.noise * torch.randn(views.shape, generator=generator, device=dev)
    return views.to(x.dtype)
