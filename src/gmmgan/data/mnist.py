"""MNIST and Fashion-MNIST from the original IDX files, in torchvision's folder layout.

Files are looked for in ``<root>/MNIST/raw/`` (or ``<root>/FashionMNIST/raw/``), then in ``<root>``
itself, either gzip'd (``train-images-idx3-ubyte.gz``) or not (``train-images-idx3-ubyte``). Every
file's md5 is checked against the published value (torchvision's md5 of the .gz files, and the md5
of their decompressed contents for the un-gzipped files), so a wrong or damaged file never trains
a model silently.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from gmmgan.data.idx import md5sum, read_idx

__all__ = ["load_mnist", "limited_subset", "find_raw_files", "DATASETS", "SPLITS"]

# dataset name -> torchvision folder name
DATASETS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}
_NAME_OF = {folder: name for name, folder in DATASETS.items()}
SPLITS = ("train", "test", "all")

_STEMS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", 60000),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", 10000),
}

# (folder, stem) -> (md5 of the .gz file as published by torchvision, md5 of its decompressed bytes)
_MD5 = {
    ("MNIST", "train-images-idx3-ubyte"):
        ("f68b3c2dcbeaaa9fbdd348bbdeb94873", "6bbc9ace898e44ae57da46a324031adb"),
    ("MNIST", "train-labels-idx1-ubyte"):
        ("d53e105ee54ea40749a09fcbcd1e9432", "a25bea736e30d166cdddb491f175f624"),
    ("MNIST", "t10k-images-idx3-ubyte"):
        ("9fb629c4189551a2d022fa330f9573f3", "2646ac647ad5339dbf082846283269ea"),
    ("MNIST", "t10k-labels-idx1-ubyte"):
        ("ec29112dd5afa0611ce80d1b7f02629c", "27ae3e4e09519cfbb04c329615203637"),
    ("FashionMNIST", "train-images-idx3-ubyte"):
        ("8d4fb7e6c68d591d4c3dfef9ec88bf0d", "f4a8712d7a061bf5bd6d2ca38dc4d50a"),
    ("FashionMNIST", "train-labels-idx1-ubyte"):
        ("25c81989df183df01b3e8a0aad5dffbe", "9018921c3c673c538a1fc5bad174d6f9"),
    ("FashionMNIST", "t10k-images-idx3-ubyte"):
        ("bef4ecab320f06d8554ea6380940ec79", "8181f5470baa50b63fa0f6fddb340f0a"),
    ("FashionMNIST", "t10k-labels-idx1-ubyte"):
        ("bb300cfdad3c16e7a12a480ee83cd310", "15d484375f8d13e6eb1aabb0c3f46965"),
}


def _canonical_dataset(dataset: str) -> str:
    key = str(dataset).lower().replace("_", "-")
    if key == "fashionmnist":
        key = "fashion-mnist"
    if key not in DATASETS:
        raise ValueError(f"Unknown dataset {dataset!r}; expected one of {sorted(DATASETS)}.")
    return key


def _candidate_dirs(root: Path, folder: str) -> list[Path]:
    # torchvision layout first; then root itself, for users who point straight at the raw folder.
    return [root / folder / "raw", root]


def _find_one(root: Path, folder: str, stem: str) -> Path:
    tried = []
    for d in _candidate_dirs(root, folder):
        for name in (stem + ".gz", stem):
            p = d / name
            tried.append(p)
            if p.is_file():
                return p
    looked = "\n  ".join(str(p) for p in tried)
    raise FileNotFoundError(
        f"{folder} file {stem}[.gz] not found. Looked in:\n  {looked}\n"
        f"To get the files, run `gmmgan data download {_NAME_OF[folder]} --root {root}` (or train with "
        f"data.download=true), or copy the raw IDX files (train/t10k images and labels, .gz or not) "
        f"into {root / folder / 'raw'}."
    )


def find_raw_files(root: str | os.PathLike, split: str = "train", dataset: str = "mnist") -> tuple[Path, Path]:
    """Paths of the (images, labels) IDX files of one split; FileNotFoundError lists every path tried."""
    folder = DATASETS[_canonical_dataset(dataset)]
    if split not in _STEMS:
        raise ValueError(f"Unknown split {split!r}; expected 'train' or 'test'.")
    img_stem, lbl_stem, _ = _STEMS[split]
    root = Path(root).expanduser()
    return _find_one(root, folder, img_stem), _find_one(root, folder, lbl_stem)


def _verify_md5(path: Path, folder: str, stem: str) -> None:
    gz_md5, raw_md5 = _MD5[(folder, stem)]
    expected = gz_md5 if path.name.endswith(".gz") else raw_md5
    actual = md5sum(path)
    if actual != expected:
        raise ValueError(
            f"md5 mismatch for {path}: got {actual}, expected {expected}. The file is corrupt, "
            f"truncated or from another dataset (e.g. MNIST vs Fashion-MNIST). Delete it and fetch "
            f"it again (gmmgan data download {_NAME_OF[folder]}), or pass verify=False "
            f"if you deliberately use a modified file."
        )


def _load_split(root: Path, folder: str, split: str, verify: bool) -> tuple[torch.Tensor, torch.Tensor]:
    img_stem, lbl_stem, n_expected = _STEMS[split]
    img_path = _find_one(root, folder, img_stem)
    lbl_path = _find_one(root, folder, lbl_stem)
    if verify:
        _verify_md5(img_path, folder, img_stem)
        _verify_md5(lbl_path, folder, lbl_stem)
    images = read_idx(img_path)
    labels = read_idx(lbl_path)
    if images.dtype.name != "uint8" or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise ValueError(
            f"{img_path}: expected uint8 images of shape (N, 28, 28), got {images.dtype.name} "
            f"{images.shape}. Is this the right file?"
        )
    if labels.dtype.name != "uint8" or labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise ValueError(
            f"{lbl_path}: expected {images.shape[0]} uint8 labels (one per image in {img_path.name}), "
            f"got {labels.dtype.name} {labels.shape}. The image and label files do not belong together."
        )
    if verify and images.shape[0] != n_expected:
        raise ValueError(f"{img_path}: expected {n_expected} images for split {split!r}, got {images.shape[0]}.")
    if labels.size and labels.max() > 9:
        raise ValueError(f"{lbl_path}: labels must be in 0..9, found {int(labels.max())}.")
    return torch.from_numpy(images), torch.from_numpy(labels.astype("int64"))


def load_mnist(
    root: str | os.PathLike,
    split: str = "train",
    dataset: str = "mnist",
    *,
    verify: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Load MNIST or Fashion-MNIST from the IDX files under ``root``.

    Parameters
    ----------
    root : str or PathLike
        Folder holding ``MNIST/raw/`` and/or ``FashionMNIST/raw/`` (torchvision's layout), or the raw
        folder itself.
    split : {'train', 'test', 'all'}, default='train'
        The standard split (60,000 train / 10,000 test images); 'all' is train followed by test
        (70,000 images, as Stacked MNIST uses).
    dataset : {'mnist', 'fashion-mnist'}, default='mnist'
    verify : bool, default=True
        Check every file's md5 against the published value.

    Returns
    -------
    images : uint8 Tensor of shape (N, 28, 28)
    labels : int64 Tensor of shape (N,), values in 0..9

    Raises
    ------
    FileNotFoundError
        If a file is missing; the message lists every path tried and how to get the files.
    ValueError
        On an md5 mismatch, a corrupt file, or an unknown split/dataset.
    """
    folder = DATASETS[_canonical_dataset(dataset)]
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}; expected one of {SPLITS}.")
    root = Path(root).expanduser()
    if split == "all":
        parts = [_load_split(root, folder, s, verify) for s in ("train", "test")]
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
    return _load_split(root, folder, split, verify)


