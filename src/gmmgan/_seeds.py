"""Seed lists as a user writes them: ``0-9``, ``0,1,5``, ``0-4,10`` or a YAML list (train --seeds, eval --seeds)."""

from __future__ import annotations

__all__ = ["parse_seeds"]


def parse_seeds(value, key: str = "seeds") -> list[int]:
    """A list of distinct seeds >= 0 from a list, or from text: ``0-9``, ``0,1,5`` or ``0-4,10``.

    >>> parse_seeds("0-2,7")
    [0, 1, 2, 7]
    """
    if isinstance(value, int) and not isinstance(value, bool):  # seeds=3 on a command line reads as a number
        value = [value]
    if isinstance(value, str) and not value.strip():
        raise ValueError(f"{key} is empty; give at least one seed, e.g. 0-9.")
    if isinstance(value, str):
        items = []
        for part in value.split(","):
            part = part.strip()
            if not part:
                raise ValueError(f"{key}: empty item in {value!r}; write e.g. 0-9 or 0,1,5.")
            lo, sep, hi = part.partition("-")
            if not (lo.strip().isdigit() and (not sep or hi.strip().isdigit())):
                raise ValueError(f"{key}: {part!r} is not a seed or a range of seeds (e.g. 3 or 0-9).")
            lo_i, hi_i = int(lo), int(hi) if sep else int(lo)
            if hi_i < lo_i:
                raise ValueError(f"{key}: the range {part!r} runs backwards; write {hi_i}-{lo_i}.")
            items.extend(range(lo_i, hi_i + 1))
    elif isinstance(value, (list, tuple)):
        items = []
        for v in value:
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"{key}: every seed must be an integer >= 0, got {v!r} in {list(value)!r}.")
            items.append(int(v))
    else:
        raise ValueError(f"{key} must be a list of seeds or a text such as 0-9 or 0,1,5; got {value!r}.")  # noqa: TRY004
    if not items:
        raise ValueError(f"{key} is empty; give at least one seed, e.g. 0-9.")
    repeated = sorted({s for s in items if items.count(s) > 1})
    if repeated:
        raise ValueError(f"{key}: seed{'s' if len(repeated) > 1 else ''} {', '.join(map(str, repeated))} "
                         "repeated; give each seed once (a repeat would give the same result twice).")
    return items
