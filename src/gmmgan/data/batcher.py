"""Shuffled mini-batches from tensors already on the device: no DataLoader, no worker processes.

Datasets that fit in device memory are held there as tensors; a batch is one ``index_select`` on the
device. The shuffle is an epoch-level permutation drawn from a ``torch.Generator``, and the batcher's
position (epoch, batch, the generator state at the start of the epoch) is a small state dict, so a
resumed run sees exactly the batches it would have seen.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch

__all__ = ["TensorBatcher"]

Batch = torch.Tensor | tuple[torch.Tensor, ...]


class TensorBatcher:
    """Iterate shuffled batches of one tensor (or several tensors sharing the first dimension).

    Parameters
    ----------
    data : Tensor of shape (N, ...) or tuple of such Tensors
        Kept where it is (CPU or GPU); batches are indexed on its device.
    batch_size : int
    generator : torch.Generator or int or None, default=None
        Source of the epoch permutations; an int seeds a new CPU generator, None means seed 0.
        Give the batcher its own generator: drawing from it elsewhere breaks exact resume.
    drop_last : bool, default=True
        Drop the last incomplete batch of each epoch (so every batch has ``batch_size`` rows).
    shuffle : bool, default=True
        If False, batches follow the data order.

    Examples
    --------
    >>> b = TensorBatcher(torch.arange(10.0), batch_size=4, generator=0)
    >>> len(b), [t.shape[0] for t in b]
    (2, [4, 4])
    >>> x = b.next()            # step-based use: rolls over epochs by itself
    >>> state = b.state_dict()  # save with the checkpoint; load_state_dict(state) resumes exactly
    """

    def __init__(
        self,
        data: Batch,
        batch_size: int,
        generator: torch.Generator | int | None = None,
        drop_last: bool = True,
        shuffle: bool = True,
    ):
        self._single = isinstance(data, torch.Tensor)
        tensors = (data,) if self._single else tuple(data)
        if not tensors or not all(isinstance(t, torch.Tensor) for t in tensors):
            raise ValueError("data must be a Tensor or a non-empty tuple of Tensors.")
        n = tensors[0].shape[0] if tensors[0].ndim else 0
        for t in tensors:
            if t.ndim == 0 or t.shape[0] != n:
                raise ValueError(f"all tensors must share the first dimension N={n}; got shape {tuple(t.shape)}.")
            if t.device != tensors[0].device:
                raise ValueError(f"all tensors must be on one device; got {tensors[0].device} and {t.device}.")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}.")
        if drop_last and batch_size > n:
            raise ValueError(
                f"batch_size={batch_size} is larger than the dataset (N={n}) with drop_last=True: no batch "
                "would ever be produced. Use a smaller batch_size or drop_last=False."
            )
        if n == 0:
            raise ValueError("data is empty.")
        if generator is None or isinstance(generator, int):
            generator = torch.Generator().manual_seed(0 if generator is None else generator)
        self.tensors, self.n, self.batch_size = tensors, n, batch_size
        self.generator, self.drop_last, self.shuffle = generator, drop_last, shuffle
        self.device = tensors[0].device
        self.epoch = 0  # epochs completed before the current one
        self._pos = 0  # next batch index within the current epoch
        self._perm: torch.Tensor | None = None
        self._epoch_state: torch.Tensor | None = None  # generator state before this epoch's permutation

    def __len__(self) -> int:
        """Batches per epoch."""
        return self.n // self.batch_size if self.drop_last else math.ceil(self.n / self.batch_size)

    def _draw_perm(self) -> torch.Tensor:
        if not self.shuffle:
            return torch.arange(self.n, device=self.device)
        perm = torch.randperm(self.n, generator=self.generator, device=self.generator.device)
        return perm.to(self.device, non_blocking=True)

    def _start_epoch(self) -> None:
        if self._perm is not None:
            self.epoch += 1
        self._epoch_state = self.generator.get_state()
        self._perm = self._draw_perm()
        self._pos = 0

    def next(self) -> Batch:
        """The next batch, starting a new epoch when the current one is exhausted."""
        if self._perm is None or self._pos >= len(self):
            self._start_epoch()
        idx = self._perm[self._pos * self.batch_size : (self._pos + 1) * self.batch_size]
        self._pos += 1
        out = tuple(t.index_select(0, idx) for t in self.tensors)
        return out[0] if self._single else out

    def __iter__(self) -> Iterator[Batch]:
        """Yield the rest of the current epoch (a whole new epoch if the current one is done)."""
        if self._perm is None or self._pos >= len(self):
            self._start_epoch()
        while self._pos < len(self):
            yield self.next()

    def state_dict(self) -> dict:
        """Position in the stream: ``epoch``, ``batch`` (next batch index), ``generator_state``."""
        state = self._epoch_state if self._perm is not None else self.generator.get_state()
        return {
            "epoch": self.epoch,
            "batch": self._pos,
            "started": self._perm is not None,
            "generator_state": state.clone(),
            "n": self.n,
            "batch_size": self.batch_size,
        }

    def load_state_dict(self, state: dict) -> None:
        """Resume from :meth:`state_dict`; the next batches equal those the saved batcher would give."""
        if state["n"] != self.n or state["batch_size"] != self.batch_size:
            raise ValueError(
                f"state is for N={state['n']}, batch_size={state['batch_size']} but this batcher has "
                f"N={self.n}, batch_size={self.batch_size}; build the batcher on the same data and batch size."
            )
        self.generator.set_state(state["generator_state"].clone())
        self.epoch, self._pos = int(state["epoch"]), int(state["batch"])
        if state["started"]:
            # Redraw the permutation of the saved epoch; this also leaves the generator where it was.
            self._epoch_state = self.generator.get_state()
            self._perm = self._draw_perm()
        else:
            self._perm, self._epoch_state = None, None
