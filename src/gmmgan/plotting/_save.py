"""Pictures written atomically (:func:`gmmgan._files.atomic_write`): a full disk leaves an older one as it was."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from gmmgan._files import atomic_write

__all__ = ["image_format", "save_figure"]


def image_format(path: str | Path) -> str:
    """The picture format of ``path``'s extension (PNG without one): the temporary file has none."""
    return Path(path).suffix[1:].lower() or "png"


def save_figure(fig, path: str | Path, **kwargs) -> None:
    """``fig.savefig(path, **kwargs)``, atomically."""
    kwargs.setdefault("format", image_format(path))
    atomic_write(path, partial(fig.savefig, **kwargs))
