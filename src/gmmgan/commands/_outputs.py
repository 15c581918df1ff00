"""Output paths checked before the work that fills them: a report or model that cannot be written is an error up front.

Used by ``gmmgan fit`` (-o, --plot, --criterion-plot) and ``gmmgan eval`` (-o), so that an output in a
read-only folder, under a path whose "folder" is a regular file, or one that exists is refused
before minutes of fitting or evaluating, not after.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["check_output_path"]


def check_output_path(path: Path, force: bool, what: str, suffix: str | None = None) -> None:
    """Refuse, before the work, an output that could not or should not be written afterwards.

    Parameters
    ----------
    path : Path
        The file to be written (missing folders above it are created when it is written).
    force : bool
        Whether an existing file may be replaced.
    what : str
        What the file is, for the messages ('model', 'plot', 'evaluation report').
    suffix : str, optional
        The suffix the file must have ('.png').

    Raises
    ------
    ValueError, FileExistsError, NotADirectoryError, PermissionError
    """
    if path.is_dir():
        raise ValueError(f"the {what} path '{path}' is a folder; give a file name")
    if suffix is not None and path.suffix.lower() != suffix:
        raise ValueError(f"the {what} is a {suffix[1:].upper()} image; give a file name ending in {suffix}, "
                         f"not '{path.name}'")
    if path.exists() and not force:
        raise FileExistsError(f"{what} file '{path}' already exists; pass --force to overwrite "
                              f"it or choose another name")
    # The nearest existing folder must be writable (missing ones are created), or the work is wasted.
    folder = next(p for p in [path.parent, *path.parent.parents] if p.exists())
    if not folder.is_dir():
        raise NotADirectoryError(f"cannot use '{path}' for the {what}: '{folder}' is a file, not a folder; "
                                 "choose another path")
    if not os.access(folder, os.W_OK):
        raise PermissionError(f"cannot use '{path}' for the {what}: '{folder}' is not writable; choose "
                              "another path")
