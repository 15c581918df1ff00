"""The run folder of a training: making a new one, trimming its log on resume, removing an unfinished one.

A run folder ``out/NNNNN-<data>-<prior>`` holds config.yaml, the training log (log.jsonl, one JSON
line per log tick), checkpoint.pt, the generator snapshot and sample grids (see
:mod:`gmmgan.gan.training_loop`). Only rank 0 calls these functions.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from gmmgan._files import atomic_write

__all__ = ["make_run_dir", "remove_unfinished", "trim_log"]


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
