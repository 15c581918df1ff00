"""The pieces of an EM pass that every mixture estimator shares: parameter/statistics containers,
shifted data views and the normalisation of log-probabilities into responsibilities."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from gmmgan.mixture._data_source import DataSource, _check_block

# A component whose responsibilities sum to less than this many points has lost its data.
EMPTY_COMPONENT = 1e-3
KMEANSPP_LLOYD_STEPS = 10


def log_normalize_(wlp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(logsumexp over components, responsibilities), computed in place in ``wlp`` (n, K).

    Differences below -75 (float32) / -690 (float64) are clamped before ``exp``: their
    responsibilities are still below 1e-32 of the largest, but never subnormal numbers, which
    make ``exp`` on x86 CPUs some 30x slower and would otherwise dominate EM on separated data.
    """
    top = wlp.amax(1, keepdim=True)
    floor = -75.0 if wlp.dtype == torch.float32 else -690.0
    resp = wlp.sub_(top).clamp_(min=floor).exp_()
    total = resp.sum(1, keepdim=True)
    return (top + total.log()).squeeze(1), resp.div_(total)


@dataclass
class _State:
    """Mixture parameters in the shifted coordinates EM works in (x - shift)."""

    weights: torch.Tensor
    means: torch.Tensor
    covariances: torch.Tensor | None
    prec_chol: torch.Tensor
    # (iteration, component) of every emptied component re-seeded so far in this initialisation:
    # it travels with the parameters, so the best initialisation's list is kept with them.
    reseeded: tuple = ()


@dataclass
class _Stats:
    """Sufficient statistics of one pass, summed over blocks in float64."""

    nk: torch.Tensor
    sx: torch.Tensor
    stat: torch.Tensor
    anchor: torch.Tensor
    worst_x: torch.Tensor | None = None  # this rank's worst-explained rows, worst first
    worst_v: torch.Tensor | None = None  # and their log-likelihoods


class _Shifted:
    """A DataSource seen in shifted coordinates: resident data is shifted once, streams per block."""

    def __init__(self, source: DataSource, shift: torch.Tensor):
        self.source, self.shift = source, shift
        self.n_samples = source.n_samples
        self.n_global = source.n_global  # over all ranks when the source is a shard
        self._resident = source.resident - shift if source.resident is not None else None

    def chunks(self):
        if self._resident is not None:
            step = self.source.chunk_size
            for start in range(0, self.n_samples, step):
                yield self._resident[start : start + step]
        else:
            for block in self.source.chunks():
                yield block - self.shift

    def checked_chunks(self, name: str = "X"):
        """:meth:`chunks`, each streamed block checked to be finite as it is read.

        For inference (predict, score): a fit validates streamed data in its summarize pass,
        inference reads it once and would otherwise return NaN for a bad row. Resident data
        was checked when the source was made. (x - shift is finite exactly when x is.)
        """
        offset = 0
        for x in self.chunks():
            if self._resident is None:
                _check_block(x, offset, name)
            offset += x.shape[0]
            yield x


