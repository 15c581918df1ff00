"""GaussianMixture: scikit-learn's estimator, in PyTorch, on CPU or GPU, for data of any size."""

from __future__ import annotations

import math
import warnings
from dataclasses import replace

import numpy as np
import torch

from gmmgan import distributed as gdist
from gmmgan.mixture import _triton_em
from gmmgan.mixture._base import BaseMixture, FitData
from gmmgan.mixture._candidates_fit import fit_auto
from gmmgan.mixture._covariance import COVARIANCES
from gmmgan.mixture._data_source import DataSource, shard_source
from gmmgan.mixture._em_state import (
    EMPTY_COMPONENT,
    _Shifted,
    _State,
    _Stats,
    log_normalize_,
)
from gmmgan.mixture._feature_names import check_feature_names
from gmmgan.mixture._initialization import InitializationMixin
from gmmgan.mixture._io import MixtureIOMixin

__all__ = ["GaussianMixture"]


class GaussianMixture(InitializationMixin, MixtureIOMixin, BaseMixture):
    """Gaussian mixture model fitted by EM, with scikit-learn's API, in PyTorch.

    The density is p(x) = sum_k weights_[k] N(x | means_[k], covariances_[k]). Parameters,
    methods and fitted attributes have scikit-learn's names and meanings, so replacing
    ``from sklearn.mixture import GaussianMixture`` with ``from gmmgan import GaussianMixture``
    switches a program over. From the same initial parameters the fit takes the same EM steps as
    scikit-learn's (tests assert it to rounding).

    Parameters
    ----------
    n_components : int or 'auto', default=1
        Number of mixture components K. 'auto' fits K = 1..min(20, n_samples) together and keeps
        the lowest BIC (see :func:`gmmgan.mixture.select_n_components`), setting
        ``n_components_``, ``criterion_scores_``, ``bic_`` and ``aic_``.
    covariance_type : {'full', 'tied', 'diag', 'spherical'}, default='full'
        Each component's own full matrix, one shared full matrix, per-component diagonal, or
        per-component single variance.
    tol : float, default=1e-3
        EM stops when the change of the per-sample lower bound (mean log-likelihood) is below tol.
    reg_covar : float, default=1e-6
        Added to the covariance diagonals so they stay positive definite.
    max_iter : int, default=100
        EM iterations per initialisation.
    n_init : int, default=1
        Initialisations to run; the one with the highest lower bound is kept.
    init_params : {'k-means++', 'kmeans', 'random', 'random_from_data'}, default='k-means++'
        'k-means++': k-means++ seeding then a few Lloyd steps; 'kmeans': Lloyd to convergence;
        'random': random responsibilities; 'random_from_data': K data points as means.
    weights_init : array of shape (K,), optional
    means_init : array of shape (K, D), optional
    precisions_init : array, optional
        Shape (K, D, D) for 'full', (D, D) for 'tied', (K, D) for 'diag', (K,) for 'spherical'.
    random_state : int, numpy RandomState or None, default=None
        Seeds initialisation and :meth:`sample`.
    warm_start : bool, default=False
        Start the next ``fit`` from the current parameters (``n_init`` is then ignored).
    verbose : int, default=0
        1 prints each initialisation and every ``verbose_interval``-th iteration, 2 also times and
        lower-bound changes (scikit-learn's messages, word for word).
    verbose_interval : int, default=10
    device : str or torch.device, optional
        Where to compute ('cpu', 'cuda', 'cuda:1', or 'auto': CUDA where there is one; gmmgan computes
        on the CPU or on CUDA GPUs only). Default: the input tensor's device, else CPU.
    dtype : {'float32', 'float64'} or torch dtype, optional
        Compute precision. Default: the input's float dtype, else float64.
    chunk_size : int, optional
        Rows per E-step block; memory does not grow with the number of rows. Default: chosen from
        K, D and the device.
    callback : callable, optional
        Called after every EM iteration with a dict: init, n_iter, lower_bound, change.
    backend : {'auto', 'torch', 'triton'}, default='auto'
        'triton': fused Triton kernels for the E-step and the sufficient statistics (CUDA,
        float32, 'full'/'diag'/'spherical'), also used by ``score_samples``, ``predict`` and
        ``predict_proba``; a ValueError says why where they cannot run. 'auto': the kernels
        where they can run, the torch code elsewhere. 'torch': always the torch code.

    Attributes
    ----------
    weights_ : array of shape (K,)
    means_ : array of shape (K, D)
    covariances_, precisions_, precisions_cholesky_ : array, shapes as ``precisions_init``
    converged_ : bool
    n_iter_ : int
    lower_bound_ : float
        Mean log-likelihood of the training data at the best initialisation's last E-step.
    lower_bounds_ : list of float
    reseeded_ : list of (int, int)
        (iteration, component) for each component that lost all its points and was re-seeded
        at a badly explained data point (scikit-learn has no such step; it is rare on real data).
    n_features_in_ : int
    feature_names_in_ : array of shape (n_features_in_,)
        Column names of a dataframe ``X`` (pandas, polars) whose names are all strings; then
        inference on data with other names is a ValueError, as in scikit-learn.

    Fitted arrays are numpy arrays if ``fit`` got numpy data (or a file), torch tensors on the
    compute device if it got tensors.

    Across processes: inside an initialised ``torch.distributed`` process group (torchrun, or
    :func:`gmmgan.distributed.init_from_env`), ``fit`` takes each rank's own shard of the data
    (e.g. ``X[gmmgan.distributed.shard_range(len(X))]`` of a memory-mapped .npy; the global data
    is the ranks' shards concatenated in rank order) and all-reduces the sufficient statistics,
    so every rank ends with the same model, equal to one process's fit on all rows up to float
    rounding (same initialisation, same EM steps). ``score``, ``bic`` and ``aic`` are then global
    too; ``predict``, ``predict_proba`` and ``score_samples`` stay per rank. To fit each rank on
    its own data instead, call ``fit`` inside :func:`gmmgan.distributed.local_only`.
    """

    def __init__(
        self,
        n_components=1,
        *,
        covariance_type="full",
        tol=1e-3,
        reg_covar=1e-6,
        max_iter=100,
        n_init=1,
        init_params="k-means++",
        weights_init=None,
        means_init=None,
        precisions_init=None,
        random_state=None,
        warm_start=False,
        verbose=0,
        verbose_interval=10,
        device=None,
        dtype=None,
        chunk_size=None,
        callback=None,
        backend="auto",
    ):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.device = device
        self.dtype = dtype
        self.chunk_size = chunk_size
        self.callback = callback
        self.backend = backend

    # ------------------------------------------------------------------ fitting
    def _fit(self, X, want_labels: bool):
        if isinstance(self.n_components, str) and self.n_components == "auto":
            # K chosen by BIC over candidates fitted together (gmmgan.mixture.model_selection).
            check_feature_names(self, X, reset=True)
            if gdist.is_distributed():
                warnings.warn(
                    "n_components='auto' is not fitted across processes: each rank selects K on "
                    "its own rows. Pass the full data on every rank (inside "
                    "gmmgan.distributed.local_only()) or choose n_components.",
                    UserWarning,
                    stacklevel=3,
                )
            return fit_auto(self, X, want_labels=want_labels)
        return self._fit_em(X, want_labels)

    def _fit_source(self, X, warm: bool) -> DataSource:
        source = super()._fit_source(X, warm)
        if self._kernels(source) is not None and self.chunk_size is None:  # their temporaries are (rows, K) only
            source = replace(source, chunk_size=_triton_em.default_chunk_size(self.n_components, source.n_features))
        # Under a process group, this rank's rows of data spread over processes (else as is).
        return shard_source(source)

    def _kernels(self, source: DataSource):
        """The Triton kernels for this fit's data (``backend``), or None for the torch code."""
        return _triton_em.resolve(getattr(self, "backend", "auto"), source.device, source.dtype, self.covariance_type, source.n_features)

    def _fit_shift(self, source, summary, warm: bool) -> torch.Tensor:
        if not warm:
            return super()._fit_shift(source, summary, warm)
        # A warm start continues in the coordinates of the current model's centre.
        current = self._current_state(source.device, source.dtype, shift=None)
        return (current.weights @ current.means).to(source.dtype)

    def _initialize(self, fit: FitData) -> _State:
        return self._initial_state(fit.data, fit.source, fit.summary, fit.shift, fit.generator)

    def _warm_state(self, fit: FitData) -> _State:
        return self._current_state(fit.source.device, fit.source.dtype, fit.shift)

    def _em_step(self, fit: FitData, state: _State, n_iter: int) -> tuple[_State, float]:
        # The lower bound is that of the E-step's parameters, as scikit-learn's.
        stats, lower_bound = self._e_step(fit.data, state, fit.cov, self._kernels(fit.source))
        data_var = fit.summary.var.to(fit.source.device)
        return self._m_step(stats, state, fit.cov, fit.n_samples, data_var, n_iter), lower_bound

    def _set_parameters(self, fit: FitData, state: _State) -> None:
        self._set_state(state, fit.shift, fit.source)
        self.reseeded_ = list(state.reseeded)

    def _fit_labels(self, X, fit: FitData, best: _State):
        # From the chosen parameters in the fit's own coordinates: no second DataSource over X.
        log_w = best.weights.log()
        kernel = self._kernels(fit.source)
        if kernel is not None:
            labels = torch.cat([kernel.weighted_log_prob(x, best.means, best.prec_chol, log_w).argmax(1) for x in fit.data.chunks()])
            return fit.source.to_output(labels)
        labels = torch.cat([(fit.cov.log_prob(x, best.means, best.prec_chol) + log_w).argmax(1) for x in fit.data.chunks()])
        return fit.source.to_output(labels)

    def _e_step(self, data: _Shifted, state: _State, cov, kernel=None) -> tuple[_Stats, float]:
        """One pass: responsibilities of every block and the statistics the M-step needs.

        ``kernel`` (from ``_triton_em.resolve``) computes each block's log-likelihoods and
        statistics in fused Triton kernels instead, its statistic already in finalised form.
        """
        k = state.means.shape[0]
        dev, f64 = state.means.device, torch.float64
        nk = torch.zeros(k, dtype=f64, device=dev)
        sx = torch.zeros(state.means.shape, dtype=f64, device=dev)
        stat = None
        total = torch.zeros((), dtype=f64, device=dev)
        log_w = state.weights.log()
        worst_v, worst_x = [], []
        for x in data.chunks():
            if kernel is not None:
                lpn, nk_b, sx_b, s = kernel.em_block(x, state.means, state.prec_chol, log_w)
                total += lpn.sum(dtype=f64)
                nk += nk_b
                sx += sx_b
            else:
                log_prob, cache = cov.e_step_block(x, state.means, state.prec_chol)
                lpn, resp = log_normalize_(log_prob.add_(log_w))
                total += lpn.sum(dtype=f64)
                nk += resp.sum(0, dtype=f64)
                sx += (resp.mT @ x).to(f64)
                s = cov.accumulate_em(x, resp, state.means, state.prec_chol, cache).to(f64)
            stat = s if stat is None else stat.add_(s)
            # The worst-explained points are where empty components get re-seeded.
            low = torch.topk(lpn, min(k, lpn.shape[0]), largest=False)
            worst_v.append(low.values)
            worst_x.append(x[low.indices])
        worst_v = torch.cat(worst_v)
        order = torch.argsort(worst_v)[:k]
        if data.source.shard is not None:  # one collective for all statistics of this rank's shard
            nk, sx, stat, total = gdist.all_reduce_sums(nk, sx, stat, total)
        if kernel is None:
            stat = cov.finalize_em(stat, state.prec_chol)
        stats = _Stats(nk, sx, stat, state.means.to(f64), torch.cat(worst_x)[order], worst_v[order])
        return stats, float(total) / data.n_global

    def _m_step(self, stats: _Stats, state: _State, cov, n_samples: int, data_var: torch.Tensor, n_iter: int) -> _State:
        """Parameters from the statistics, in float64, then cast to the compute dtype."""
        dtype = state.means.dtype
        eps = torch.finfo(dtype).eps
        nk_raw = stats.nk
        nk = nk_raw + 10 * eps
        means = stats.sx / nk.unsqueeze(1)
        covs = cov.covariances(stats.stat, nk_raw, nk, means, stats.sx, stats.anchor, n_samples, self.reg_covar)
        # Each component is re-seeded at most once per initialisation: with fewer distinct points
        # than components, some must stay empty, and moving them again would only oscillate.
        done = {c for _, c in state.reseeded}
        empty = [c for c in torch.nonzero(nk_raw < EMPTY_COMPONENT).flatten().tolist() if c not in done]
        reseeded = state.reseeded + tuple((n_iter, c) for c in empty)
        if empty:
            nk, means, covs = self._reseed(empty, nk, means, covs, _global_worst(stats, len(nk)), data_var)
        weights = nk / nk.sum()
        return replace(self._finish_state(weights, means, covs, dtype, cov), reseeded=reseeded)

    def _finish_state(self, weights, means, covs, dtype, cov) -> _State:
        """A _State in the compute dtype whose covariances are positive definite in that dtype."""
        covs = cov.to_dtype(covs, dtype, self.reg_covar)
        prec_chol = cov.precision_cholesky(covs.to(torch.float64), self.reg_covar)
        return _State(weights.to(dtype), means.to(dtype), covs, prec_chol.to(dtype))

    def _reseed(self, empty, nk, means, covs, worst_x, data_var):
        warnings.warn(
            f"Component(s) {empty} lost all their points; re-seeded them at the worst-explained "
            "data points with the data's variance. Consider fewer components or a larger reg_covar.",
            RuntimeWarning,
            stacklevel=7,  # the caller of fit, past fit, _fit, _fit_em, _em_step and _m_step
        )
        nk, means, covs = nk.clone(), means.clone(), covs.clone()
        var = data_var.to(torch.float64) + self.reg_covar
        for j, comp in enumerate(empty):
            means[comp] = worst_x[j % len(worst_x)].to(torch.float64)
            nk[comp] = 1.0
            if self.covariance_type == "full":
                covs[comp] = torch.diag(var)
            elif self.covariance_type == "diag":
                covs[comp] = var
            elif self.covariance_type == "spherical":
                covs[comp] = var.mean()
        return nk, means, covs

    # ----------------------------------------------------------- fitted params
    def _set_state(self, state: _State, shift: torch.Tensor, source: DataSource) -> None:
        cov = COVARIANCES[self.covariance_type]
        out = (lambda t: t.detach().cpu().numpy()) if source.output_kind == "numpy" else (lambda t: t.detach())
        covs = state.covariances
        if covs is None:
            covs = cov.covariances_from_precision_cholesky(state.prec_chol)
        self.weights_ = out(state.weights)
        self.means_ = out(state.means + shift)
        self.covariances_ = out(covs)
        self.precisions_cholesky_ = out(state.prec_chol)
        self.precisions_ = out(cov.precisions(state.prec_chol))

    # --------------------------------------------------------------- inference
    def _inference_model(self, device, dtype):
        state, shift = self._model(device, dtype)
        cov = COVARIANCES[self.covariance_type]
        log_w = state.weights.log()
        kernel = _triton_em.resolve(getattr(self, "backend", "auto"), device, dtype, self.covariance_type, state.means.shape[1])
        if kernel is not None:
            return shift, lambda x: kernel.weighted_log_prob(x, state.means, state.prec_chol, log_w)
        return shift, lambda x: cov.log_prob(x, state.means, state.prec_chol).add_(log_w)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Differentiable log-density of ``x`` (torch tensor (n, D)), shape (n,); usable as a loss."""
        if not isinstance(x, torch.Tensor):
            raise ValueError("log_prob takes a torch tensor; use score_samples for numpy arrays.")  # noqa: TRY004
        d = torch.as_tensor(self.means_).shape[1] if hasattr(self, "means_") else None
        if x.ndim != 2 or x.shape[1] != d:
            self._check_is_fitted()
            raise ValueError(f"log_prob expects a tensor of shape (n, {d}), got {tuple(x.shape)}.")
        dtype = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
        state, shift = self._model(x.device, dtype)
        cov = COVARIANCES[self.covariance_type]
        wlp = cov.log_prob(x.to(dtype) - shift, state.means, state.prec_chol) + state.weights.log()
        return torch.logsumexp(wlp, 1)

    def _n_parameters(self) -> int:
        k, d = torch.as_tensor(self.means_).shape
        return COVARIANCES[self.covariance_type].n_parameters(k, d)

    def bic(self, X) -> float:
        """Bayesian information criterion on ``X`` (lower is better; over all ranks' shards, as ``score``)."""
        score = self.score(X)  # first: it validates X (a missing file, wrong features) with a clear error
        n = _n_rows(X)
        return -2 * score * n + self._n_parameters() * math.log(n)

    def aic(self, X) -> float:
        """Akaike information criterion on ``X`` (lower is better; over all ranks' shards, as ``score``)."""
        return -2 * self.score(X) * _n_rows(X) + 2 * self._n_parameters()


def _global_worst(stats, k: int) -> torch.Tensor:
    """The ``k`` worst-explained rows over all ranks, worst first (this rank's in one process).

    Called only when a component is empty, a decision all ranks take alike from reduced
    counts, so the gather (k rows per rank) costs nothing in the usual iteration.
    """
    if not gdist.is_distributed() or stats.worst_v is None:
        return stats.worst_x
    dev = gdist.comm_device()
    values = gdist.all_gather_cat(stats.worst_v.to(dev))
    rows = gdist.all_gather_cat(stats.worst_x.to(dev))
    return rows[torch.argsort(values)[:k]].to(stats.worst_x.device)


def _n_rows(X) -> int:
    """Rows of ``X``, summed over ranks under a process group (as :meth:`GaussianMixture.score`)."""
    if hasattr(X, "shape") and not isinstance(X, (str,)):
        n = int(X.shape[0])
    elif isinstance(X, (str,)) or hasattr(X, "__fspath__"):
        n = int(np.load(X, mmap_mode="r").shape[0])
    else:
        n = sum(int(np.shape(c)[0]) for c in X)
    if gdist.is_distributed():
        n = int(gdist.all_reduce_sums(torch.tensor([n], dtype=torch.float64))[0])
    return n
