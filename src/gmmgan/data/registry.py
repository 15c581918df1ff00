"""One entry point for every dataset: ``load_dataset(name, root, split, ...)``.

Images come back as float tensors scaled to [-1, 1] (the range of a tanh generator), shape
(N, C, H, W); 2-D mixtures come back as raw coordinates, shape (N, 2). The whole dataset is one
tensor, meant to be moved to the device once and batched there with :class:`TensorBatcher`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from gmmgan.data.batcher import TensorBatcher
from gmmgan.data.folder import load_image_folder
from gmmgan.data.mnist import limited_subset, load_mnist
from gmmgan.data.stacked import N_STACKED_DEFAULT, load_stacked_mnist
from gmmgan.data.toy import TOY_NAMES, toy_spec

__all__ = ["TensorData", "load_dataset", "DATASET_NAMES", "to_unit_range", "from_unit_range"]

DATASET_NAMES = (
    *TOY_NAMES, "mnist", "fashion-mnist", "mnist-limited", "fashion-mnist-limited", "stacked-mnist", "folder",
)
_TOY_DEFAULT_N = 100_000
_TEST_SEED_OFFSET = 1_000_003  # toy test split: same distribution, disjoint random stream


def to_unit_range(images: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1]."""
    return images.to(dtype) / 127.5 - 1.0


def from_unit_range(x: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] -> uint8 [0, 255] (clamped, rounded); inverse of :func:`to_unit_range`."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


@dataclass
class TensorData:
    """A dataset held as one tensor (plus optional labels), ``torch.utils.data.Dataset``-compatible.

    Attributes
    ----------
    data : Tensor of shape (N, ...)
        float, images in [-1, 1] as (N, C, H, W), 2-D points as (N, 2).
    labels : int64 Tensor of shape (N,) or (N, 3) (Stacked MNIST digit triples), or None
    name : str
    info : dict
        Extra facts, e.g. ``spec`` (the MixtureSpec of a toy dataset, for its true means and sigma).
    """

    data: torch.Tensor
    labels: torch.Tensor | None = None
    name: str = ""
    info: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return self.data.shape[0]

    def __getitem__(self, i):
        return (self.data[i], self.labels[i]) if self.labels is not None else self.data[i]

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of one sample, e.g. (1, 28, 28) or (2,)."""
        return tuple(self.data.shape[1:])

    def to(self, device=None, dtype: torch.dtype | None = None) -> "TensorData":
        labels = self.labels.to(device) if self.labels is not None else None
        return TensorData(self.data.to(device=device, dtype=dtype), labels, self.name, self.info)

    def batcher(
        self, batch_size: int, generator=None, *, drop_last: bool = True, with_labels: bool = False
    ) -> TensorBatcher:
        """A :class:`TensorBatcher` over ``data`` (and ``labels`` if ``with_labels``)."""
        if with_labels and self.labels is None:
            raise ValueError(f"dataset {self.name!r} has no labels; use with_labels=False.")
        src = (self.data, self.labels) if with_labels else self.data
        return TensorBatcher(src, batch_size, generator, drop_last=drop_last)


def _resize(x: torch.Tensor, resolution: int | None) -> torch.Tensor:
    if resolution is None or x.shape[-1] == resolution:
        return x
    if not isinstance(resolution, int) or resolution < 1:
        raise ValueError(f"resolution must be a positive int, got {resolution!r}.")
    # Antialiased bilinear: the usual way to get e.g. 32 px MNIST for a 32 px DCGAN.
    size = (resolution, resolution)
    return F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False).clamp(-1, 1)


def _need_root(name: str, root) -> os.PathLike:
    if root is None:
        raise ValueError(
            f"dataset {name!r} needs root= (the folder holding MNIST/raw or FashionMNIST/raw, or the image folder)."
        )
    return root


def load_dataset(
    name: str,
    root: str | os.PathLike | None = None,
    split: str = "train",
    resolution: int | None = None,
    *,
    n: int | None = None,
    seed: int = 0,
    per_class: int = 50,
    channels: int | None = 3,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    verify: bool = True,
    progress=None,
) -> TensorData:
    """Load a dataset by name as one tensor.

    Parameters
    ----------
    name : str
        'ring', 'grid' (docs/protocols.md, section '2-D mixtures'; ``n`` points, default 100,000); 'mnist', 'fashion-mnist';
        'mnist-limited', 'fashion-mnist-limited' (``per_class`` train images per class, drawn with
        ``seed``); 'stacked-mnist' (``n`` images, default 128,000, from train+test, ``split``
        ignored); 'folder' (every image under ``root``, or the first ``n`` in sorted order; ``channels``
        1, 3 or None = as the images are; needs ``resolution``).
    root : str or PathLike, optional
        Data folder (not needed for ring/grid).
    split : {'train', 'test'}, default='train'
        For ring/grid, 'test' draws from a different random stream.
    resolution : int, optional
        Resize images to resolution x resolution (default: native 28 for MNIST-like data).
    n, seed, per_class, channels : see ``name``.
    device, dtype : where and as what the data tensor is put.
    verify : bool, default=True
        Check MNIST md5s.
    progress : callable, optional
        'folder': ``progress(done, total)`` while the images are read (see :func:`load_image_folder`).

    Returns
    -------
    TensorData
    """
    key = str(name).lower().replace("_", "-")
    if key not in DATASET_NAMES:
        raise ValueError(f"Unknown dataset {name!r}; expected one of {DATASET_NAMES}.")
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}.")
    spec = toy_spec(key)
    if spec is not None:
        s = seed + (_TEST_SEED_OFFSET if split == "test" else 0)
        x, y = spec.sample(_TOY_DEFAULT_N if n is None else n, s, dtype=dtype)
        out = TensorData(x, y, key, {"spec": spec, "means": spec.means, "sigma": spec.sigma})
    elif key == "folder":
        if resolution is None:
            raise ValueError("dataset 'folder' needs resolution= (images are resized and center-cropped to it).")
        imgs = load_image_folder(_need_root(key, root), resolution, channels=channels, max_images=n,
                                 progress=progress)
        out = TensorData(to_unit_range(imgs, dtype), None, key, {"root": str(root)})
    elif key == "stacked-mnist":
        n_images = N_STACKED_DEFAULT if n is None else n
        imgs, triples = load_stacked_mnist(_need_root(key, root), n_images, seed, verify=verify)
        out = TensorData(_resize(to_unit_range(imgs, dtype), resolution), triples, key, {"n_modes": 1000})
    else:
        base = key.removesuffix("-limited")
        imgs, labels = load_mnist(_need_root(key, root), split, base, verify=verify)
        if key.endswith("-limited"):
            imgs, labels = limited_subset(imgs, labels, per_class, seed)
        x = _resize(to_unit_range(imgs[:, None], dtype), resolution)
        out = TensorData(x, labels, key, {"n_classes": 10})
    return out.to(device) if device is not None else out
