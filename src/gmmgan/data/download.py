"""Fetching MNIST and Fashion-MNIST on request: the four .gz files, md5-verified, written atomically.

Nothing in gmmgan downloads unless asked (``gmmgan data download``, or ``data.download: true`` in a
training config). Files land in torchvision's layout, ``<root>/MNIST/raw/`` or
``<root>/FashionMNIST/raw/``, where :func:`gmmgan.data.load_mnist` finds them. Each file is
streamed into a hidden temporary file beside its target and renamed only once its md5 matches the
published value, so an interrupted or corrupted download never leaves a file that looks complete;
files already present with the right md5 are not fetched again.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from gmmgan._files import atomic_write
from gmmgan.data.idx import md5sum
from gmmgan.data.mnist import _MD5, _STEMS, DATASETS, _canonical_dataset

__all__ = ["MIRRORS", "download_dataset", "files_of"]

# Base URLs under which the four files sit by their standard names, tried in order (torchvision's).
MIRRORS = {
    "mnist": ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
    "fashion-mnist": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
}
_TIMEOUT_S = 30
_BLOCK = 1 << 16


def files_of(dataset: str) -> list[tuple[str, str]]:
    """(file name, md5 of the .gz) for the four files of ``dataset``, train before test."""
    folder = DATASETS[_canonical_dataset(dataset)]
    stems = [s for split in ("train", "test") for s in _STEMS[split][:2]]
    return [(stem + ".gz", _MD5[(folder, stem)][0]) for stem in stems]


def _fetch(url: str, path: Path, expected_md5: str, progress: Callable[[int, int | None], None] | None) -> None:
    """Stream ``url`` into ``path`` atomically; raise ValueError (and keep nothing) on an md5 mismatch."""

    def write(tmp: str) -> None:
        digest = hashlib.md5()
        with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as response, open(tmp, "wb") as f:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            done = 0
            while block := response.read(_BLOCK):
                f.write(block)
                digest.update(block)
                done += len(block)
                if progress is not None:
                    progress(done, total)
        if digest.hexdigest() != expected_md5:
            raise ValueError(
                f"{url} sent a file whose md5 is {digest.hexdigest()}, not the published {expected_md5}: "
                "it is corrupt or another file; nothing was kept. Try again, or another --mirror."
            )

    atomic_write(path, write)


def download_dataset(dataset: str, root: str | os.PathLike, mirror: str | None = None,
                     progress: Callable[[str, int, int | None], None] | None = None) -> Path:
    """Make sure the four .gz files of ``dataset`` are in ``<root>/<Folder>/raw/``; return that folder.

    Parameters
    ----------
    dataset : {'mnist', 'fashion-mnist'}
    root : str or Path
        The data root (the folder holding ``MNIST/`` and ``FashionMNIST/``).
    mirror : str, optional
        A base URL under which the four files sit by their standard names; tried instead of the
        default mirrors (:data:`MIRRORS`). ``file://`` URLs work too.
    progress : callable, optional
        ``progress(file_name, bytes_done, bytes_total_or_None)`` while a file is fetched.

    Raises
    ------
    OSError
        When no mirror could be reached (offline, blocked, a file missing there): the message names
        every URL tried and the files to place by hand.
    ValueError
        When a mirror sends a file whose md5 does not match (the file is not kept).
    """
    key = _canonical_dataset(dataset)
    raw = Path(root) / DATASETS[key] / "raw"
    bases = (mirror,) if mirror else MIRRORS[key]
    for name, md5 in files_of(key):
        target = raw / name
        if target.is_file() and md5sum(target) == md5:
            continue
        tried = []
        for base in bases:
            url = base.rstrip("/") + "/" + name
            try:
                _fetch(url, target, md5, None if progress is None else
                       (lambda done, total, name=name: progress(name, done, total)))
                break
            # Network trouble moves on to the next mirror; a local OSError (a full disk, a read-only
            # root) is not the mirror's fault and propagates as it is.
            except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
                reason = getattr(e, "reason", None) or e
                tried.append(f"{url} ({reason})")
        else:
            names = ", ".join(n for n, _ in files_of(key))
            raise OSError(
                f"could not download {name}; tried: {'; '.join(tried)}. Without network access, place the "
                f"files {names} (from any MNIST mirror) in {raw}, or pass --mirror URL of a mirror you can reach."
            )
    return raw
