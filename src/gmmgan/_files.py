"""Files: atomic writes, and reading a .npy array with errors that say what is wrong.

:func:`atomic_write` writes a temporary file in the same folder, flushes it, then renames it over
the target: a crash or a full disk while saving leaves the previous good file in place. Used for
models, checkpoints, snapshots, classifiers, plots and rewritten logs.

A full disk (``ENOSPC``, or a quota: ``EDQUOT``) is reported as a :class:`DiskFullError`, an
``OSError`` with that errno, ``filename`` the file being written (not the temporary one) and a
one-line message saying so, whichever library did the writing (safetensors and torch report it as
their own error types). The temporary file is removed. A process killed while writing (``kill -9``) leaves
its temporary file behind: :func:`stale_temp_files` finds those of a folder's own files.

:func:`load_npy` memory-maps a numeric .npy file (``GaussianMixture.fit(path)`` and ``gmmgan fit``).
"""

from __future__ import annotations

import errno
import os
import re
import tempfile
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path

__all__ = ["DISK_FULL_ERRNOS", "DiskFullError", "atomic_write", "atomic_write_text", "disk_full_error", "is_disk_full",
           "load_npy", "stale_temp_files"]

DISK_FULL_ERRNOS = frozenset(e for e in (getattr(errno, "ENOSPC", None), getattr(errno, "EDQUOT", None)) if e)

# mkstemp(prefix=".NAME.", suffix=".tmp") adds 8 characters from [a-z0-9_].
_TEMP_NAME = re.compile(r"\.(?P<name>.+)\.[a-z0-9_]{8}\.tmp")


def _umask() -> int:
    """The process's umask (reading it means setting it; it is set straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def is_disk_full(e: BaseException) -> bool:
    """True for an error that means the disk (or the user's quota) is full.

    An ``OSError`` with errno ENOSPC/EDQUOT, or another library's error raised while handling
    one, or one that keeps only the OS's words (safetensors: "I/O error: No space left on device
    (os error 28)").
    """
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno is not None:
            if e.errno in DISK_FULL_ERRNOS:
                return True
        else:
            text = str(e)
            if any(f"os error {n})" in text or os.strerror(n) in text for n in DISK_FULL_ERRNOS):
                return True
        e = e.__cause__ or e.__context__
    return False


def _no_space_in(folder: Path) -> bool:
    """The file system of ``folder`` has no block left for this user (statvfs; False where unknown)."""
    try:
        return os.statvfs(folder).f_bavail == 0
    except (AttributeError, OSError):  # no statvfs (Windows), or the folder is gone
        return False


class DiskFullError(OSError):
    """The disk (or a quota) filled up while writing ``filename``: errno ENOSPC/EDQUOT, one-line message.

    ``str(e)`` is the message alone (no "[Errno 28]"), ready for one ``error:`` line.
    """

    def __init__(self, path: str | Path, message: str, code: int = errno.ENOSPC):
        super().__init__(code, os.strerror(code), str(path))
        self.message = message

    def __str__(self) -> str:
        return self.message

    def __reduce__(self):  # rebuilt from its own arguments (OSError's are errno, strerror, filename)
        return type(self), (self.filename, self.message, self.errno)


def disk_full_error(path: str | Path, cause: BaseException | None = None, *, kept: str | None = None,
                    message: str | None = None) -> DiskFullError:
    """The error saying the disk filled up while writing ``path`` (``cause``: the error that said so).

    The message is "no space left on the device while writing 'PATH' (No space left on device)",
    then ``kept`` (e.g. "the previous file is unchanged"); or ``message`` as given.
    """
    code = getattr(cause, "errno", None)
    code = code if code in DISK_FULL_ERRNOS else errno.ENOSPC
    if message is None:
        message = f"no space left on the device while writing '{path}' ({os.strerror(code)})" + (
            f"; {kept}" if kept else "")
    return DiskFullError(path, message, code)


def atomic_write(path: str | Path, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` on a temporary file next to ``path``, flush it to disk, rename it to ``path``.

    Raises
    ------
    OSError
        With errno ENOSPC (:func:`disk_full_error`) when the disk is full; ``path`` is then as it
        was before (or still absent) and the temporary file is gone.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        write(tmp)
        # mkstemp (and safetensors' save_file) make the file 0600; give it the mode a plain open()
        # would (0666 less the umask).
        os.chmod(tmp, 0o666 & ~_umask())
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except Exception as e:
        # torch.save given a path reports a full disk only as "unexpected pos ..." (a RuntimeError,
        # no errno): what is left on the disk, with the temporary file still there, tells.
        if is_disk_full(e) or (not isinstance(e, OSError) and _no_space_in(path.parent)):
            kept = "the file as it was before is unchanged" if path.exists() else None
            raise disk_full_error(path, e, kept=kept) from e
        raise
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` with :func:`atomic_write`."""
    return atomic_write(path, partial(_write_text, text=text))


def _write_text(tmp: str, text: str) -> None:
    Path(tmp).write_text(text, encoding="utf-8")


def stale_temp_files(folder: str | Path, names: Iterable[str] | Callable[[str], bool]) -> list[Path]:
    """The temporary files :func:`atomic_write` left in ``folder`` for the files ``names`` (killed writers).

    ``names`` are the file names whose temporaries count (or a test on a name); other hidden
    files are never listed. Only call this while no other process writes into ``folder``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    wanted = names if callable(names) else set(names).__contains__
    out = []
    for p in sorted(folder.iterdir()):
        m = _TEMP_NAME.fullmatch(p.name)
        if m and wanted(m["name"]) and p.is_file():
            out.append(p)
    return out


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
