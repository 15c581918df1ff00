"""BaseMixture: the EM loop and the inference every mixture estimator shares, written once.

As in scikit-learn's ``sklearn/mixture/_base.py``, the base class holds the only loop over
initialisations and iterations (``n_init``, ``max_iter``, ``tol``, ``warm_start``, the choice of the
best initialisation, the convergence warning, ``callback`` and ``verbose``) and the inference
methods, and each estimator fills in the steps (template method). Two differences: the steps pass
explicit parameter objects ("states") instead of setting attributes on the estimator, so the best
initialisation is kept by keeping its state; and the data arrive as a
:class:`~gmmgan.mixture._data_source.DataSource` read block by block, in coordinates shifted by
``fit.shift`` (:class:`FitData`), which keeps float32 sums accurate far from the origin.

Steps a subclass provides:

===================================== =========================================================
``_initialize(fit)``                  the starting state of one initialisation
``_warm_state(fit)``                  the fitted parameters as a state, to continue from
``_em_step(fit, state, n_iter)``      one E-step and M-step: (new state, lower bound)
``_set_parameters(fit, state)``       store the chosen state as the fitted attributes
``_inference_model(device, dtype)``   (shift, shifted block -> weighted log-probabilities)
===================================== =========================================================

and ones it may override: ``_check_parameters`` (validation), ``_priors`` (a Bayesian model's
prior parameters), ``_fit_source`` and ``_fit_shift`` (where the data and the shift come from),
``_fit_labels`` (fit_predict's labels) and ``_fit`` (GaussianMixture's n_components='auto').
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, replace

import numpy as np
import torch

from gmmgan import distributed as gdist
from gmmgan.mixture import _validation
from gmmgan.mixture._covariance import COVARIANCES
from gmmgan.mixture._data_source import (
    DataSource,
    Summary,
    default_chunk_size,
    inference_dtype,
    make_source,
    resolve_device,
    summarize,
)
from gmmgan.mixture._em_state import _Shifted, _State, log_normalize_
from gmmgan.mixture._estimator import (
    ConvergenceWarning,
    NotFittedError,
    ParamsMixin,
    VerboseReporter,
    make_generator,
    sklearn_compatible,
)
from gmmgan.mixture._feature_names import check_feature_names
from gmmgan.mixture._memory import check_fit_memory

__all__ = [
    "BaseMixture",
    "ConvergenceWarning",
    "FitData",
    "NotFittedError",
    "ParamsMixin",
    "VerboseReporter",
    "make_generator",
    "sklearn_compatible",
]


@dataclass
class FitData:
    """What one call of ``fit`` works on; every step of the EM loop gets it."""

    source: DataSource  # this process's rows
    data: _Shifted  # the same rows in shifted coordinates, x - shift
    summary: Summary  # per-feature mean and variance over all rows
    shift: torch.Tensor  # (D,), in the compute dtype
    cov: type  # the COVARIANCES entry of covariance_type
    generator: torch.Generator
    n_samples: int  # over all processes
    n_features: int
    priors: object = None  # from _priors: a Bayesian model's prior parameters, else None


class BaseMixture(ParamsMixin):
    """Base class of the mixture estimators; not meant to be used on its own.

    Subclasses define ``__init__`` (storing the parameters only) and the steps listed in
    :mod:`gmmgan.mixture._base`; fitting, scoring, prediction and sampling are the same for all.
    """

    # ------------------------------------------------------------------ fitting
    def fit(self, X, y=None):
        """Estimate the parameters with EM (variational EM for a Bayesian mixture).

        ``n_init`` initialisations run at most ``max_iter`` iterations each, until the lower bound
        changes by less than ``tol``; the one with the highest lower bound is kept (with a
        ConvergenceWarning if it did not converge). With ``warm_start``, a fitted model continues
        from its current parameters (one initialisation).

        Parameters
        ----------
        X : array of shape (n_samples, n_features), torch tensor, path to a .npy file, memmap,
            or a re-iterable of 2-D chunks (read on every pass; exact EM over all of them).
        y : ignored

        Returns
        -------
        self

        Notes
        -----
        Under a ``torch.distributed`` process group every rank must call GaussianMixture's
        ``fit`` with its own shard (at least one row each) and the same parameters; see its class
        docstring. BayesianGaussianMixture fits each process's rows on their own.
        """
        self._fit(X, want_labels=False)
        return self

    def fit_predict(self, X, y=None):
        """Fit, then return the most probable component of every row of ``X``, shape (n_samples,)."""
        return self._fit(X, want_labels=True)

    def _fit(self, X, want_labels: bool):
        """How ``fit`` fits: the EM loop (GaussianMixture puts model selection in front)."""
        return self._fit_em(X, want_labels)

    def _fit_em(self, X, want_labels: bool):
        """The EM loop over initialisations and iterations; the labels of ``X`` if ``want_labels``."""
        check_feature_names(self, X, reset=True)
        self._check_parameters()
        warm = self.warm_start and hasattr(self, "converged_")
        source = self._fit_source(X, warm)
        n, d, k = source.n_global, source.n_features, self.n_components
        if n < 2:
            raise ValueError(f"Expected n_samples >= 2 to fit a mixture, got n_samples = {n}; pass at least 2 rows of data.")
        if n < k:
            raise ValueError(
                f"Expected n_samples >= n_components but got n_components = {k}, "
                f"n_samples = {n}. Use fewer components or more data."
            )
        self._check_memory(source, k)
        summary = summarize(source)
        shift = self._fit_shift(source, summary, warm)
        data = _Shifted(source, shift)
        priors = self._priors(source, summary, shift)
        generator = make_generator(self.random_state)
        if source.shard is not None:  # the same draws on every rank, even for random_state=None
            gdist.broadcast_generator_(generator)
        fit = FitData(source, data, summary, shift, COVARIANCES[self.covariance_type], generator, n, d, priors)

        best, max_lower_bound, best_bounds, best_n_iter, self.converged_ = None, -math.inf, [], 0, False
        report = VerboseReporter(self.verbose, self.verbose_interval)
        for init in range(1 if warm else self.n_init):
            report.init_begin(init)
            state = self._warm_state(fit) if warm else self._initialize(fit)
            lower_bound = self.lower_bound_ if warm else -math.inf
            bounds, converged, n_iter = [], False, 0
            for n_iter in range(1, self.max_iter + 1):
                prev = lower_bound
                state, lower_bound = self._em_step(fit, state, n_iter)
                bounds.append(lower_bound)
                change = lower_bound - prev
                if self.callback is not None:
                    self.callback({"init": init, "n_iter": n_iter, "lower_bound": lower_bound, "change": change})
                report.iteration_end(n_iter, change)
                if abs(change) < self.tol:
                    converged = True
                    break
            if self.max_iter > 0:  # as scikit-learn: no end message for an initialisation-only fit
                report.init_end(lower_bound, converged)
            # As scikit-learn: the first initialisation with the highest lower bound (and with
            # max_iter=0, where every bound is -inf, the last one).
            if lower_bound > max_lower_bound or max_lower_bound == -math.inf:
                best, max_lower_bound, best_bounds = state, lower_bound, bounds
                best_n_iter, self.converged_ = n_iter, converged
        if not self.converged_ and self.max_iter > 0:
            warnings.warn(
                "Best performing initialization did not converge. Try different init parameters, "
                "or increase max_iter, tol, or check for degenerate data.",
                sklearn_compatible(ConvergenceWarning),
                stacklevel=4,  # the caller of fit / fit_predict
            )
        self._set_parameters(fit, best)
        self.n_iter_ = best_n_iter
        self.lower_bound_ = max_lower_bound
        self.lower_bounds_ = best_bounds
        self.n_features_in_ = d
        return self._fit_labels(X, fit, best) if want_labels else None

    def _check_parameters(self) -> None:
        """Validate the constructor parameters (ValueError naming the fix), before any data is read."""
        _validation.check_parameters(self)

    def _check_memory(self, source: DataSource, k: int) -> None:
        """A MemoryError before any work if the fit's estimated memory exceeds the device's (see _memory)."""
        itemsize = torch.tensor([], dtype=source.dtype).element_size()
        d, dev, ct = source.n_features, source.device, self.covariance_type
        check_fit_memory(
            n_samples=source.n_samples, n_features=d, n_components=k, covariance_type=ct,
            chunk_size=source.chunk_size, itemsize=itemsize, device=dev,
            default_chunk=None if self.chunk_size is not None else (lambda kk: default_chunk_size(kk, d, dev, itemsize, ct)),
        )

    def _fit_source(self, X, warm: bool) -> DataSource:
        """The training data as a DataSource; a warm start continues on data of the same width."""
        return make_source(
            X, device=self.device, dtype=self.dtype, chunk_size=self.chunk_size, n_components=self.n_components,
            covariance_type=self.covariance_type, n_features=self.n_features_in_ if warm else None,
            owner=type(self).__name__,
        )

    def _fit_shift(self, source: DataSource, summary: Summary, warm: bool) -> torch.Tensor:
        """The origin of the coordinates EM works in: the data mean."""
        return summary.mean.to(source.dtype)

    def _priors(self, source: DataSource, summary: Summary, shift: torch.Tensor):
        """The prior parameters of a Bayesian model (``fit.priors``); None for maximum likelihood."""

    def _fit_labels(self, X, fit: FitData, best):
        """``fit_predict``'s labels: by default those ``predict`` gives with the fitted attributes."""
        return self.predict(X)

    # ----------------------------------------------------------- fitted params
    def _current_state(self, device, dtype, shift) -> _State:
        """The public fitted attributes as a _State on ``device`` (shifted by ``shift`` if given)."""
        self._check_is_fitted()
        def t(a):
            return torch.as_tensor(a).to(device=device, dtype=dtype)
        means = t(self.means_)
        if shift is not None:
            means = means - shift
        covs = t(self.covariances_) if getattr(self, "covariances_", None) is not None else None
        return _State(t(self.weights_), means, covs, t(self.precisions_cholesky_))

    def _model(self, device, dtype=None):
        """(state, shift) for inference: parameters shifted by their weighted mean, for accuracy."""
        self._check_is_fitted()
        if dtype is None:
            dtype = torch.as_tensor(self.means_).dtype
        state = self._current_state(device, dtype, shift=None)
        shift = state.weights @ state.means
        return replace(state, means=state.means - shift), shift

    # --------------------------------------------------------------- inference
    def _blocks(self, X):
        """Yield (source, weighted log-probabilities (rows, K)) for every block of X."""
        self._check_is_fitted()
        check_feature_names(self, X, reset=False)
        means = torch.as_tensor(self.means_)
        device = resolve_device(self.device, X if isinstance(X, torch.Tensor) else None)
        if isinstance(self.means_, torch.Tensor) and self.device is None and not isinstance(X, torch.Tensor):
            device = self.means_.device
        source = make_source(
            X, device=device, dtype=inference_dtype(means.dtype, X, self.dtype), chunk_size=self.chunk_size,
            n_components=means.shape[0], n_features=means.shape[1], covariance_type=self.covariance_type,
            owner=type(self).__name__,
        )
        shift, weighted_log_prob = self._inference_model(source.device, source.dtype)
        for x in _Shifted(source, shift).checked_chunks():
            yield source, weighted_log_prob(x)

    def _collect(self, X, fn):
        # Every block comes with the same source; the last one's is returned for the output's kind.
        source, parts = None, []
        for block_source, wlp in self._blocks(X):
            source = block_source
            parts.append(fn(wlp))
        return source, torch.cat(parts)

    def score_samples(self, X):
        """Log-density log p(x) of every row, shape (n_samples,)."""
        source, out = self._collect(X, lambda w: log_normalize_(w)[0])
        return source.to_output(out)

    def score(self, X, y=None) -> float:
        """Mean log-likelihood per sample of ``X``.

        Under a ``torch.distributed`` process group each rank passes its shard and gets the mean
        over all ranks' rows (every rank must call it).
        """
        _, out = self._collect(X, lambda w: log_normalize_(w)[0])
        if not gdist.is_distributed():
            return float(out.double().mean())
        total, count = gdist.all_reduce_sums(out.double().sum().reshape(1), out.new_tensor([out.numel()], dtype=torch.float64))
        return float(total) / float(count)

    def predict(self, X):
        """Most probable component of every row, shape (n_samples,)."""
        source, out = self._collect(X, lambda w: w.argmax(1))
        return source.to_output(out)

    def predict_proba(self, X):
        """Posterior probability of each component for every row, shape (n_samples, K)."""
        source, out = self._collect(X, lambda w: log_normalize_(w)[1])
        return source.to_output(out)

    def sample(self, n_samples=1, component=None):
        """Draw samples from the fitted mixture.

        A Bayesian mixture draws from the mixture of its posterior-mean parameters (``weights_``,
        ``means_``, ``covariances_``).

        Parameters
        ----------
        n_samples : int, default=1
        component : int, optional
            Draw only from this component.

        Returns
        -------
        X : array of shape (n_samples, D)
            float64 numpy array (as scikit-learn) for a model fitted on numpy data; a tensor in the
            model's dtype and device for one fitted on tensors.
        y : array of shape (n_samples,), the component of each sample (grouped by component)
        """
        self._check_is_fitted()
        if not isinstance(n_samples, (int, np.integer)) or isinstance(n_samples, bool) or n_samples < 1:
            raise ValueError(
                f"Invalid value for 'n_samples': {n_samples!r}. The sampling requires at least one sample."
            )
        k, d = torch.as_tensor(self.means_).shape
        if component is not None and not (isinstance(component, (int, np.integer)) and not isinstance(component, bool)
                                          and 0 <= component < k):
            raise ValueError(f"component must be an int in [0, {k - 1}], got {component!r}.")
        ref = self.means_
        device = ref.device if isinstance(ref, torch.Tensor) else torch.device("cpu")
        state, shift = self._model(device)
        gen = make_generator(self.random_state)
        if component is None:
            counts = torch.multinomial(state.weights.double().cpu(), n_samples, replacement=True, generator=gen)
            counts = torch.bincount(counts, minlength=k)
        else:
            counts = torch.zeros(k, dtype=torch.long)
            counts[component] = n_samples
        cov = COVARIANCES[self.covariance_type]
        covs = state.covariances if state.covariances is not None else cov.covariances_from_precision_cholesky(state.prec_chol)
        chol = torch.linalg.cholesky(cov.full_covariances(covs.double(), k, d)).to(state.means.dtype)
        labels = torch.repeat_interleave(torch.arange(k), counts).to(device)
        z = torch.randn(n_samples, d, generator=gen, dtype=torch.float64).to(device=device, dtype=state.means.dtype)
        X = torch.empty_like(z)
        start = 0
        for j, count in enumerate(counts.tolist()):
            if count:
                X[start : start + count] = state.means[j] + shift + z[start : start + count] @ chol[j].mT
                start += count
        if isinstance(ref, torch.Tensor):
            return X, labels
        # numpy samples are float64 whatever the model's dtype, as scikit-learn's sample returns.
        return X.cpu().double().numpy(), labels.cpu().numpy()
