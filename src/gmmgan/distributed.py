"""All rank handling of gmmgan in one place: torchrun/DDP setup, shards, reductions (PyTorch's engine).

Every other module calls these functions and stays the same in one process and in many: with no
process group they are no-ops (rank 0 of a world of 1), so the single-process path *is* the
distributed path with ``world_size() == 1``.

    torchrun --nproc_per_node 4 -m gmmgan train --config configs/stacked_mnist_fitted_gmm.yaml

torchrun sets ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``;
:func:`init_from_env` reads them, picks NCCL for CUDA and gloo for the CPU, and binds each rank to
its GPU. On several machines (``torchrun --nnodes N --rdzv_backend c10d --rdzv_endpoint HOST:PORT``
on each) the same holds: ``RANK`` is global (shards, rank 0's files), ``LOCAL_RANK`` counts within
the machine and only picks the GPU. Collectives time out (``GMMGAN_DIST_TIMEOUT`` seconds, default 600): a rank that dies makes
the others fail with an error instead of hanging forever (torchrun then stops the whole job).

Leaving: call :func:`shutdown` on every path out (``synchronize=True`` after a normal end); an
atexit hook calls it anyway before the interpreter shuts down. With gloo, a process group still
alive while Python finalises aborts the process now and then ("terminate called without an active
exception"): its worker threads release the tensors of the last collective and need the GIL, which a
finalising interpreter no longer hands out.
"""

from __future__ import annotations

import atexit
import datetime
import gc
import hashlib
import os
import socket
import threading
import weakref
from contextlib import contextmanager

import torch
import torch.distributed as dist

from gmmgan._device import resolve_device

__all__ = [
    "all_gather_cat",
    "all_reduce_mean_grads_",
    "all_reduce_min_",
    "all_reduce_sum_",
    "all_reduce_sums",
    "average_buffers_",
    "barrier",
    "broadcast_generator_",
    "broadcast_module_",
    "broadcast_object",
    "broadcast_state_",
    "check_same_file",
    "comm_device",
    "env_world_size",
    "init_from_env",
    "is_distributed",
    "is_main",
    "local_only",
    "local_rank",
    "main_only",
    "rank",
    "shard_range",
    "shutdown",
    "world_size",
]

DEFAULT_TIMEOUT_S = 600


