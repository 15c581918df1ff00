"""Checkpoints: the full training state for exact resume, and a small generator snapshot for sampling.

A run folder holds

- ``checkpoint.pt``: everything needed to continue exactly (G, D, EMA of G, optimizers, the prior,
  every RNG state, the batcher position, the image count). Plain tensors and Python values only,
  loaded with ``torch.load(..., weights_only=True)``, so loading never runs code from the file.
- ``generator.safetensors``: the EMA generator and the prior (tensors ``G.*`` and ``prior.*``), with
  the resolved config as JSON in the header; all ``gmmgan sample`` needs.

Both are written atomically (a temporary file in the same folder, then ``os.replace``): a crash
while saving leaves the previous good file in place. A missing or unreadable file is an error that
names it, never a silent fresh start.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from gmmgan._files import atomic_write

__all__ = [
    "CHECKPOINT_NAME",
    "SNAPSHOT_NAME",
    "atomic_write",
    "load_checkpoint",
    "load_snapshot",
    "save_checkpoint",
    "save_snapshot",
]

CHECKPOINT_NAME = "checkpoint.pt"
SNAPSHOT_NAME = "generator.safetensors"
_CKPT_FORMAT, _SNAP_FORMAT, _VERSION = "gmmgan.gan.training_loop-state", "gmmgan.generator", 1


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write the training-state dict ``state`` (tensors, state dicts, Python scalars) atomically."""
    payload = {"format": _CKPT_FORMAT, "version": _VERSION, **state}
    return atomic_write(path, lambda tmp: torch.save(payload, tmp))


def load_checkpoint(path: str | Path, map_location="cpu") -> dict[str, Any]:
    """Read a file written by :func:`save_checkpoint` (``weights_only=True``).

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    ValueError
        The file is truncated, corrupt, or not a gmmgan training checkpoint.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"checkpoint '{path}' is a folder; give the {CHECKPOINT_NAME} file inside a run folder.")
    if not path.is_file():
        raise FileNotFoundError(
            f"checkpoint '{path}' does not exist; resume needs a run folder written by 'gmmgan train' "
            "that got as far as its first snapshot (schedule.snapshot_kimg)."
        )
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - pickle, zip and EOF errors all mean: not a readable checkpoint
        raise ValueError(
            f"checkpoint '{path}' is corrupt or truncated and cannot be loaded ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}); restore it from a copy or start a new run."
        ) from None
    if not isinstance(state, dict) or state.get("format") != _CKPT_FORMAT:
        raise ValueError(f"'{path}' is not a gmmgan training checkpoint (no '{_CKPT_FORMAT}' marker).")
    if state.get("version") != _VERSION:
        raise ValueError(f"checkpoint '{path}' has version {state.get('version')!r}; this gmmgan reads {_VERSION}.")
    return state


def save_snapshot(path: str | Path, generator_state: dict[str, torch.Tensor], prior_state: dict[str, torch.Tensor],
                  metadata: dict[str, Any]) -> Path:
    """Write the sampling snapshot: tensors ``G.<name>``, ``prior.<name>`` and JSON ``metadata``."""
    from safetensors.torch import save_file

    tensors = {f"G.{k}": v.detach().cpu().contiguous().clone() for k, v in generator_state.items()}
    tensors.update({f"prior.{k}": v.detach().cpu().contiguous().clone() for k, v in prior_state.items()})
    header = {"format": _SNAP_FORMAT, "version": str(_VERSION), "metadata": json.dumps(metadata)}
    return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=header))


def load_snapshot(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, Any]]:
    """Read :func:`save_snapshot`'s file: (generator state, prior state, metadata).

    ``path`` may be the file or the run folder holding ``generator.safetensors``.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    path = Path(path)
    if path.is_dir():
        path = path / SNAPSHOT_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"generator snapshot '{path}' does not exist; give a run folder written by 'gmmgan train' "
            "(it writes the snapshot every schedule.snapshot_kimg and at the end)."
        )
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise ValueError(f"generator snapshot '{path}' is corrupt or truncated ({e}); re-run or resume training.") from None
    if header.get("format") != _SNAP_FORMAT:
        raise ValueError(f"'{path}' is a safetensors file but not a gmmgan generator snapshot.")
    try:
        metadata = json.loads(header["metadata"])
    except (KeyError, ValueError):
        metadata = None
    # The run's config and data shape rebuild the networks (gmmgan.gan.training_loop.load_generator): a snapshot needs both.
    if not isinstance(metadata, dict) or not isinstance(metadata.get("config"), dict) or "data_shape" not in metadata:
        raise ValueError(
            f"generator snapshot '{path}' has no readable metadata (the run's config); the file is corrupt. "
            "Re-run or resume training to write it again.")
    g = {k[2:]: v for k, v in tensors.items() if k.startswith("G.")}
    p = {k[6:]: v for k, v in tensors.items() if k.startswith("prior.")}
    return g, p, metadata
