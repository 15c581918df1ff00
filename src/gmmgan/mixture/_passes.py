"""A re-iterable of chunks must yield the same rows on every pass: the check, pass by pass.

EM reads a re-iterable of chunks once per iteration. ``make_source``'s scan is pass 1; each later
pass is compared with it, by its row count and by a :class:`Checksum`, and data that changed
between passes is a ValueError that says so (:func:`chunks_changed`), not a silently wrong fit.
"""

from __future__ import annotations

import numpy as np
import torch

from gmmgan.mixture._transfer import is_tensor

__all__ = ["Checksum", "check_pass", "chunks_changed", "n_rows"]


def n_rows(chunk) -> int:
    shape = getattr(chunk, "shape", None)
    return int(shape[0]) if shape is not None and len(shape) > 0 else len(chunk)


def chunks_changed(what: str):
    raise ValueError(
        f"The chunks changed between passes: {what}; EM reads the data on every iteration, so give a "
        "re-iterable that yields the same data each time, e.g. a list of arrays, or an object whose "
        "__iter__ re-opens the file."
    )


def check_pass(first_pass: tuple | None, number: int, rows: int, checksum: Checksum) -> None:
    """Pass ``number`` over a re-iterable of chunks yielded the rows of its first pass, ``(rows, Checksum)``."""
    if first_pass is None:
        return
    first_rows, first = first_pass
    if rows != first_rows:
        chunks_changed(f"pass 1 had {first_rows:,} rows, pass {number} had {rows:,}")
    if not first.matches(checksum):
        chunks_changed(f"pass {number} had the {rows:,} rows of pass 1 but other values (the sum of their "
                       f"first and last columns is {checksum.total:.10g}, pass 1's was {first.total:.10g})")


class Checksum:
    """A cheap fingerprint of a pass over chunks: the float64 sums of the first and the last column.

    Sums do not depend on how the rows are cut into chunks or ordered, up to float64 rounding, so a
    re-iterable that re-chunks or shuffles the same rows still matches; a changed value in those
    columns does not (nor, almost surely, other rows or another file). The first pass also sums
    magnitudes, the scale of that rounding. The cost of a later pass is two additions per row, next
    to the K x D work per row of an EM pass; torch chunks are summed on their device and read once
    per pass.
    """

    def __init__(self, magnitudes: bool = False):
        self.magnitudes = magnitudes
        self._parts: list = []

    def add(self, chunk) -> None:
        tensor = is_tensor(chunk)
        a = chunk.detach() if tensor else chunk if isinstance(chunk, np.ndarray) else np.asarray(chunk)
        cols = (a[:, 0], a[:, -1]) if a.ndim == 2 else (a.reshape(-1),)
        sums = []
        for c in cols:
            if tensor:
                sums.append(c.sum(dtype=torch.float64))
                if self.magnitudes:
                    sums.append(c.abs().sum(dtype=torch.float64))
            else:
                if c.dtype.kind not in "fiu":
                    c = c.astype(np.float64)
                sums.append(c.sum(dtype=np.float64))
                if self.magnitudes:
                    sums.append(np.abs(c).sum(dtype=np.float64))
        self._parts.append(torch.stack(sums) if tensor else np.asarray(sums, dtype=np.float64))

    def totals(self) -> np.ndarray:
        """The column sums over all chunks (each followed by its magnitude if ``magnitudes``)."""
        parts = [p.cpu().numpy() if is_tensor(p) else p for p in self._parts]
        width = max((len(p) for p in parts), default=0)  # a 1-D chunk has one column
        total = sum((np.resize(p, width) for p in parts), np.zeros(width))
        self._parts = [total]  # folded: read once
        return total

    @property
    def total(self) -> float:
        t = self.totals()
        return float(t[0::2].sum() if self.magnitudes else t.sum())

    def matches(self, later: Checksum) -> bool:
        """Whether a later pass's sums (``later``) are those of this first pass, up to rounding."""
        first, sums = self.totals(), later.totals()
        expected, scale = first[0::2], first[1::2]
        if sums.shape != expected.shape:
            return False
        nan = np.isnan(expected)  # NaN: summarize's finite check names the row
        if (nan != np.isnan(sums)).any():
            return False
        return bool((np.abs(sums - expected)[~nan] <= 1e-9 * scale[~nan] + 1e-300).all())
