"""Mean and standard error over seeds, as every report of gmmgan gives them (eval.json, a sweep's summary)."""

from __future__ import annotations

import math

__all__ = ["mean_se"]


def mean_se(values: list[float]) -> dict:
    """{'mean', 'se' (None for one value: JSON has no NaN), 'per_seed'}; se = sample std / sqrt(n)."""
    m = sum(values) / len(values)
    se = None
    if len(values) > 1:
        se = math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1) / len(values))
    return {"mean": m, "se": se, "per_seed": list(values)}
