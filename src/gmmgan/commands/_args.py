"""argparse types shared by the commands: whole numbers, bounded floats, device names.

Each raises ``argparse.ArgumentTypeError`` with what was wrong, so argparse prints a one-line
usage error naming the option. A --device value becomes a ``torch.device`` on use, through
:func:`gmmgan._device.resolve_device`.
"""

from __future__ import annotations

import argparse
import math

__all__ = ["device_name", "float_type", "non_negative_int", "positive_int"]


def _int_at_least(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
    return value


def positive_int(text: str) -> int:
    return _int_at_least(text, 1)


def non_negative_int(text: str) -> int:
    return _int_at_least(text, 0)


def float_type(minimum: float, inclusive: bool):
    """A finite float at least (``inclusive``) or greater than ``minimum``."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not (value >= minimum if inclusive else value > minimum) or not math.isfinite(value):
            raise argparse.ArgumentTypeError(
                f"must be a finite number {'at least' if inclusive else 'greater than'} {minimum:g}, got {text}")
        return value

    return parse


def device_name(text: str) -> str:
    """--device: auto, cpu, cuda, cuda:N (the rule of :mod:`gmmgan._device`; whether CUDA is there is checked on use)."""
    from gmmgan._device import device_name_error

    error = device_name_error(text, "device")
    if error is not None:
        raise argparse.ArgumentTypeError(error)
    return text