def limited_subset(
    images: torch.Tensor, labels: torch.Tensor, per_class: int = 50, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """The limited-data training set: ``per_class`` images drawn at random from each class.

    With MNIST train and the defaults this is DeLiGAN's setting: 500 images, 50 per class.

    Parameters
    ----------
    images : Tensor of shape (N, ...)
    labels : int Tensor of shape (N,)
    per_class : int, default=50
    seed : int, default=0
        The same seed always picks the same images.

    Returns
    -------
    images, labels : the subset, in the original order of ``images`` (per_class * n_classes rows)
    """
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise ValueError(f"labels must have shape ({images.shape[0]},), got {tuple(labels.shape)}.")
    if not isinstance(per_class, int) or per_class < 1:
        raise ValueError(f"per_class must be a positive int, got {per_class!r}.")
    g = torch.Generator().manual_seed(int(seed))
    chosen = []
    for c in torch.unique(labels).tolist():  # sorted classes, so the draw order is fixed
        idx = torch.nonzero(labels == c).flatten()
        if idx.numel() < per_class:
            raise ValueError(f"class {c} has only {idx.numel()} images, fewer than per_class={per_class}.")
        chosen.append(idx[torch.randperm(idx.numel(), generator=g)[:per_class]])
    keep = torch.cat(chosen).sort().values
    return images[keep], labels[keep]
