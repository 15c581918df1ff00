"""Reader and writer for the IDX format of MNIST-style datasets.

The IDX format (http://yann.lecun.com/exdb/mnist/) is a big-endian header

    0x00 0x00 <dtype code> <ndim>   then ndim big-endian uint32 dimension sizes

followed by the array's elements in C order. Files may be gzip-compressed; compression is detected
from the gzip magic bytes, not the file name, so a renamed file still reads.
"""

from __future__ import annotations

import gzip
import hashlib
import os
from pathlib import Path

import numpy as np

__all__ = ["read_idx", "write_idx", "md5sum", "IDXFormatError"]

# IDX dtype code -> big-endian numpy dtype.
_CODE_TO_DTYPE = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_DTYPE_TO_CODE = {dt.newbyteorder("=").str[1:]: code for code, dt in _CODE_TO_DTYPE.items()}
_GZIP_MAGIC = b"\x1f\x8b"


class IDXFormatError(ValueError):
    """Raised when a file is not a valid IDX file (bad magic number, truncated, wrong size)."""


def md5sum(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex md5 digest of the bytes of ``path`` (as stored on disk, i.e. of the .gz if compressed)."""
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk_size), b""):
            h.update(block)
    return h.hexdigest()


def _read_bytes(path: Path) -> bytes:
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == _GZIP_MAGIC:
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise IDXFormatError(
                f"{path}: gzip data is corrupt or truncated ({e}). Delete the file and fetch it again."
            ) from e
    return raw


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (optionally gzip-compressed) into a numpy array.

    Parameters
    ----------
    path : str or PathLike
        The file to read.

    Returns
    -------
    array : ndarray of shape given by the header, native byte order
        A writable array (a copy, not a view of the file buffer).

    Raises
    ------
    IDXFormatError
        If the magic number, dtype code or size does not match the IDX format.
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise IDXFormatError(f"{path}: file has {len(data)} bytes, too short for an IDX header.")
    zero0, zero1, code, ndim = data[0], data[1], data[2], data[3]
    if zero0 != 0 or zero1 != 0 or code not in _CODE_TO_DTYPE or ndim == 0:
        magic = int.from_bytes(data[:4], "big")
        raise IDXFormatError(
            f"{path}: bad IDX magic number 0x{magic:08x}; expected 0x0000TTNN with type code TT in "
            f"{sorted(hex(c) for c in _CODE_TO_DTYPE)} and NN >= 1 dimensions. The file is not an "
            "IDX file or is corrupt."
        )
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise IDXFormatError(f"{path}: truncated header ({len(data)} bytes, need {header_len}).")
    shape = tuple(int(s) for s in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = _CODE_TO_DTYPE[code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    actual = len(data) - header_len
    if actual != expected:
        raise IDXFormatError(
            f"{path}: header says shape {shape} of {dtype.name} ({expected} bytes of data) but the "
            f"file holds {actual} bytes. The file is truncated or corrupt; fetch it again."
        )
    arr = np.frombuffer(data, dtype=dtype, offset=header_len).reshape(shape)
    return arr.astype(dtype.newbyteorder("="), copy=True)


def write_idx(path: str | os.PathLike, array: np.ndarray, *, compress: bool | None = None) -> Path:
    """Write ``array`` as an IDX file; gzip-compressed when ``compress`` (default: name ends in .gz).

    Supported dtypes: uint8, int8, int16, int32, float32, float64.
    """
    path = Path(path)
    array = np.asarray(array)
    key = array.dtype.newbyteorder("=").str[1:]
    if key not in _DTYPE_TO_CODE:
        raise ValueError(
            f"IDX cannot store dtype {array.dtype}; convert to one of uint8, int8, int16, int32, "
            "float32, float64."
        )
    if array.ndim == 0 or array.ndim > 255:
        raise ValueError(f"IDX needs 1 to 255 dimensions, got {array.ndim}.")
    code = _DTYPE_TO_CODE[key]
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    payload = header + np.ascontiguousarray(array, dtype=_CODE_TO_DTYPE[code]).tobytes()
    if compress is None:
        compress = path.suffix == ".gz"
    if compress:
        payload = gzip.compress(payload, mtime=0)  # mtime=0: identical bytes for identical input
    path.write_bytes(payload)
    return path
