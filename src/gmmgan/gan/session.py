"""What one call of train() changes in the process, and how a training that stops early ends.

- SIGTERM (``timeout``, ``docker stop``, SLURM) is handled as Ctrl-C while train() runs: a
  :class:`TrainingInterrupted` with the same clean-up and message;
- torch's number of threads (``cpu_threads`` sets it) is put back as it was;
- rank 0 holds the run folder's lock until train() returns;
- a failure before a new run's first checkpoint removes its folder; an interruption or a full disk
  says where the run stands and how to continue it.
"""

from __future__ import annotations

import contextlib
import functools
import signal
import threading
from functools import partial
from pathlib import Path

import torch

from gmmgan import distributed
from gmmgan._files import DiskFullError, disk_full_error, is_disk_full
from gmmgan.gan.checkpoint import CHECKPOINT_NAME
from gmmgan.gan.run_folder import lock_run_dir, remove_unfinished

__all__ = ["TrainingInterrupted", "disk_full_during_training", "hold_run_folder", "interrupts_deferred",
           "removed_if_unfinished", "stopped_by", "train_session"]


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) during training; the message says where the run stands and how to continue it.

    ``signum`` is the signal that stopped it (SIGINT for Ctrl-C); ``gmmgan train`` exits with 128 + it.
    """

    def __init__(self, message: str = "", signum: int = signal.SIGINT):
        super().__init__(message)
        self.signum = int(signum)


def stopped_by(e: BaseException) -> str:
    """' by SIGTERM' for an interruption by SIGTERM, '' for Ctrl-C: the interruption message says which."""
    signum = getattr(e, "signum", signal.SIGINT)
    return "" if signum == signal.SIGINT else f" by {signal.Signals(signum).name}"


# ----------------------------------------------------------------------------------- the session of train()
_SESSION = threading.local()  # this thread's stack of train() calls: what each releases when it returns


def train_session(train_fn):
    """Run ``train_fn`` (train()) with what it changes in the process restored on every exit path.

    - SIGTERM (``timeout``, ``docker stop``, SLURM) is handled as Ctrl-C: a :class:`TrainingInterrupted`
      with the same clean-up and message (:func:`_sigterm_as_interrupt`);
    - torch's number of threads (``cpu_threads`` sets it) and cuDNN's benchmark flag (a sweep sets it)
      are put back as they were;
    - whatever train() hands to :func:`_until_train_returns` (the run folder's lock) is released.
    """

    @functools.wraps(train_fn)
    def wrapper(*args, **kwargs):
        threads = torch.get_num_threads()
        stacks = _SESSION.__dict__.setdefault("stacks", [])
        with contextlib.ExitStack() as stack:
            stack.callback(_restore_threads, threads)
            stack.callback(setattr, torch.backends.cudnn, "benchmark", torch.backends.cudnn.benchmark)
            stack.enter_context(_sigterm_as_interrupt())
            stacks.append(stack)
            try:
                return train_fn(*args, **kwargs)
            finally:
                stacks.pop()

    return wrapper


def _until_train_returns(cm) -> None:
    """Exit the context manager ``cm`` (already entered) when the current train() returns or raises."""
    _SESSION.stacks[-1].push(cm)


def _restore_threads(n: int) -> None:
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


def _raise_interrupt(signum, frame) -> None:
    raise TrainingInterrupted(f"interrupted{stopped_by(TrainingInterrupted(signum=signum))}", signum)


@contextlib.contextmanager
def interrupts_deferred():
    """Ctrl-C and SIGTERM wait until the block has ended, then act as they would have (main thread only).

    A sweep writes its seeds' checkpoints one after the other; stopped in between, some seeds would
    be a snapshot ahead of the others and the sweep could not go on as one. Signals that arrive
    meanwhile are held and handed to the previous handlers once the block is done.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    names = [s for s in (signal.SIGINT, getattr(signal, "SIGTERM", None)) if s is not None]
    previous = {s: signal.getsignal(s) for s in names}
    for s in names:
        if callable(previous[s]):  # an ignored or default (non-Python) disposition stays as it is
            signal.signal(s, lambda signum, frame: held.append(signum))
    try:
        yield
    finally:
        for s in names:
            if callable(previous[s]):
                signal.signal(s, previous[s])
        if held:
            previous[held[0]](held[0], None)


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """In the main thread: SIGTERM raises :class:`TrainingInterrupted` as Ctrl-C raises KeyboardInterrupt.

    The previous handler comes back after. Elsewhere (other threads, no SIGTERM), or where the
    process was told to ignore SIGTERM (SIG_IGN, kept as it is, as Python keeps an ignored
    SIGINT), nothing changes.
    """
    sigterm = getattr(signal, "SIGTERM", None)
    if sigterm is None or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(sigterm)
    if previous == signal.SIG_IGN:
        yield
        return
    signal.signal(sigterm, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(sigterm, previous if previous is not None else signal.SIG_DFL)


def hold_run_folder(run_dir: Path) -> None:
    """Rank 0 locks the run folder until train() returns (a second training there is an error) and clears stale temps."""
    lock = distributed.main_only(partial(lock_run_dir, run_dir), "locking the run folder")
    if lock is not None:
        _until_train_returns(lock)


def disk_full_during_training(e: OSError, run_dir: Path, then: str) -> DiskFullError:
    """The one-line error of a full disk during training: the file it was writing, then ``then``."""
    file = e.filename or f"a file in {run_dir}"
    return disk_full_error(file, e, message=f"no space left on the device while writing '{file}' "
                                            f"({e.strerror or 'No space left on device'}){then}")


@contextlib.contextmanager
def removed_if_unfinished(run_dir: Path, created: bool, checkpoint_nimg: int):
    """On a failure inside, remove the run folder this training created if it holds no checkpoint yet.

    Ctrl-C (or SIGTERM) inside becomes :class:`TrainingInterrupted`, saying there is nothing to
    resume, or (a resumed run) where its checkpoint is; a full disk says which file and where the
    run stands (its checkpoint at ``checkpoint_nimg``, if any).
    """
    try:
        yield
    except BaseException as e:
        removed = created and remove_unfinished(run_dir, CHECKPOINT_NAME)
        resumable = not removed and (run_dir / CHECKPOINT_NAME).is_file()
        if isinstance(e, KeyboardInterrupt):
            where = (f"; the last checkpoint, {run_dir / CHECKPOINT_NAME}, is at {checkpoint_nimg / 1000:.1f} kimg. "
                     f"Continue with: gmmgan train --resume {run_dir}" if resumable else
                     " before the first checkpoint: nothing to resume"
                     + (f"; the new run folder {run_dir} was removed." if removed else "."))
            raise TrainingInterrupted(f"interrupted{stopped_by(e)}{where}", getattr(e, "signum", signal.SIGINT)) from None
        if isinstance(e, OSError) and is_disk_full(e):
            if resumable:
                then = (f". The last checkpoint, {run_dir / CHECKPOINT_NAME}, is intact at {checkpoint_nimg / 1000:.3f}"
                        f" kimg: free some space, then continue with: gmmgan train --resume {run_dir}")
            else:
                then = (" before the first checkpoint: nothing to resume"
                        + (f"; the new run folder {run_dir} was removed" if removed else "")
                        + ". Free some space and start the run again.")
            raise disk_full_during_training(e, run_dir, then) from None
        raise
