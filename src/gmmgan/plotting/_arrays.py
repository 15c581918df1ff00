"""Array inputs of the picture functions: numpy, torch (any device) or nested lists."""

from __future__ import annotations

from typing import Any

import numpy as np


def as_numpy(a: Any, name: str) -> np.ndarray:
    """Convert a numpy array, torch tensor (any device) or nested list to a float64 numpy array."""
    if hasattr(a, "detach") and hasattr(a, "cpu"):  # a torch tensor; avoid importing torch here
        a = a.detach().cpu().numpy()
    try:
        return np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name} must be numeric array-like, got {type(a).__name__}: {e}") from None