def env_world_size() -> int:
    """WORLD_SIZE as torchrun set it (1 when not launched by torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


_LOCAL = threading.local()


def is_distributed() -> bool:
    """True inside an initialised process group of more than one rank (False in :func:`local_only`)."""
    if getattr(_LOCAL, "depth", 0) > 0:
        return False
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


@contextmanager
def local_only():
    """Inside this block this thread acts alone: :func:`is_distributed` is False, reductions are no-ops.

    For work every rank does on its own full copy of the data, e.g. fitting a GMM prior on the
    same embeddings on every rank under DDP: ``GaussianMixture.fit`` would otherwise treat each
    rank's rows as a shard of one larger data set. ``rank()`` and ``world_size()`` still tell the
    truth, so rank-0-only logging keeps working.
    """
    _LOCAL.depth = getattr(_LOCAL, "depth", 0) + 1
    try:
        yield
    finally:
        _LOCAL.depth -= 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    """Rank 0: the one process that logs, plots and writes checkpoints."""
    return rank() == 0


def _timeout() -> datetime.timedelta:
    raw = os.environ.get("GMMGAN_DIST_TIMEOUT", str(DEFAULT_TIMEOUT_S))
    try:
        seconds = float(raw)
    except ValueError:
        raise ValueError(f"GMMGAN_DIST_TIMEOUT={raw!r} is not a number of seconds.") from None
    if seconds <= 0:
        raise ValueError(f"GMMGAN_DIST_TIMEOUT must be > 0 seconds, got {raw!r}.")
    return datetime.timedelta(seconds=seconds)


def init_from_env(device: str | torch.device = "auto") -> torch.device:
    """Join the process group torchrun described in the environment; return this rank's device.

    Without torchrun (``WORLD_SIZE`` unset or 1) nothing is initialised and ``device`` is resolved
    as usual ('auto' -> cuda if available). Under torchrun, a CUDA device means ``cuda:LOCAL_RANK``
    and the NCCL backend; the CPU means gloo.
    """
    if device == "auto":
        device = resolve_device("auto")
    device = torch.device(device)
    if env_world_size() <= 1 or is_distributed():
        if is_distributed() and device.type == "cuda" and device.index is None:
            device = torch.device("cuda", local_rank())
        return device
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this PyTorch build has no torch.distributed; run one process.")
    if device.type == "cuda":
        if local_rank() >= torch.cuda.device_count():
            raise RuntimeError(
                f"LOCAL_RANK={local_rank()} but only {torch.cuda.device_count()} CUDA device(s) are visible; "
                "start at most that many processes per node (torchrun --nproc_per_node)."
            )
        device = torch.device("cuda", local_rank())
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        backend = "gloo"
    _import_group_defaults()
    dist.init_process_group(backend=backend, timeout=_timeout())
    global _ATEXIT_REGISTERED
    if not _ATEXIT_REGISTERED:  # the group is gone before the interpreter finalises, whatever the path out
        atexit.register(shutdown)
        _ATEXIT_REGISTERED = True
    return device


_ATEXIT_REGISTERED = False


def _import_group_defaults() -> None:
    """Import, before the process group exists, the torch modules whose defaults are ``group.WORLD``.

    ``torch.distributed.nn.functional`` has ``def broadcast(..., group=group.WORLD)`` and the like:
    imported after ``init_process_group`` (torch imports it lazily, e.g. through torch._dynamo when
    the first optimizer is built), those defaults hold the default group for good, so
    ``destroy_process_group`` cannot free it and its gloo threads live on into interpreter shutdown.
    Imported first, the defaults are None.
    """
    try:
        import torch.distributed.nn  # noqa: F401
    except ImportError:  # pragma: no cover - a build without it has no such defaults either
        pass


def shutdown(*, synchronize: bool = False) -> None:
    """Leave the process group (if any) and free it, so no backend thread outlives it; safe to call twice.

    ``synchronize=True`` (a normal end, where every rank calls this): first wait for all ranks (a
    barrier), so no rank closes its connections while a peer still uses them. Leave it False on a
    path out after an error: a peer may be dead or stuck elsewhere, and the barrier would wait for it
    until the collective timeout.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return
    try:
        if synchronize and is_distributed():
            dist.barrier()
    finally:
        group = weakref.ref(dist.group.WORLD)
        dist.destroy_process_group()
        if group() is not None:  # held in a reference cycle (e.g. an exception's frames): free it now
            gc.collect()


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def all_reduce_sum_(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over all ranks, in place; returns it (unchanged in one process)."""
    if is_distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_reduce_min_(tensor: torch.Tensor) -> torch.Tensor:
    """Element-wise minimum of ``tensor`` over all ranks, in place; returns it."""
    if is_distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.MIN)
    return tensor


def all_reduce_mean_grads_(params) -> None:
    """Average the gradients of ``params`` over ranks with one all-reduce (data-parallel training).

    Parameters without a gradient are skipped (the same ones on every rank, since every rank runs
    the same step). A no-op in one process.
    """
    if not is_distributed():  # called every training step: nothing to do in one process
        return
    grads = [p.grad for p in params if p.grad is not None]
    if grads:
        torch._foreach_copy_(grads, all_reduce_sums(*grads))
        torch._foreach_div_(grads, world_size())


def average_buffers_(module) -> None:
    """Average the floating-point buffers (BatchNorm running statistics) of ``module`` over ranks.

    Each rank normalises its own shard of the batch, so running statistics drift apart; averaging
    them before a checkpoint makes every rank save, and sample with, the same network.
    """
    bufs = [b for b in module.buffers() if b.is_floating_point()]
    if is_distributed() and bufs:
        for total, b in zip(all_reduce_sums(*[b.float() for b in bufs]), bufs):
            b.copy_(total / world_size())


def broadcast_module_(module) -> None:
    """Give every rank rank 0's parameters and buffers of ``module`` (in place)."""
    if is_distributed():
        for t in [*module.parameters(), *module.buffers()]:
            dist.broadcast(t.data, src=0)


def broadcast_state_(module) -> None:
    """Load rank 0's ``state_dict`` of ``module`` on every rank, whatever shapes its tensors have here.

    For modules fitted on every rank (a GMM prior): with ``n_components='auto'`` the ranks may
    choose different K (GPU sums are not bitwise reproducible, and a near tie of BIC can flip),
    and :func:`broadcast_module_` cannot broadcast buffers whose sizes differ between ranks. The
    state travels pickled on the CPU; the module must accept new buffer shapes in
    ``load_state_dict`` (gmmgan's fitted modules do).
    """
    if is_distributed():
        state = {k: v.detach().cpu() for k, v in module.state_dict().items()} if is_main() else None
        module.load_state_dict(broadcast_object(state))


def broadcast_object(obj):
    """Rank 0's ``obj`` on every rank (small picklable values, e.g. a run folder's name)."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


class PeerFailedError(RuntimeError):
    """Rank 0 failed in work only it does (writing files); the other ranks stop with this."""


def main_only(fn, what: str):
    """``fn()`` on rank 0 only, and every rank learns at once whether it failed.

    Rank 0 alone writes the run's files; if that fails (disk full, folder removed), rank 0
    raises, and without this the others would wait in their next collective until the timeout
    (``GMMGAN_DIST_TIMEOUT``, 600 s by default). Here rank 0 sends its outcome to all ranks
    (one small broadcast): it re-raises its own error, the others raise :class:`PeerFailedError`
    naming it. Returns ``fn()``'s result on rank 0, None elsewhere. ``what`` completes "rank 0
    failed while ...".
    """
    if not is_distributed():
        return fn()
    result, error = None, None
    if is_main():
        try:
            result = fn()
        except Exception as e:  # noqa: BLE001 - sent to the other ranks, then re-raised below
            error = e
    message = broadcast_object(None if error is None else f"{type(error).__name__}: {error}")
    if error is not None:
        raise error
    if message is not None:
        raise PeerFailedError(f"rank 0 failed while {what} ({message}); this rank stops too. See rank 0's error.")
    return result


def check_same_file(path, hint: str = "") -> None:
    """Raise ValueError on every rank unless ``path`` holds the same bytes on all of them (no-op in one process).

    For a file every rank reads, e.g. the checkpoint on ``--resume``: on several machines each
    rank reads its own node's copy unless the folder is on a filesystem they share, and ranks that
    started from different states (a copy older than rank 0's last checkpoint) would train on,
    apart, without a word. The ranks compare SHA-256 digests (one small all-gather); ``hint``
    ends the message (what to do).
    """
    if not is_distributed():
        return
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    seen = [None] * world_size()  # (digest, host) of every rank
    dist.all_gather_object(seen, (digest.hexdigest(), socket.gethostname()))
    others = [f"{r} (on {host})" for r, (d, host) in enumerate(seen) if d != seen[0][0]]
    if others:
        raise ValueError(f"'{path}' is not the same file on every rank: rank{'s' * (len(others) > 1)} "
                         f"{', '.join(others)} read other bytes than rank 0 (on {seen[0][1]}){hint}")


def all_gather_cat(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate every rank's ``tensor`` along dim 0, in rank order (rows may differ per rank)."""
    if not is_distributed():
        return tensor
    n = torch.tensor([tensor.shape[0]], device=tensor.device)
    sizes = [torch.zeros_like(n) for _ in range(world_size())]
    dist.all_gather(sizes, n)
    sizes = [int(s) for s in sizes]
    padded = tensor.new_zeros((max(sizes), *tensor.shape[1:]))
    padded[: tensor.shape[0]] = tensor
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded)
    return torch.cat([p[:s] for p, s in zip(parts, sizes)])


def comm_device() -> torch.device:
    """Where tensors must live for this process group's collectives: the GPU for NCCL, else the CPU."""
    if is_distributed() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_sums(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Sums over all ranks of several tensors (one dtype) in one collective; new tensors, same devices.

    One flat buffer instead of one call per tensor: the per-call latency, not the bytes, is the
    cost of reducing EM statistics. Returns the inputs themselves in one process.
    """
    if not is_distributed():
        return tensors
    if len({t.dtype for t in tensors}) != 1:
        raise ValueError(f"all_reduce_sums needs tensors of one dtype, got {[t.dtype for t in tensors]}.")
    flat = torch.cat([t.reshape(-1) for t in tensors]).to(comm_device())
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    out, start = [], 0
    for t in tensors:
        out.append(flat[start : start + t.numel()].view(t.shape).to(t.device))
        start += t.numel()
    return tuple(out)


def broadcast_generator_(generator: torch.Generator, src: int = 0) -> torch.Generator:
    """Give every rank rank ``src``'s random state (e.g. a seed drawn from the OS), in place."""
    if is_distributed():
        state = generator.get_state().to(comm_device())
        dist.broadcast(state, src=src)
        generator.set_state(state.cpu())
    return generator


def shard_range(n: int, rank_: int | None = None, world: int | None = None) -> range:
    """The contiguous rows ``[start, stop)`` of ``n`` that rank ``rank_`` owns (sizes differ by <= 1)."""
    rank_ = rank() if rank_ is None else rank_
    world = world_size() if world is None else world
    if not 0 <= rank_ < world:
        raise ValueError(f"rank {rank_} is outside a world of {world} processes.")
    base, extra = divmod(n, world)
    start = rank_ * base + min(rank_, extra)
    return range(start, start + base + (rank_ < extra))
