"""Checkpoints: the full training state for exact resume, and a small generator snapshot for sampling.

A run folder holds

- ``checkpoint.pt``: everything needed to continue exactly (G, D, EMA of G, optimizers, the prior,
  every RNG state, the batcher position, the image count). Plain tensors and Python values only,
  loaded with ``torch.load(..., weights_only=True)``, so loading never runs code from the file.
- ``generator.safetensors``: the EMA generator and the prior (tensors ``G.*`` and ``prior.*``), with
  the resolved config as JSON in the header; all ``gmmgan sample`` needs.

:func:`training_state` builds the checkpoint's dict and :func:`load_training_state` puts it back;
:func:`save_generator` writes the snapshot of the nets that are sampled and evaluated, kept apart
from the full training state. Both files are written atomically (a temporary file in the same
folder, then ``os.replace``): a crash while saving leaves the previous good file in place. A
missing or unreadable file is an error that names it, never a silent fresh start.
"""

from __future__ import annotations

import json
import pickle
import re
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gmmgan._files import atomic_write
from gmmgan.gan.config import TrainConfig, config_to_dict
from gmmgan.gan.train_step import load_optimizer_state

__all__ = [
    "CHECKPOINT_NAME",
    "SNAPSHOT_NAME",
    "atomic_write",
    "load_checkpoint",
    "load_resumable",
    "load_snapshot",
    "load_training_state",
    "save_checkpoint",
    "save_generator",
    "save_snapshot",
    "training_state",
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
        The file is truncated, corrupt, or not a gmmgan training checkpoint (one holding Python objects
        other than tensors and plain containers is refused unread: loading it could run code).
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
        with warnings.catch_warnings():  # a foreign pickle's protocol: it is refused below, in other words
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        # torch's refusal to unpickle anything but tensors and plain containers. Its hint that
        # weights_only=False "will likely succeed" is not repeated: that would run code from the file.
        text = str(e)
        found = re.search(r"GLOBAL (\S+)", text)
        found = found[1] if found else next(iter(_foreign_globals(path)), None)
        if found or "unrecognized function" in text or "Can only create new object" in text:
            raise ValueError(
                f"'{path}' is not a gmmgan checkpoint: it holds Python objects other than tensors and plain "
                f"containers{f' ({found})' if found else ''}, which gmmgan never writes, so it was not loaded. "
                "gmmgan reads only tensors and plain values from a checkpoint and never runs code from a file; "
                "resume a run folder written by 'gmmgan train', or start a new run."
            ) from None
        raise ValueError(f"checkpoint '{path}' is corrupt or truncated and cannot be loaded (damaged pickle data); "
                         "restore it from a copy or start a new run.") from None
    except Exception as e:  # noqa: BLE001 - zip and EOF errors all mean: not a readable checkpoint
        raise ValueError(
            f"checkpoint '{path}' is corrupt or truncated and cannot be loaded ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}); restore it from a copy or start a new run."
        ) from None
    if not isinstance(state, dict) or state.get("format") != _CKPT_FORMAT:
        raise ValueError(f"'{path}' is not a gmmgan training checkpoint (no '{_CKPT_FORMAT}' marker).")
    if state.get("version") != _VERSION:
        raise ValueError(f"checkpoint '{path}' has version {state.get('version')!r}; this gmmgan reads {_VERSION}.")
    return state


def _foreign_globals(path: Path) -> list[str]:
    """The classes and functions a pickle names, other than torch's own (read with pickletools: nothing runs).

    torch's refusal does not always name them (a pickle of protocol 4 stops it at the first frame).
    """
    import pickletools
    import zipfile

    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                data = z.read(next(n for n in z.namelist() if n.endswith("data.pkl")))
        else:
            data = path.read_bytes()
    except (OSError, StopIteration, zipfile.BadZipFile, KeyError):
        return []
    names, strings = [], []
    try:
        for op, arg, _ in pickletools.genops(data):
            if op.name == "GLOBAL":
                names.append(arg.replace(" ", "."))
            elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                names.append(f"{strings[-2]}.{strings[-1]}")
            elif isinstance(arg, str):
                strings.append(arg)
    except Exception:  # noqa: BLE001 - damaged data: what was read so far
        pass
    return [n for n in names if not n.startswith(("torch.", "collections.OrderedDict"))]


def load_resumable(run_dir: Path, total_kimg: float) -> dict[str, Any]:
    """The checkpoint of the run in ``run_dir``, checked to be short of ``total_kimg`` (before anything is written)."""
    # On the CPU: RNG states must stay CPU tensors; load_state_dict moves weights to their device.
    ckpt = load_checkpoint(run_dir / CHECKPOINT_NAME, map_location="cpu")
    if int(ckpt["cur_nimg"]) >= round(total_kimg * 1000):
        raise ValueError(
            f"run '{run_dir}' is already at {int(ckpt['cur_nimg']) / 1000:.1f} kimg and schedule.total_kimg "
            f"is {total_kimg:g}: nothing to continue. To train longer, raise it, e.g. gmmgan train "
            f"--resume {run_dir} schedule.total_kimg={2 * max(total_kimg, int(ckpt['cur_nimg']) / 1000):.3g}"
        )
    return ckpt


def training_state(G: nn.Module, D: nn.Module, G_ema: nn.Module, prior: nn.Module, opt_g, opt_d, batcher,
                   zgen: torch.Generator, device: torch.device, *, cur_nimg: int, step: int,
                   cfg: TrainConfig) -> dict[str, Any]:
    """Everything a run needs to go on exactly: nets, optimizers, batch order, random streams, progress, config."""
    return {
        "G": G.state_dict(), "D": D.state_dict(), "G_ema": G_ema.state_dict(), "prior": prior.state_dict(),
        "opt_g": _plain_lrs(opt_g.state_dict()), "opt_d": _plain_lrs(opt_d.state_dict()), "batcher": batcher.state_dict(),
        "z_generator": zgen.get_state(), "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if device.type == "cuda" else [],
        "cur_nimg": cur_nimg, "step": step, "config": config_to_dict(cfg),
    }


def _plain_lrs(state: dict) -> dict:
    """An optimizer state dict with its learning rates as floats: a CUDA-graph run with ``schedule.lr_decay``
    keeps them in device tensors (:meth:`gmmgan.gan.train_step.TrainStep.set_lr_scale`), a checkpoint holds numbers."""
    for group in state["param_groups"]:  # state_dict() made these dicts: changing them leaves the optimizer alone
        if torch.is_tensor(group.get("lr")):
            group["lr"] = float(group["lr"])
    return state


def load_training_state(ckpt: dict[str, Any], run_dir: Path, G: nn.Module, D: nn.Module, G_ema: nn.Module,
                        prior: nn.Module, opt_g, opt_d, batcher, zgen: torch.Generator, device: torch.device) -> None:
    """Nets, optimisers, batch order and random streams from a checkpoint, as they were when it was saved."""
    try:
        for module, key in ((G, "G"), (D, "D"), (G_ema, "G_ema"), (prior, "prior")):
            module.load_state_dict(ckpt[key])
        load_optimizer_state(opt_g, ckpt["opt_g"])
        load_optimizer_state(opt_d, ckpt["opt_d"])
        batcher.load_state_dict(ckpt["batcher"])
    except (RuntimeError, ValueError, KeyError) as e:
        raise ValueError(
            f"checkpoint '{run_dir / CHECKPOINT_NAME}' does not fit this config ({str(e).splitlines()[0]}); "
            "resume with the run's own settings (only schedule.* and similar may change)."
        ) from None
    zgen.set_state(ckpt["z_generator"])
    torch.set_rng_state(ckpt["torch_rng"])
    gpu = device.index if device.index is not None else (torch.cuda.current_device() if device.type == "cuda" else 0)
    if device.type == "cuda" and len(ckpt["cuda_rng"]) > gpu:  # the state of this run's own GPU
        torch.cuda.set_rng_state(ckpt["cuda_rng"][gpu], device)


def save_generator(path: str | Path, G_ema: nn.Module, prior: nn.Module, *, cfg: TrainConfig,
                   data_shape: tuple[int, ...], cur_nimg: int, step: int) -> Path:
    """The snapshot ``gmmgan sample`` and ``gmmgan eval`` read: the EMA generator, the prior and what rebuilds them."""
    meta = {"config": config_to_dict(cfg), "data_shape": list(data_shape), "z_dim": prior.z_dim,
            "kimg": cur_nimg / 1000, "step": step}
    return save_snapshot(path, G_ema.state_dict(), prior.state_dict(), meta)


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
        seeds = sorted(p.parent.name for p in path.parent.glob(f"seed-*/{SNAPSHOT_NAME}"))
        if seeds:  # the folder of a seed sweep (gmmgan.gan.sweep): one run folder per seed inside
            raise FileNotFoundError(
                f"'{path.parent}' is the folder of a seed sweep ({len(seeds)} seeds); give one seed's run folder, "
                f"e.g. {path.parent / seeds[0]} (its summary.json has the sweep's metrics).")
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
    # The run's config and data shape rebuild the networks (gmmgan.gan.sampling.load_generator): a snapshot needs both.
    if not isinstance(metadata, dict) or not isinstance(metadata.get("config"), dict) or "data_shape" not in metadata:
        raise ValueError(
            f"generator snapshot '{path}' has no readable metadata (the run's config); the file is corrupt. "
            "Re-run or resume training to write it again.")
    g = {k[2:]: v for k, v in tensors.items() if k.startswith("G.")}
    p = {k[6:]: v for k, v in tensors.items() if k.startswith("prior.")}
    return g, p, metadata
