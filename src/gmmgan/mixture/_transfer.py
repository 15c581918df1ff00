"""Host data to compute-device tensors: whole arrays, and row blocks streamed to a GPU.

A block bound for a GPU is staged in pinned host memory (unless it already is pinned), copied
with ``non_blocking`` on a side stream, and the next block's copy is issued before this block is
handed out, so the copy of block i+1 overlaps the compute on block i.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator

import numpy as np
import torch


def is_tensor(X) -> bool:
    return isinstance(X, torch.Tensor)


def _numeric_array(block) -> np.ndarray:
    """``block`` as a numpy array of booleans or numbers; ValueError for anything else."""
    arr = np.asarray(block)
    if arr.dtype.kind not in "biuf":
        raise ValueError(
            f"Expected numeric data, got an array of dtype {arr.dtype}. Convert it with "
            "np.asarray(X, dtype=float) after removing non-numeric columns."
        )
    return arr


def _real_tensor(block: torch.Tensor) -> torch.Tensor:
    """``block`` detached; ValueError for complex data (a cast would drop the imaginary part)."""
    if block.is_complex():
        raise ValueError("Complex data is not supported; pass real-valued features.")
    return block.detach()


def _to_tensor(block, device, dtype) -> torch.Tensor:
    if is_tensor(block):
        return _real_tensor(block).to(device=device, dtype=dtype)
    arr = np.ascontiguousarray(_numeric_array(block))
    if not arr.flags.writeable:  # memmap slices: torch.from_numpy warns on read-only memory
        arr = arr.copy()
    tensor = torch.from_numpy(arr)
    if device.type == "cuda":
        return tensor.to(device=device, dtype=dtype, non_blocking=False)
    return tensor.to(dtype=dtype)


def device_blocks(host_blocks: Iterable, device: torch.device, dtype: torch.dtype, copier=None) -> Iterator[torch.Tensor]:
    """Host blocks (numpy arrays / tensors) as tensors on ``device`` in ``dtype``, in order.

    On CUDA a block is staged in pinned memory (unless it is pinned already), copied with
    ``non_blocking`` on a side stream, and the next block's copy is issued before this block is
    handed out, so transfers overlap the caller's kernels. At most two handed-out blocks may still
    be in the caller's queued work when a new copy is issued: the host waits for older ones, so
    device memory for blocks stays bounded however far ahead of the GPU the host could run.
    Elsewhere each block is converted in turn. (``copier``: a test's stand-in for the CUDA one.)
    """
    if copier is None:
        if device.type != "cuda":
            for block in host_blocks:
                yield _to_tensor(block, device, dtype)
            return
        copier = _CudaCopier(device, dtype)
    for block, ready in prefetch(copier.issue, host_blocks):
        copier.compute.wait_event(ready)
        copier.record_stream(block)  # its memory is reused only after the caller's kernels on it
        yield block
        used = copier.event()
        used.record(copier.compute)  # after the caller queued its work on this block
        copier.used.append(used)


def prefetch(issue, items: Iterable) -> Iterator:
    """``issue(item)`` for every item, one item ahead: item i+1 is issued before result i is yielded."""
    it = iter(items)
    try:
        pending = issue(next(it))
    except StopIteration:
        return
    for item in it:
        ahead = issue(item)
        yield pending
        pending = ahead
    yield pending


class _CudaCopier:
    """Host block -> (device tensor, ready event): pinned staging buffers used in turn, a side stream.

    The CUDA calls are the small methods at the end, so a test can replace them and run the
    staging, turn-taking and waiting logic on the CPU.
    """

    IN_FLIGHT = 2  # handed-out blocks whose compute may still be queued when a copy is issued

    def __init__(self, device: torch.device, dtype: torch.dtype):
        self.device, self.dtype = device, dtype
        self.stream, self.compute = self.new_stream(), self.current_stream()
        self.buffers: list[torch.Tensor | None] = [None, None]
        self.copied: list = [None, None]  # events: when each buffer's last copy ended
        self.turn = 0
        self.used: deque = deque()  # events: the compute on handed-out blocks, oldest first

    def _staged(self, block) -> torch.Tensor:
        """The block in pinned host memory: itself if it is a pinned tensor, else a staging buffer."""
        if is_tensor(block):
            if block.device.type == "cpu" and self.is_pinned(block):
                return block  # DMA straight from the caller's pinned memory
            src, src_dtype = _real_tensor(block), block.dtype
        else:
            src = _numeric_array(block)
            src_dtype = torch.from_numpy(np.empty(0, dtype=src.dtype)).dtype
        # Float data cross PCIe in their own dtype (converted on the GPU); other types as ``dtype``.
        stage_dtype = src_dtype if src_dtype in (torch.float32, torch.float64) else self.dtype
        i = self.turn = 1 - self.turn
        buf = self.buffers[i]
        if buf is None or buf.dtype != stage_dtype or buf.shape[1:] != src.shape[1:] or buf.shape[0] < src.shape[0]:
            buf = self.buffers[i] = self.pinned_empty(tuple(src.shape), stage_dtype)
        if self.copied[i] is not None:
            self.copied[i].synchronize()  # the copy that last read this buffer has finished
        out = buf[: src.shape[0]]
        if is_tensor(src):
            out.copy_(src)
        else:  # straight from the (memory-mapped) array into pinned memory: one host copy
            np.copyto(out.numpy(), src, casting="unsafe")
        return out

    def issue(self, block) -> tuple[torch.Tensor, object]:
        while len(self.used) >= self.IN_FLIGHT:
            self.used.popleft().synchronize()
        staged = self._staged(block)
        with self.on_side_stream():
            out = self.to_device(staged)
            copied = self.event()
            copied.record(self.stream)
            out = out.to(self.dtype)  # on the GPU: float32 data cross PCIe as float32
            ready = self.event()
            ready.record(self.stream)
        if staged is not block:
            self.copied[self.turn] = copied
        return out, ready

    # The CUDA calls.
    def new_stream(self):
        return torch.cuda.Stream(self.device)

    def current_stream(self):
        return torch.cuda.current_stream(self.device)

    def on_side_stream(self):
        return torch.cuda.stream(self.stream)

    @staticmethod
    def event():
        return torch.cuda.Event()

    @staticmethod
    def is_pinned(t: torch.Tensor) -> bool:
        return t.is_pinned()

    @staticmethod
    def pinned_empty(shape, dtype) -> torch.Tensor:
        return torch.empty(shape, dtype=dtype, pin_memory=True)

    def to_device(self, staged: torch.Tensor) -> torch.Tensor:
        return staged.to(self.device, non_blocking=True)

    def record_stream(self, block: torch.Tensor) -> None:
        block.record_stream(self.compute)
