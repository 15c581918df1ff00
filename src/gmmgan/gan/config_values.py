"""One config value from YAML or a command line as the type of its dataclass field (``"1e-3"`` -> 0.001).

Used by :mod:`gmmgan.gan.config` for every field of the training config; the errors name the
dotted key (``optim.g_lr must be a number, got 'fast'.``).
"""

from __future__ import annotations

import math
import types
import typing

from gmmgan._seeds import parse_seeds

__all__ = ["check_choice", "check_positive", "coerce", "type_name"]


def check_choice(name: str, value, choices) -> None:
    """ValueError naming ``name`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}.")


def check_positive(name: str, value, allow_zero: bool = False) -> None:
    """ValueError naming ``name`` unless ``value`` is None, > 0 (or >= 0 with ``allow_zero``)."""
    if value is not None and (value < 0 or (value == 0 and not allow_zero)):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}.")


def type_name(t) -> str:
    return getattr(t, "__name__", None) or str(t).replace("typing.", "")


def coerce(value, t, key: str):
    """``value`` as type ``t`` (from YAML or a command-line string), or a ValueError naming ``key``."""
    origin, args = typing.get_origin(t), typing.get_args(t)
    if origin in (typing.Union, types.UnionType):
        is_null = value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null", "~"))
        if is_null and type(None) in args:
            return None
        errors = []
        for a in (a for a in args if a is not type(None)):
            try:
                return coerce(value, a, key)
            except ValueError as e:
                errors.append(str(e))
        raise ValueError(errors[0] if len(errors) == 1 else f"{key}: cannot use {value!r} ({'; '.join(errors)}).")
    if origin is list:  # the only list field: seeds
        return parse_seeds(value, key)
    if origin is tuple:
        if isinstance(value, str):
            value = [v for v in value.strip("()[] ").split(",") if v.strip()]
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ValueError(f"{key} must be a list of {len(args)} numbers, e.g. [0.5, 0.999]; got {value!r}.")
        return tuple(coerce(v, a, key) for v, a in zip(value, args))
    if t is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
            return value.strip().lower() in ("true", "yes", "on", "1")
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise ValueError(f"{key} must be true or false, got {value!r}.")
    if t is int:
        if isinstance(value, bool):
            raise ValueError(f"{key} must be an integer, got {value!r}.")
        if isinstance(value, int):
            return value
        try:
            f = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{key} must be an integer, got {value!r}.") from None
        if not f.is_integer():
            raise ValueError(f"{key} must be an integer, got {value!r}.")
        return int(f)
    if t is float:
        if isinstance(value, bool):
            raise ValueError(f"{key} must be a number, got {value!r}.")
        try:
            f = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{key} must be a number, got {value!r}.") from None
        if not math.isfinite(f):
            raise ValueError(f"{key} must be finite, got {value!r}.")
        return f
    if t is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ValueError(f"{key} must be a string, got {value!r}.")
    raise TypeError(f"unsupported config field type {type_name(t)} for {key}")  # a bug, not bad input
