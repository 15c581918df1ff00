"""Stacked MNIST (VEEGAN / PacGAN setting, docs/protocols.md, section 'Stacked MNIST').

Each image stacks 3 MNIST digits, drawn independently and uniformly (with replacement) from the
70,000 MNIST train+test images, as the 3 channels of one 28x28 image. The digit triple (a, b, c)
of channels (0, 1, 2) is the image's mode, ``100*a + 10*b + c``: 1,000 possible modes.
"""

from __future__ import annotations

import os

import torch

from gmmgan.data.mnist import load_mnist

__all__ = ["stack_digits", "load_stacked_mnist", "mode_ids", "N_STACKED_DEFAULT"]

N_STACKED_DEFAULT = 128_000


def mode_ids(triples: torch.Tensor) -> torch.Tensor:
    """Mode id ``100*a + 10*b + c`` of digit triples of shape (N, 3); int64 (N,) in 0..999."""
    if triples.ndim != 2 or triples.shape[1] != 3:
        raise ValueError(f"triples must have shape (N, 3), got {tuple(triples.shape)}.")
    t = triples.long()
    return 100 * t[:, 0] + 10 * t[:, 1] + t[:, 2]


def stack_digits(
    images: torch.Tensor, labels: torch.Tensor, n: int = N_STACKED_DEFAULT, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Build ``n`` stacked images from single-channel digit images.

    Parameters
    ----------
    images : uint8 Tensor of shape (M, 28, 28)
        Source digits (for the protocol: MNIST train+test, M = 70,000).
    labels : int Tensor of shape (M,)
    n : int, default=128000
    seed : int, default=0
        The same seed always gives the same dataset.

    Returns
    -------
    stacked : uint8 Tensor of shape (n, 3, 28, 28)
    triples : int64 Tensor of shape (n, 3)
        The digit of each channel; the mode is ``mode_ids(triples)``.
    """
    if images.ndim != 3:
        raise ValueError(f"images must have shape (M, H, W), got {tuple(images.shape)}.")
    if labels.shape != (images.shape[0],):
        raise ValueError(f"labels must have shape ({images.shape[0]},), got {tuple(labels.shape)}.")
    if images.shape[0] == 0:
        raise ValueError("images is empty; load MNIST first (load_mnist(root, 'all')).")
    if not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be a non-negative int, got {n!r}.")
    g = torch.Generator().manual_seed(int(seed))
    idx = torch.randint(0, images.shape[0], (n, 3), generator=g)
    # images[idx] is (n, 3, H, W): channel c of sample i is digit image idx[i, c].
    return images[idx], labels.long()[idx]


def load_stacked_mnist(
    root: str | os.PathLike, n: int = N_STACKED_DEFAULT, seed: int = 0, *, verify: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stacked MNIST from the MNIST IDX files under ``root`` (train+test pooled, 70,000 digits).

    Returns ``(uint8 (n, 3, 28, 28), int64 triples (n, 3))``; see :func:`stack_digits`.
    """
    images, labels = load_mnist(root, "all", "mnist", verify=verify)
    return stack_digits(images, labels, n, seed)
