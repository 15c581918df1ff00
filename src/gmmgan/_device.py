"""The one rule for a device setting ('auto', 'cpu', 'cuda', 'cuda:N') and its resolver to a ``torch.device``.

Used by the commands (``--device``, checked by ``gmmgan.commands._args.device_name`` while the
arguments are parsed), by training (the config's ``device``) and by the mixture estimators
(``device=``, see ``gmmgan.mixture._data_source.resolve_device``). gmmgan computes on the CPU or
on CUDA GPUs: other PyTorch device types (mps, xpu, meta, ...) are refused here, with one line that
says so, rather than failing later inside torch. torch is imported on use only, so that importing
this module (the CLI does, at start-up) stays fast.
"""

from __future__ import annotations

import re

__all__ = ["DEVICE_NAMES", "device_name_error", "device_name_problem", "resolve_device"]

DEVICE_NAMES = "auto, cpu, cuda or cuda:N"
_VALID = re.compile(r"auto|cpu|cuda(:\d+)?")


def device_name_problem(name) -> str | None:
    """None if ``name`` is a device setting gmmgan accepts, else why not: 'unknown' or 'unsupported'.

    'unsupported' is a device PyTorch knows but gmmgan does not compute on (mps, xpu, meta, ...).
    """
    if isinstance(name, str) and _VALID.fullmatch(name):
        return None
    import torch

    try:
        torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        return "unknown"
    return "unsupported"


def device_name_error(name, option: str = "--device") -> str | None:
    """The one-line error for a device setting ``name`` written as ``option`` (None if it is fine)."""
    problem = device_name_problem(name)
    if problem is None:
        return None
    if problem == "unknown":
        return f"unknown {option} {name!r}; use {DEVICE_NAMES}"
    return (f"unsupported {option} {name!r}: gmmgan computes on the CPU or on CUDA GPUs only; "
            f"use {DEVICE_NAMES}")


def resolve_device(name: str, *, spelling: str = "--device {}"):
    """The torch.device of a device setting: 'auto' is CUDA where there is one, else the CPU.

    Parameters
    ----------
    name : str
        'auto', 'cpu', 'cuda' or 'cuda:N'.
    spelling : str, default='--device {}'
        How the user wrote the setting, with ``{}`` for the value: ``'--device {}'`` (command line)
        or ``'device={}'`` (a training config); error messages use it, so they name what to change.

    Raises
    ------
    ValueError
        For an unknown name, a PyTorch device gmmgan does not compute on (mps, xpu, meta, ...), or
        CUDA asked for where there is none.
    """
    import torch

    option = spelling.split("{}")[0].strip(" ='\"")
    error = device_name_error(name, option)
    if error is not None:
        raise ValueError(error)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{spelling.format(name)} but CUDA is not available here; use {spelling.format('cpu')} "
                         f"(or {spelling.format('auto')}: CUDA where there is one).")
    return dev
