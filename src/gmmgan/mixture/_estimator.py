"""Estimator plumbing shared by the mixture models: parameters, fitted checks, random state.

What any scikit-learn-style estimator needs and nothing about mixtures (that is
:mod:`gmmgan.mixture._base`): ``get_params`` / ``set_params`` / ``repr``, the not-fitted check,
the exceptions and warnings that scikit-learn's own handlers also catch, verbose messages and
seeding from ``random_state``.
"""

from __future__ import annotations

import inspect
import numbers
import sys
import time

import numpy as np
import torch


class NotFittedError(ValueError, AttributeError):
    """Raised when a method that needs a fitted model is called before ``fit``."""


class ConvergenceWarning(UserWarning):
    """EM stopped at ``max_iter`` before the lower bound settled within ``tol``."""


_SKLEARN_TWINS: dict = {}


def sklearn_compatible(cls: type) -> type:
    """``cls``, or, once scikit-learn is imported, a subclass of it that is also scikit-learn's class.

    ``except sklearn.exceptions.NotFittedError`` and ``pytest.warns(sklearn.exceptions.
    ConvergenceWarning)`` then catch ours too, as they would catch scikit-learn's own estimator's.
    Only a program that has imported scikit-learn can name its classes, so scikit-learn (an
    optional dependency, seconds to import) is never imported here.
    """
    sk = sys.modules.get("sklearn.exceptions")
    if sk is None:
        return cls
    twin = _SKLEARN_TWINS.get(cls)
    if twin is None:
        name = f"_Sklearn{cls.__name__}"
        # Shown under the plain name (tracebacks, warning lines); found by pickle under its own.
        twin = type(cls.__name__, (cls, getattr(sk, cls.__name__)), {"__module__": __name__, "__qualname__": name, "__doc__": cls.__doc__})
        globals()[name] = twin
        _SKLEARN_TWINS[cls] = twin
    return twin


class ParamsMixin:
    """``get_params`` / ``set_params`` / ``repr`` from the ``__init__`` signature, as scikit-learn does.

    Keeping to that contract makes ``sklearn.base.clone`` and grid searches work on our estimators.
    """

    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        # Sorted, as scikit-learn's get_params (and so its repr) orders them.
        return sorted(p.name for p in sig.parameters.values() if p.name != "self" and p.kind != p.VAR_KEYWORD)

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

    def __sklearn_tags__(self):
        """scikit-learn's estimator tags (a density estimator, as sklearn.mixture's), for its checks."""
        from sklearn.utils import Tags, TargetTags

        return Tags(estimator_type="density_estimator", target_tags=TargetTags(required=False))

    def _check_is_fitted(self, attribute: str = "means_") -> None:
        if not hasattr(self, attribute):
            raise sklearn_compatible(NotFittedError)(
                f"This {type(self).__name__} instance is not fitted yet. Call 'fit' with "
                "appropriate arguments before using this estimator."
            )


class VerboseReporter:
    """EM progress printed word for word as scikit-learn's ``BaseMixture`` prints it.

    ``verbose=1``: each initialisation's start and end and every ``interval``-th iteration's
    number; ``verbose>=2`` adds the time since the previous message, the lower bound's change and
    the final lower bound.
    """

    def __init__(self, verbose: int, interval: int):
        self.verbose, self.interval = verbose, interval
        self._init_start = self._last = time.perf_counter()

    def init_begin(self, init: int) -> None:
        if self.verbose:
            print(f"Initialization {init}")
            self._init_start = self._last = time.perf_counter()

    def iteration_end(self, n_iter: int, change: float) -> None:
        if not self.verbose or n_iter % self.interval:
            return
        if self.verbose == 1:
            print(f"  Iteration {n_iter}")
            return
        now = time.perf_counter()
        print(f"  Iteration {n_iter}\t time lapse {now - self._last:.5f}s\t ll change {change:.5f}")
        self._last = now

    def init_end(self, lower_bound: float, converged: bool) -> None:
        msg = "converged" if converged else "did not converge"
        if self.verbose == 1:
            print(f"Initialization {msg}.")
        elif self.verbose >= 2:
            print(f"Initialization {msg}. time lapse {time.perf_counter() - self._init_start:.5f}s\t lower bound {lower_bound:.5f}.")


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
