"""A folder of images (png/jpg/...) as one uint8 tensor, resized and center-cropped.

Pillow is needed (it comes with matplotlib). Images are sorted by relative path so the tensor's
order does not depend on the file system.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

__all__ = ["load_image_folder", "IMAGE_EXTENSIONS"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def _resize_center_crop(img, resolution: int):
    from PIL import Image

    w, h = img.size
    scale = resolution / min(w, h)
    # Resize so the shorter side equals resolution, then crop the longer side around the centre.
    nw, nh = max(resolution, round(w * scale)), max(resolution, round(h * scale))
    if (nw, nh) != (w, h):
        img = img.resize((nw, nh), Image.Resampling.BICUBIC if scale > 1 else Image.Resampling.LANCZOS)
    left, top = (nw - resolution) // 2, (nh - resolution) // 2
    return img.crop((left, top, left + resolution, top + resolution))


def load_image_folder(
    path: str | os.PathLike,
    resolution: int,
    *,
    channels: int | None = 3,
    recursive: bool = True,
    max_images: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """Load every image under ``path`` as one tensor.

    Parameters
    ----------
    path : str or PathLike
        Folder of images (searched recursively by default).
    resolution : int
        Output side length; each image is resized (shorter side = resolution) and center-cropped.
    channels : {1, 3} or None, default=3
        1: grayscale ('L'; colour images are converted to luma); 3: RGB (alpha dropped; grey images
        are replicated to three equal channels); None: as the images are, 1 if every image is grey
        (R = G = B in every pixel, e.g. grey PNGs), else 3.
    recursive : bool, default=True
    max_images : int, optional
        Keep only the first ``max_images`` files in sorted order.
    progress : callable, optional
        ``progress(done, total)``: called with 0 once the files are listed, then after every image
        (a progress bar; see :class:`gmmgan.gan.progress.PhaseProgress`).

    Returns
    -------
    images : uint8 Tensor of shape (N, channels, resolution, resolution)

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist or is not a folder.
    ValueError
        If no image file is found, an image cannot be decoded, or arguments are invalid.
    """
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError as e:  # pragma: no cover - pillow ships with matplotlib
        raise ImportError("load_image_folder needs Pillow: pip install pillow") from e
    if channels not in (1, 3, None):
        raise ValueError(f"channels must be 1 (grayscale), 3 (RGB) or None (as the images are), got {channels}.")
    if not isinstance(resolution, int) or resolution < 1:
        raise ValueError(f"resolution must be a positive int, got {resolution!r}.")
    root = Path(path).expanduser()
    if not root.is_dir():
        what = "is not a folder" if root.exists() else "does not exist"
        raise FileNotFoundError(f"Image folder {root} {what}; pass the folder that holds the images.")
    pattern = "**/*" if recursive else "*"
    files = sorted(
        (p for p in root.glob(pattern) if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS),
        key=lambda p: p.relative_to(root).as_posix(),
    )
    if max_images is not None:
        files = files[:max_images]
    if not files:
        raise ValueError(
            f"No image files ({', '.join(IMAGE_EXTENSIONS)}) found in {root}"
            f"{' or its subfolders' if recursive else ' (recursive=False: subfolders not searched)'}."
        )
    mode = "L" if channels == 1 else "RGB"
    out = np.empty((len(files), resolution, resolution, 1 if channels == 1 else 3), dtype=np.uint8)
    if progress is not None:
        progress(0, len(files))
    for i, f in enumerate(files):
        try:
            with Image.open(f) as im:
                im = _resize_center_crop(im.convert(mode), resolution)
                out[i] = np.asarray(im, dtype=np.uint8).reshape(resolution, resolution, out.shape[-1])
        except (UnidentifiedImageError, OSError) as e:
            raise ValueError(f"Cannot read image {f}: {e}. Remove or replace the file.") from e
        if progress is not None:
            progress(i + 1, len(files))
    if channels is None and (out[..., :1] == out[..., 1:]).all():  # every image grey: keep one channel
        out = out[..., :1]
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()
