"""Where the image data sets are read from: the one resolver of the data root.

The data root is the folder holding ``MNIST/raw`` and ``FashionMNIST/raw`` (torchvision's layout).
The first of these that is set wins:

1. an explicit value: ``--data-root DIR`` on the command line, ``data.root`` in a training config
   (a run records it, so ``gmmgan eval`` reads what training read), or a ``root=`` argument;
2. the ``GMMGAN_DATA`` environment variable;
3. ``./data``, in the current folder.

``GMMGAN_DATA_ROOT`` (the name ``gmmgan eval train-classifier`` once read) still works in place of
``GMMGAN_DATA``, with a FutureWarning; it will be removed.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

__all__ = ["DATA_ENV", "resolve_data_root"]

DATA_ENV = "GMMGAN_DATA"
_DEPRECATED_ENV = "GMMGAN_DATA_ROOT"
_DEFAULT = "data"


def resolve_data_root(explicit: str | os.PathLike | None = None) -> Path:
    """The data root: ``explicit`` if given, else ``$GMMGAN_DATA``, else ``./data``.

    An explicit value is returned as given (a relative path stays relative); one taken from the
    environment or the default is made absolute, so that a run records where it read its data.
    Whether the folder exists is not checked here: the loaders say which files they looked for.
    """
    if explicit is not None and str(explicit) != "":
        return Path(explicit)
    value = os.environ.get(DATA_ENV)
    if not value and os.environ.get(_DEPRECATED_ENV):
        warnings.warn(f"${_DEPRECATED_ENV} is deprecated; set ${DATA_ENV} instead (same meaning).",
                      FutureWarning, stacklevel=2)
        value = os.environ[_DEPRECATED_ENV]
    return Path(value or _DEFAULT).expanduser().resolve()
