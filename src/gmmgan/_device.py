"""The one resolver of a device setting ('auto', 'cpu', 'cuda', 'cuda:N') to a ``torch.device``.

Used by the commands (``--device``) and by training (the config's ``device``). torch is imported on
use only, so that importing this module (the CLI does, at start-up) stays fast.
"""

from __future__ import annotations

__all__ = ["resolve_device"]


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
        For an unknown name, or CUDA asked for where there is none.
    """
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    option = spelling.split("{}")[0].strip(" =")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ValueError(f"unknown {option} {name!r}; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{spelling.format(name)} but CUDA is not available here; use {spelling.format('cpu')} "
                         f"(or {spelling.format('auto')}: CUDA where there is one).")
    return dev
