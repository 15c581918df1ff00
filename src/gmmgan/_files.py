"""Files: atomic writes, and reading a .npy array with errors that say what is wrong.

:func:`atomic_write` writes a temporary file in the same folder, flushes it, then renames it over
the target: a crash or a full disk while saving leaves the previous good file in place. Used for
models, checkpoints, snapshots, classifiers and rewritten logs.

:func:`load_npy` memory-maps a numeric .npy file (``GaussianMixture.fit(path)`` and ``gmmgan fit``).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["atomic_write", "load_npy"]


def _umask() -> int:
    """The process's umask (reading it means setting it; it is set straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` on a temporary file next to ``path``, flush it to disk, rename it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        # mkstemp (and safetensors' save_file) make the file 0600; give it the mode a plain open()
        # would (0666 less the umask).
        os.chmod(tmp, 0o666 & ~_umask())
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def load_npy(path: str | Path):
    """A .npy file memory-mapped read-only (a ``numpy.memmap``), or a ValueError that says why it cannot be.

    numpy's own words mislead here (a file without the .npy header is "pickled data", with advice
    to unpickle it), so every failure is reworded: not a .npy file, Python objects, not numbers,
    an .npz archive, truncated or corrupt. The shape is not checked.
    """
    import numpy as np

    name = str(path)
    try:
        X = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "Python objects" in reason:  # an object array, written with allow_pickle=True
            raise ValueError(f"{name!r} must hold numbers, but it holds Python objects (dtype=object); "
                             "save a numeric array instead.") from None
        if "pickle" in reason:  # numpy takes any file without the .npy header for a pickle
            raise ValueError(f"{name!r} is not a .npy file (no .npy header); write it with numpy.save(path, X) "
                             "where X is a numeric 2-D array.") from None
        raise ValueError(
            f"Cannot read {name!r} as a numeric .npy array ({reason}); it may be truncated or corrupt. "
            "Write it with numpy.save(path, X) where X is a numeric 2-D array."
        ) from None
    if not isinstance(X, np.ndarray):  # an .npz archive (np.load opens it whatever its name)
        if hasattr(X, "close"):
            X.close()
        raise ValueError(  # noqa: TRY004 - the file's content is wrong, not the argument's type
            f"{name!r} does not hold a single array (it is an .npz archive); save one array with numpy.save(path, X).")
    if X.dtype.kind not in "biuf":
        raise ValueError(f"{name!r} must hold numbers, but its dtype is {X.dtype}; save a numeric array.")
    return X
