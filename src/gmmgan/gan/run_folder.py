"""The run folder of a training: making or claiming one, its config and log, removing an unfinished one.

A run folder ``out/NNNNN-<data>-<prior>`` holds config.yaml, the training log (log.jsonl, one JSON
line per log tick, and TensorBoard events if TensorBoard imports), checkpoint.pt, the generator
snapshot (:mod:`gmmgan.gan.checkpoint`), sample grids in samples/ and, at the end, final.png and
(2-D data) metrics.json (see :mod:`gmmgan.gan.training_loop`). Only rank 0 calls these functions;
every rank makes a :class:`TrainingLog`, which writes on rank 0.

One training at a time: :func:`lock_run_dir` takes an exclusive advisory lock on the hidden file
``.lock`` (``fcntl.flock``, which the system drops when the process ends, even by ``kill -9``: a
stale lock file blocks nothing), so a second training of the same folder stops at once with
:class:`RunFolderInUseError`; holding it, it removes the temporary files a killed writer left.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
from functools import partial
from pathlib import Path

from gmmgan import distributed
from gmmgan._files import atomic_write, disk_full_error, is_disk_full, stale_temp_files
from gmmgan.gan.checkpoint import CHECKPOINT_NAME, SNAPSHOT_NAME
from gmmgan.gan.config import TrainConfig, save_config

__all__ = [
    "CONFIG_NAME",
    "FINAL_PLOT_NAME",
    "LOCK_NAME",
    "LOG_NAME",
    "METRICS_NAME",
    "SAMPLES_DIR",
    "SNAPSHOTS_DIR",
    "RunFolderInUseError",
    "RunFolderLock",
    "TrainingLog",
    "claim_run_dir",
    "keep_snapshot",
    "lock_run_dir",
    "make_run_dir",
    "make_samples_dir",
    "record_config",
    "remove_stale_temp_files",
    "remove_unfinished",
    "sample_path",
    "snapshot_path",
    "trim_log",
]

CONFIG_NAME, LOG_NAME, METRICS_NAME, FINAL_PLOT_NAME = "config.yaml", "log.jsonl", "metrics.json", "final.png"
SAMPLES_DIR, SNAPSHOTS_DIR, LOCK_NAME = "samples", "snapshots", ".lock"
# The files a training writes at the top of its folder (their temporaries are its own, too).
_OWN_FILES = (CONFIG_NAME, LOG_NAME, METRICS_NAME, FINAL_PLOT_NAME, CHECKPOINT_NAME, SNAPSHOT_NAME)


class RunFolderInUseError(OSError):
    """Another process is training in this run folder (it holds the folder's lock)."""

    def __init__(self, message: str):
        super().__init__(message)  # one argument: str() is the message


class RunFolderLock:
    """The exclusive advisory lock of a run folder on ``RUN/.lock``, held until :meth:`release` (or the process ends).

    ``fcntl.flock``, non-blocking; the lock file records the holder's PID and host. Where there is
    no ``fcntl`` (Windows) or the file system refuses locks (some network mounts) nothing is locked
    (``locked`` is False) and training goes on as before.
    """

    def __init__(self, run_dir: str | Path):
        self.run_dir, self.path = Path(run_dir), Path(run_dir) / LOCK_NAME
        self._fd: int | None = None

    @property
    def locked(self) -> bool:
        return self._fd is not None

    def acquire(self) -> RunFolderLock:
        """Take the lock, or raise :class:`RunFolderInUseError` naming the folder and the holder's PID."""
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX: no locking
            return self
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = _read_holder(fd)
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise RunFolderInUseError(
                    f"run folder '{self.run_dir}' is in use by another training{holder} (it holds {self.path}); "
                    "two trainings in one folder would mix their checkpoints and logs. Wait for it to end or "
                    "stop it, then try again."
                ) from None
            return self  # flock not supported here (ENOLCK, EOPNOTSUPP, ...): not locked
        try:  # who holds it, for the message of the next one
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
        except OSError:
            pass  # a full disk: the lock holds all the same
        self._fd = fd
        return self

    def release(self) -> None:
        """Drop the lock (closing the file does); the file stays, so nobody locks a file being removed."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self) -> None:  # a lock dropped without release() does not hold the folder for ever
        self.release()

    def __enter__(self) -> RunFolderLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _read_holder(fd: int) -> str:
    """' (PID 123)' or ' (PID 123 on host h)' from the lock file, '' if it says nothing readable."""
    try:
        words = os.pread(fd, 200, 0).decode("utf-8", "replace").split()
    except (OSError, AttributeError):
        return ""
    if not words or not words[0].isdigit():
        return ""
    host = f" on host {words[1]}" if len(words) > 1 and words[1] != socket.gethostname() else ""
    return f" (PID {words[0]}{host})"


def lock_run_dir(run_dir: str | Path) -> RunFolderLock:
    """Lock ``run_dir`` for this training (:class:`RunFolderLock`), then remove what a killed writer left there."""
    lock = RunFolderLock(run_dir).acquire()
    remove_stale_temp_files(run_dir)
    return lock


def remove_stale_temp_files(run_dir: str | Path) -> list[Path]:
    """Remove the hidden temporaries of the run folder's own files (``.checkpoint.pt.XXXXXXXX.tmp``, ...).

    A process killed while writing one atomically leaves it behind, and nothing else would ever
    remove it. Only names of the atomic writer's pattern for this folder's files (and the sample
    and snapshot pictures in their subfolders) go; call it only while holding the folder's lock.
    """
    run_dir = Path(run_dir)
    stale = stale_temp_files(run_dir, _OWN_FILES)
    stale += stale_temp_files(run_dir / SAMPLES_DIR, _is_sample_name)
    stale += stale_temp_files(run_dir / SNAPSHOTS_DIR, _is_snapshot_name)
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def _is_sample_name(name: str) -> bool:
    return name.startswith("samples-") and name.endswith("kimg.png")


def make_run_dir(out: str | Path, desc: str) -> Path:
    """A new folder ``out/NNNNN-desc`` numbered after the runs already in ``out``.

    ``mkdir`` without ``exist_ok``: if another training took the same number in the meantime,
    the next number is tried.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ids = [int(p.name[:5]) for p in out.iterdir() if p.is_dir() and p.name[:5].isdigit()]
    number = max(ids, default=-1) + 1
    while True:
        run_dir = out / f"{number:05d}-{desc}"
        try:
            run_dir.mkdir()
            return run_dir
        except FileExistsError:
            number += 1


def claim_run_dir(out: str | Path, desc: str, run_dir: str | Path | None) -> tuple[Path, bool]:
    """The folder of a new run and whether this training created it: ``run_dir`` if given, else a new one in ``out``.

    A given folder may exist already (it is used as it is, and never removed); a missing one is made.
    """
    if run_dir is None:
        return make_run_dir(out, desc), True
    existed = Path(run_dir).exists()
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    return Path(run_dir), not existed


def record_config(run_dir: Path, cfg: TrainConfig, resumed_at_kimg: float | None = None) -> None:
    """Write the run's config.yaml; on resume also drop the log lines past the checkpoint (they are redone)."""
    save_config(cfg, run_dir / CONFIG_NAME)
    if resumed_at_kimg is not None:
        trim_log(run_dir / LOG_NAME, resumed_at_kimg)


def make_samples_dir(run_dir: Path) -> None:
    """The samples/ folder, made once the run's first checkpoint exists (a resumed run has it already)."""
    (run_dir / SAMPLES_DIR).mkdir(exist_ok=True)


def sample_path(run_dir: Path, kimg: float) -> Path:
    """Where the sample plot or grid at ``kimg`` goes: ``samples/samples-000001.500kimg.png``."""
    return run_dir / SAMPLES_DIR / f"samples-{kimg:010.3f}kimg.png"


def snapshot_path(run_dir: Path, kimg: float) -> Path:
    """Where the kept generator snapshot of ``kimg`` goes: ``snapshots/generator-000001.500kimg.safetensors``."""
    return run_dir / SNAPSHOTS_DIR / f"generator-{kimg:010.3f}kimg.safetensors"


def _is_snapshot_name(name: str) -> bool:
    return name.startswith("generator-") and name.endswith("kimg.safetensors")


def keep_snapshot(run_dir: Path, kimg: float, keep: int) -> list[Path]:
    """Copy the run's generator.safetensors (just written at ``kimg``) into snapshots/, keeping the last ``keep``.

    The older copies beyond ``keep`` are removed (by their kimg); returns the removed paths.
    ``keep`` = 0 does nothing (copies kept by an earlier setting are left alone).
    """
    if keep <= 0:
        return []
    target = snapshot_path(run_dir, kimg)
    atomic_write(target, partial(shutil.copyfile, run_dir / SNAPSHOT_NAME))
    kept = sorted((p for p in target.parent.iterdir() if _is_snapshot_name(p.name)), key=_snapshot_kimg)
    old = kept[:-keep]
    for p in old:
        p.unlink(missing_ok=True)
    return old


def _snapshot_kimg(path: Path) -> float:
    try:
        return float(path.name.removeprefix("generator-").removesuffix("kimg.safetensors"))
    except ValueError:
        return -1.0


def trim_log(path: str | Path, kimg: float) -> int:
    """Drop the lines of a training log written after ``kimg`` (the checkpoint a run resumes from).

    A run stopped between two checkpoints has logged past its last one; resuming repeats those
    steps, and without this the log would list them twice. Lines that are not JSON (a line cut
    off by a crash) go too. Returns how many lines were dropped; rewrites the file atomically.
    """
    path = Path(path)
    if not path.is_file():
        return 0
    kept, dropped = [], 0
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            keep = float(json.loads(line)["kimg"]) <= kimg + 1e-9
        except (ValueError, KeyError, TypeError):
            keep = False
        if keep:
            kept.append(line)
        else:
            dropped += 1
    if dropped:
        text = "".join(line + "\n" for line in kept)
        atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return dropped


def remove_unfinished(run_dir: str | Path, checkpoint_name: str) -> bool:
    """Remove a run folder this training created if it holds no checkpoint yet; True if removed.

    Used when a new run fails or is interrupted before its first checkpoint: what the folder
    holds then (config.yaml, an empty samples folder) was written by this training alone and
    cannot be resumed, so an empty numbered folder is not left behind.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir() or (run_dir / checkpoint_name).exists():
        return False
    shutil.rmtree(run_dir, ignore_errors=True)
    return True


class TrainingLog:
    """Where a log tick goes: a line of log.jsonl and TensorBoard scalars (rank 0), and the progress bar.

    The sample pictures go to TensorBoard too (:meth:`add_picture`, images under the tag ``samples``).

    Every rank makes one and calls :meth:`write` at the same ticks (a failure to write the log
    file stops every rank, :func:`gmmgan.distributed.main_only`); the progress bar is shown on
    rank 0 when ``progress`` and there is training left. :meth:`close` closes it all.
    """

    def __init__(self, run_dir: Path, console, cur_nimg: int, total: int, *, progress: bool):
        # Opened for appending: a resumed run goes on where its trimmed log ends.
        self.file = distributed.main_only(partial(open, run_dir / LOG_NAME, "a", encoding="utf-8"), "opening the log")
        self.tb = _tensorboard(run_dir) if distributed.is_main() else None
        self.progress, self._unwritten = None, False
        if progress and cur_nimg < total:
            from rich.progress import (
                BarColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.progress = Progress(
                TextColumn("[bold]train"), BarColumn(), TextColumn("{task.completed:.1f}/{task.total:.1f} kimg"),
                TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(), console=console,
                transient=False)
            self.progress.add_task("train", total=total / 1000, completed=cur_nimg / 1000, info="")
            self.progress.start()

    def write(self, entry: dict, cur_nimg: int, info: str) -> None:
        """``entry`` as a JSON line and its losses and speed as TensorBoard scalars; ``info`` beside the bar.

        A full disk is a :class:`gmmgan._files.DiskFullError` naming log.jsonl (a line cut off there
        is dropped on resume, :func:`trim_log`).
        """
        distributed.main_only(partial(self._append, entry), "writing the log")
        if self.tb is not None:
            for k in ("loss_d", "loss_g", "images_per_s"):
                self.tb.add_scalar(k, entry[k], cur_nimg)
        if self.progress is not None:
            self.progress.update(self.progress.task_ids[0], info=info)

    def add_picture(self, path: Path, cur_nimg: int, tag: str = "samples") -> None:
        """The sample plot or grid just written to ``path`` as a TensorBoard image (when TensorBoard imports)."""
        if self.tb is None:
            return
        import numpy as np
        from PIL import Image

        with Image.open(path) as im:
            picture = np.asarray(im.convert("RGB"))
        self.tb.add_image(tag, picture, cur_nimg, dataformats="HWC")

    def show_progress(self, cur_nimg: int) -> None:
        if self.progress is not None:
            self.progress.update(self.progress.task_ids[0], completed=cur_nimg / 1000)

    def _append(self, entry: dict) -> None:
        try:
            _append(self.file, entry)
        except OSError as e:
            if not is_disk_full(e):
                raise
            self._unwritten = True  # close() must not fail again on the buffered rest
            raise disk_full_error(Path(self.file.name), e) from e

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
        if self.file is not None:
            try:
                self.file.close()
            except OSError:
                if not self._unwritten:
                    raise
        if self.tb is not None:
            self.tb.close()


def _append(log_file, entry: dict) -> None:
    log_file.write(json.dumps(entry) + "\n")
    log_file.flush()  # the log of a crashed run is complete up to its last tick


def _tensorboard(run_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter  # optional
        return SummaryWriter(str(run_dir))
    except Exception:  # noqa: BLE001 - TensorBoard is optional; any import failure means: none
        return None
