"""``feature_names_in_``: dataframe column names kept at fit and checked later, as scikit-learn does.

Told without importing any dataframe library (none is a dependency): a dataframe is an object
with ``columns`` from pandas, polars, modin or cudf. The rules and the messages are scikit-learn's
``sklearn.utils.validation._check_feature_names``.
"""

from __future__ import annotations

import warnings

import numpy as np

_DATAFRAME_LIBRARIES = frozenset({"pandas", "polars", "modin", "cudf"})
_MAX_NAMES_SHOWN = 5


def feature_names(X) -> np.ndarray | None:
    """The column names of dataframe ``X`` (object array) when all are strings, else None."""
    if type(X).__module__.split(".")[0] not in _DATAFRAME_LIBRARIES or not hasattr(X, "columns"):
        return None
    names = np.asarray(list(X.columns), dtype=object)
    if len(names) == 0:
        return None
    types = sorted({type(v).__qualname__ for v in names})
    if len(types) > 1 and "str" in types:
        raise TypeError(
            "Feature names are only supported if all input features have string names, but your "
            f"input has {types} as feature name / column name types. Convert them all to strings, "
            "e.g. X.columns = X.columns.astype(str), or remove the column names."
        )
    return names if types == ["str"] else None


def check_feature_names(est, X, *, reset: bool) -> None:
    """Set (``reset``, in fit) or check (inference) ``est.feature_names_in_`` against ``X``.

    Raises
    ------
    ValueError
        When ``X`` has other column names, or the same ones in another order, than at fit.
    """
    names = feature_names(X)
    if reset:
        if names is not None:
            est.feature_names_in_ = names
        elif hasattr(est, "feature_names_in_"):  # refitted on data without names
            del est.feature_names_in_
        return
    fitted = getattr(est, "feature_names_in_", None)
    cls = type(est).__name__
    if fitted is None and names is None:
        return
    if fitted is None:
        warnings.warn(f"X has feature names, but {cls} was fitted without feature names", UserWarning, stacklevel=4)
        return
    if names is None:
        warnings.warn(f"X does not have valid feature names, but {cls} was fitted with feature names",
                      UserWarning, stacklevel=4)
        return
    if len(fitted) == len(names) and bool(np.all(fitted == names)):
        return
    message = "The feature names should match those that were passed during fit.\n"
    unexpected, missing = sorted(set(names) - set(fitted)), sorted(set(fitted) - set(names))
    if unexpected:
        message += "Feature names unseen at fit time:\n" + _listed(unexpected)
    if missing:
        message += "Feature names seen at fit time, yet now missing:\n" + _listed(missing)
    if not unexpected and not missing:
        message += "Feature names must be in the same order as they were in fit.\n"
    raise ValueError(message)


def _listed(names) -> str:
    shown = "".join(f"- {name}\n" for name in names[:_MAX_NAMES_SHOWN])
    return shown + ("- ...\n" if len(names) > _MAX_NAMES_SHOWN else "")
