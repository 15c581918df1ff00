"""Estimator plumbing shared by the mixture models: parameters, fitted checks, random state."""

from __future__ import annotations

import inspect
import numbers

import numpy as np
import torch


class NotFittedError(ValueError, AttributeError):
    """Raised when a method that needs a fitted model is called before ``fit``."""


class ConvergenceWarning(UserWarning):
    """EM stopped at ``max_iter`` before the lower bound settled within ``tol``."""


class ParamsMixin:
    """``get_params`` / ``set_params`` / ``repr`` from the ``__init__`` signature, as scikit-learn does.

    Keeping to that contract makes ``sklearn.base.clone`` and grid searches work on our estimators.
    """

    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p.name for p in sig.parameters.values() if p.name != "self" and p.kind != p.VAR_KEYWORD]

    def get_params(self, deep: bool = True) -> dict:
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params):
        valid = self._param_names()
        for key, value in params.items():
            if key not in valid:
                raise ValueError(
                    f"Invalid parameter {key!r} for {type(self).__name__}; valid parameters are: "
                    f"{', '.join(valid)}."
                )
            setattr(self, key, value)
        return self

    def __repr__(self) -> str:
        defaults = {
            p.name: p.default for p in inspect.signature(type(self).__init__).parameters.values()
        }
        changed = []
        for name in self._param_names():
            value = getattr(self, name)
            default = defaults.get(name, inspect.Parameter.empty)
            same = value is default or (
                isinstance(value, (str, numbers.Number)) and isinstance(default, (str, numbers.Number)) and value == default
            )
            if not same:
                changed.append(f"{name}={_short_repr(value)}")
        return f"{type(self).__name__}({', '.join(changed)})"

    def _check_is_fitted(self, attribute: str = "means_") -> None:
        if not hasattr(self, attribute):
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet. Call 'fit' with "
                "appropriate arguments before using this method."
            )


def _short_repr(value) -> str:
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return f"<array of shape {tuple(value.shape)}>"
    return repr(value)


def make_generator(random_state) -> torch.Generator:
    """A CPU torch.Generator from ``random_state`` (None, int, numpy RandomState/Generator)."""
    gen = torch.Generator()
    if random_state is None:
        gen.seed()
    elif isinstance(random_state, torch.Generator):
        gen.set_state(random_state.get_state())
    elif isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        if random_state < 0:
            raise ValueError(f"random_state must be a non-negative int, got {random_state}.")
        gen.manual_seed(int(random_state))
    elif isinstance(random_state, np.random.RandomState):
        gen.manual_seed(int(random_state.randint(0, 2**31 - 1)))
    elif isinstance(random_state, np.random.Generator):
        gen.manual_seed(int(random_state.integers(0, 2**63 - 1)))
    else:
        raise ValueError(
            f"random_state must be None, an int, or a numpy RandomState/Generator, got {random_state!r}."
        )
    return gen
