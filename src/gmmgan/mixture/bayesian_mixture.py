"""BayesianGaussianMixture: variational EM with a Dirichlet(-process) prior on the weights.

The model, the update formulas and the (constant-free) lower bound are scikit-learn's
``sklearn/mixture/_bayesian_mixture.py`` (Bishop, PRML section 10.2, with the Wishart scale
normalised by the degrees of freedom), so from the same initial responsibilities both libraries
take the same variational steps. The work is done as in :class:`GaussianMixture`: in PyTorch, on
any device, over row blocks of a :class:`DataSource`, in coordinates shifted by the data mean,
with the sufficient statistics summed in float64. The per-covariance-type pieces (log-densities,
statistics, Gaussian covariance estimates, Cholesky factors) are the ones GaussianMixture uses,
and so are the EM loop (initialisations, convergence, warm start) and the inference methods, from
:class:`gmmgan.mixture._base.BaseMixture`; this module holds the variational steps.

Surplus components end with weights near zero; :attr:`n_active_components_` counts the others.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from gmmgan import distributed as gdist
from gmmgan.mixture import _validation
from gmmgan.mixture._base import BaseMixture, FitData
from gmmgan.mixture._covariance import COVARIANCES, log_det_precision
from gmmgan.mixture._em_state import _Stats
from gmmgan.mixture._initialization import (
    initial_responsibilities,
    responsibility_stats,
)

WEIGHT_PRIOR_TYPES = ("dirichlet_process", "dirichlet_distribution")
# A component is active when its weight is above this fraction of a uniform weight, 1/n_components.
ACTIVE_WEIGHT_FRACTION = 0.1


@dataclass
class _VState:
    """Variational parameters, means in shifted coordinates; float64 except where cast for the E-step."""

    weight_concentration: tuple | torch.Tensor
    mean_precision: torch.Tensor
    means: torch.Tensor
    degrees_of_freedom: torch.Tensor
    covariances: torch.Tensor
    prec_chol: torch.Tensor


@dataclass
class _Priors:
    weight_concentration: float
    mean_precision: float
    mean: torch.Tensor  # shifted
    degrees_of_freedom: float
    covariance: torch.Tensor


class BayesianGaussianMixture(BaseMixture):
    """Variational Bayesian Gaussian mixture, with scikit-learn's API, in PyTorch.

    Parameters are scikit-learn's :class:`sklearn.mixture.BayesianGaussianMixture` parameters
    (same names, defaults and meanings) plus ``device``, ``dtype``, ``chunk_size`` and
    ``callback`` as in :class:`gmmgan.GaussianMixture`.

    Parameters
    ----------
    n_components : int, default=1
        Upper bound on the number of components; surplus ones get weights near zero.
    covariance_type : {'full', 'tied', 'diag', 'spherical'}, default='full'
    tol : float, default=1e-3
        Stop when the lower bound (not per sample, as scikit-learn) changes by less than tol.
    reg_covar : float, default=1e-6
    max_iter : int, default=100
    n_init : int, default=1
    init_params : {'kmeans', 'k-means++', 'random', 'random_from_data'}, default='kmeans'
        Initial responsibilities: hard k-means labels (Lloyd to convergence, or k-means++ seeding
        and a few Lloyd steps as in GaussianMixture), random, or K random rows.
    weight_concentration_prior_type : {'dirichlet_process', 'dirichlet_distribution'}
    weight_concentration_prior : float, default=1/n_components
    mean_precision_prior : float, default=1
    mean_prior : array of shape (D,), default=the data mean
    degrees_of_freedom_prior : float, default=D (must be > D - 1)
    covariance_prior : float or array, default=the data's (co)variance
        Shape (D, D) for 'full' and 'tied', (D,) for 'diag', a float for 'spherical'.
    random_state, warm_start, verbose, verbose_interval
        As in scikit-learn.
    device, dtype, chunk_size, callback
        As in :class:`gmmgan.GaussianMixture`.

    Attributes
    ----------
    weights_ : array of shape (K,)
    means_ : array of shape (K, D)
    covariances_, precisions_, precisions_cholesky_ : array, shapes as in GaussianMixture
    weight_concentration_prior_ : float
    weight_concentration_ : tuple of two arrays (K,) for 'dirichlet_process', array (K,) otherwise
    mean_precision_prior_ : float
    mean_precision_ : array of shape (K,)
    mean_prior_ : array of shape (D,)
    degrees_of_freedom_prior_ : float
    degrees_of_freedom_ : array of shape (K,) (a scalar array for 'tied')
    covariance_prior_ : float or array
    converged_, n_iter_, lower_bound_, lower_bounds_, n_features_in_, feature_names_in_
    n_active_components_ : int
        Components with ``weights_ > ACTIVE_WEIGHT_FRACTION / n_components`` (a tenth of a
        uniform weight): the number of components the data actually use.
    """

    def __init__(
        self,
        *,
        n_components=1,
        covariance_type="full",
        tol=1e-3,
        reg_covar=1e-6,
        max_iter=100,
        n_init=1,
        init_params="kmeans",
        weight_concentration_prior_type="dirichlet_process",
        weight_concentration_prior=None,
        mean_precision_prior=None,
        mean_prior=None,
        degrees_of_freedom_prior=None,
        covariance_prior=None,
        random_state=None,
        warm_start=False,
        verbose=0,
        verbose_interval=10,
        device=None,
        dtype=None,
        chunk_size=None,
        callback=None,
    ):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weight_concentration_prior_type = weight_concentration_prior_type
        self.weight_concentration_prior = weight_concentration_prior
        self.mean_precision_prior = mean_precision_prior
        self.mean_prior = mean_prior
        self.degrees_of_freedom_prior = degrees_of_freedom_prior
        self.covariance_prior = covariance_prior
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.device = device
        self.dtype = dtype
        self.chunk_size = chunk_size
        self.callback = callback

    # ------------------------------------------------------------------ checks
    def _check_parameters(self) -> None:
        if not _validation._is_int(self.n_components) or self.n_components < 1:
            raise ValueError(
                f"n_components must be a positive int (an upper bound on the components used), got "
                f"{self.n_components!r}."
            )
        super()._check_parameters()
        if self.weight_concentration_prior_type not in WEIGHT_PRIOR_TYPES:
            raise ValueError(
                f"Unknown weight_concentration_prior_type {self.weight_concentration_prior_type!r}; "
                f"choose one of {', '.join(repr(t) for t in WEIGHT_PRIOR_TYPES)}."
            )
        for name in ("weight_concentration_prior", "mean_precision_prior"):
            value = getattr(self, name)
            if value is not None and not (_validation._is_real(value) and value > 0 and np.isfinite(value)):
                raise ValueError(f"{name} must be None or a positive float, got {value!r}.")

    def _priors(self, source, summary, shift) -> _Priors:
        """The prior parameters (scikit-learn's defaults from the data), validated."""
        d, n = source.n_features, source.n_samples
        f64, dev = torch.float64, source.device
        wc = 1.0 / self.n_components if self.weight_concentration_prior is None else float(self.weight_concentration_prior)
        mp = 1.0 if self.mean_precision_prior is None else float(self.mean_precision_prior)
        if self.mean_prior is None:
            mean = summary.mean.to(f64)
        else:
            mean = _validation._as_tensor(self.mean_prior, "mean_prior", f64, dev)
            if tuple(mean.shape) != (d,):
                raise ValueError(f"The parameter 'means' should have the shape of ({d},), but got {tuple(mean.shape)}.")
        dof = self.degrees_of_freedom_prior
        if dof is None:
            dof = float(d)
        elif not (_validation._is_real(dof) and np.isfinite(dof)) or dof <= d - 1.0:
            raise ValueError(
                f"The parameter 'degrees_of_freedom_prior' should be greater than {d - 1}, but got "
                f"{f'{dof:.3f}' if _validation._is_real(dof) else repr(dof)}. Use at least the number of "
                f"features, {d}, or leave it None."
            )
        cov = self._covariance_prior(source, summary, d, n, dev)
        return _Priors(wc, mp, mean - shift.to(f64), float(dof), cov)

    def _covariance_prior(self, source, summary, d, n, dev) -> torch.Tensor:
        f64, ct = torch.float64, self.covariance_type
        if self.covariance_prior is None:
            if n < 2:
                raise ValueError("covariance_prior=None needs n_samples >= 2 (it is the data's covariance).")
            if ct in ("full", "tied"):
                scatter = torch.zeros(d, d, dtype=f64, device=dev)
                for x in source.chunks():
                    xc = x.to(f64) - summary.mean
                    scatter += xc.mT @ xc
                return scatter / (n - 1)
            var = summary.var.to(f64) * n / (n - 1)
            return var if ct == "diag" else var.mean()
        if ct == "spherical":
            value = self.covariance_prior
            if not (_validation._is_real(value) and value > 0 and np.isfinite(value)):
                raise ValueError(f"'spherical covariance_prior' should be a positive float, got {value!r}.")
            return torch.tensor(float(value), dtype=f64, device=dev)
        shape = (d, d) if ct in ("full", "tied") else (d,)
        prior = _validation._as_tensor(self.covariance_prior, "covariance_prior", f64, dev)
        if tuple(prior.shape) != shape:
            raise ValueError(
                f"The parameter '{ct} covariance_prior' should have the shape of {shape}, but got {tuple(prior.shape)}."
            )
        if ct == "diag":
            if bool((prior <= 0).any()):
                raise ValueError("'diag covariance_prior' should be positive.")
        elif not bool(torch.allclose(prior, prior.mT)) or bool((torch.linalg.eigvalsh(prior) <= 0).any()):
            raise ValueError(f"'{ct} covariance_prior' should be symmetric, positive-definite.")
        return prior

    # ------------------------------------------------------------------ fitting
    def _initialize(self, fit: FitData) -> _VState:
        return self._m_step(self._initial_stats(fit.data, fit.source, fit.shift, fit.generator, fit.cov),
                            fit.cov, fit.priors, fit.n_samples)

    def _warm_state(self, fit: FitData) -> _VState:
        return self._state(fit.shift.device, fit.shift)

    def _em_step(self, fit: FitData, state: _VState, n_iter: int) -> tuple[_VState, float]:
        # As scikit-learn's: the bound of the updated posterior, after the M-step.
        stats, entropy = self._e_step(fit.data, state, fit.cov, fit.source.dtype)
        state = self._m_step(stats, fit.cov, fit.priors, fit.n_samples)
        return state, self._lower_bound(state, entropy, fit.priors, fit.n_features)

    def _set_parameters(self, fit: FitData, state: _VState) -> None:
        self._set_state(state, fit.shift, fit.priors, fit.source)

    def _initial_stats(self, data, source, shift, generator, cov) -> _Stats:
        """Statistics of the initial responsibilities (scikit-learn's ``_initialize_parameters``)."""
        blocks, anchor = self._initial_resp(data, source, shift, generator)
        return responsibility_stats(blocks, anchor, cov)

    def _initial_resp(self, data, source, shift, generator):
        """(iterable of (shifted block, responsibilities), anchor) from ``init_params``.

        The one place initial responsibilities come from, so a test can start gmmgan and
        scikit-learn from identical ones by replacing this method.
        """
        return initial_responsibilities(self.init_params, self.n_components, data, source, shift, generator)

    def _e_step(self, data, state: _VState, cov, dtype) -> tuple[_Stats, float]:
        """Responsibilities block by block; returns the statistics and sum(r log r)."""
        f64 = torch.float64
        means, prec_chol = state.means.to(dtype), state.prec_chol.to(dtype)
        offset = (self._log_prob_offset(state, means.shape[1]) + self._log_weights(state)).to(dtype)
        k, dev = means.shape[0], means.device
        nk = torch.zeros(k, dtype=f64, device=dev)
        sx = torch.zeros(means.shape, dtype=f64, device=dev)
        stat, entropy = None, torch.zeros((), dtype=f64, device=dev)
        for x in data.chunks():
            wlp = cov.log_prob(x, means, prec_chol).add_(offset)
            log_resp = wlp.sub_(torch.logsumexp(wlp, dim=1, keepdim=True))
            resp = log_resp.exp()
            entropy += torch.where(resp > 0, resp * log_resp, 0.0).sum(dtype=f64)
            nk += resp.sum(0, dtype=f64)
            sx += (resp.mT @ x).to(f64)
            s = cov.accumulate(x, resp, means).to(f64)
            stat = s if stat is None else stat.add_(s)
        return _Stats(nk, sx, stat, means.to(f64)), float(entropy)

    def _m_step(self, stats: _Stats, cov, priors: _Priors, n_samples: int) -> _VState:
        """Variational updates from the statistics (scikit-learn's ``_estimate_*``), in float64."""
        k = stats.nk.shape[0]
        nk = stats.nk + 10 * torch.finfo(torch.float64).eps
        xk = stats.sx / nk.unsqueeze(1)
        sk = cov.covariances(stats.stat, stats.nk, nk, xk, stats.sx, stats.anchor, n_samples, self.reg_covar)
        if self.weight_concentration_prior_type == "dirichlet_process":
            tail = torch.cat([torch.flip(torch.cumsum(torch.flip(nk, [0]), 0), [0])[1:], nk.new_zeros(1)])
            wc = (1.0 + nk, priors.weight_concentration + tail)
        else:
            wc = priors.weight_concentration + nk
        mean_precision = priors.mean_precision + nk
        means = (priors.mean_precision * priors.mean + nk.unsqueeze(1) * xk) / mean_precision.unsqueeze(1)
        diff = xk - priors.mean
        ratio = priors.mean_precision / mean_precision
        ct = self.covariance_type
        if ct == "full":
            dof = priors.degrees_of_freedom + nk
            covs = priors.covariance + nk[:, None, None] * (sk + ratio[:, None, None] * diff.unsqueeze(2) * diff.unsqueeze(1))
            covs = covs / dof[:, None, None]
        elif ct == "tied":
            dof = priors.degrees_of_freedom + nk.sum() / k
            covs = priors.covariance + sk * nk.sum() / k + priors.mean_precision / k * ((nk / mean_precision) * diff.mT) @ diff
            covs = covs / dof
        elif ct == "diag":
            dof = priors.degrees_of_freedom + nk
            covs = (priors.covariance + nk.unsqueeze(1) * (sk + ratio.unsqueeze(1) * diff.square())) / dof.unsqueeze(1)
        else:
            dof = priors.degrees_of_freedom + nk
            covs = (priors.covariance + nk * (sk + ratio * diff.square().mean(1))) / dof
        prec_chol = cov.precision_cholesky(covs, self.reg_covar)
        return _VState(wc, mean_precision, means, dof, covs, prec_chol)

    def _log_weights(self, state: _VState) -> torch.Tensor:
        """E[log pi_k] under the variational posterior, shape (K,)."""
        wc, dg = state.weight_concentration, torch.special.digamma
        if self.weight_concentration_prior_type == "dirichlet_process":
            dsum = dg(wc[0] + wc[1])
            cum = torch.cumsum(dg(wc[1]) - dsum, 0)
            return dg(wc[0]) - dsum + torch.cat([cum.new_zeros(1), cum[:-1]])
        return dg(wc) - dg(wc.sum())

    def _log_prob_offset(self, state: _VState, d: int) -> torch.Tensor:
        """What E[log N(x | mu_k, Lambda_k)] adds to log N(x | means_k, covariances_k), shape (K,)."""
        dof = state.degrees_of_freedom
        i = torch.arange(d, dtype=torch.float64, device=dof.device)
        log_lambda = d * math.log(2.0) + torch.special.digamma(0.5 * (dof.reshape(-1, 1) - i)).sum(1)
        if dof.ndim == 0:
            log_lambda = log_lambda.squeeze(0)
        return -0.5 * d * dof.log() + 0.5 * (log_lambda - d / state.mean_precision)

    def _lower_bound(self, state: _VState, entropy: float, priors: _Priors, d: int) -> float:
        """scikit-learn's ``_compute_lower_bound`` (constant terms dropped)."""
        dof, k = state.degrees_of_freedom, state.means.shape[0]
        log_det = log_det_precision(self.covariance_type, state.prec_chol, d) - 0.5 * d * dof.log()
        i = torch.arange(d, dtype=torch.float64, device=dof.device)
        gl = torch.special.gammaln(0.5 * (dof.reshape(-1, 1) - i)).sum(1)
        wishart = -(dof * log_det + dof * d * 0.5 * math.log(2.0) + (gl if dof.ndim else gl.squeeze(0)))
        log_wishart = k * wishart if self.covariance_type == "tied" else wishart.sum()
        wc, lg = state.weight_concentration, torch.special.gammaln
        if self.weight_concentration_prior_type == "dirichlet_process":
            log_norm_weight = -(lg(wc[0]) + lg(wc[1]) - lg(wc[0] + wc[1])).sum()
        else:
            log_norm_weight = lg(wc.sum()) - lg(wc).sum()
        bound = -entropy - log_wishart - log_norm_weight - 0.5 * d * state.mean_precision.log().sum()
        return float(bound)

    # ----------------------------------------------------------- fitted params
    def _set_state(self, state: _VState, shift, priors: _Priors, source) -> None:
        cov = COVARIANCES[self.covariance_type]
        f64 = torch.float64
        shift64 = shift.to(f64)
        numpy_out = source.output_kind == "numpy"
        dt = source.dtype

        def out(t):
            t = t.detach().to(dt)
            return t.cpu().numpy() if numpy_out else t

        wc = state.weight_concentration
        if self.weight_concentration_prior_type == "dirichlet_process":
            total = wc[0] + wc[1]
            tmp = wc[1] / total
            weights = wc[0] / total * torch.cat([tmp.new_ones(1), torch.cumprod(tmp[:-1], 0)])
            self.weight_concentration_ = (out(wc[0]), out(wc[1]))
        else:
            weights = wc
            self.weight_concentration_ = out(wc)
        weights = weights / weights.sum()
        self.weights_ = out(weights)
        self.means_ = out(state.means + shift64)
        self.covariances_ = out(state.covariances)
        self.precisions_cholesky_ = out(state.prec_chol)
        self.precisions_ = out(cov.precisions(state.prec_chol))
        self.mean_precision_ = out(state.mean_precision)
        self.degrees_of_freedom_ = out(state.degrees_of_freedom)
        self.weight_concentration_prior_ = priors.weight_concentration
        self.mean_precision_prior_ = priors.mean_precision
        self.mean_prior_ = out(priors.mean + shift64)
        self.degrees_of_freedom_prior_ = priors.degrees_of_freedom
        cp = priors.covariance
        self.covariance_prior_ = float(cp) if cp.ndim == 0 else out(cp)
        self.n_active_components_ = int((weights > ACTIVE_WEIGHT_FRACTION / self.n_components).sum())

    def _state(self, device, shift) -> _VState:
        """The fitted variational parameters as float64 tensors on ``device``, means shifted."""
        self._check_is_fitted()
        def t(a):
            return torch.as_tensor(np.asarray(a) if not isinstance(a, torch.Tensor) else a).to(device=device, dtype=torch.float64)
        wc = self.weight_concentration_
        wc = (t(wc[0]), t(wc[1])) if isinstance(wc, tuple) else t(wc)
        return _VState(wc, t(self.mean_precision_), t(self.means_) - shift.to(device=device, dtype=torch.float64),
                       t(self.degrees_of_freedom_), t(self.covariances_), t(self.precisions_cholesky_))

    # --------------------------------------------------------------- inference
    def _inference_model(self, device, dtype):
        d = torch.as_tensor(self.means_).shape[1]
        state = self._state(device, torch.zeros(d, dtype=torch.float64, device=device))
        weights = torch.as_tensor(self.weights_).to(device=device, dtype=torch.float64)
        shift = (weights @ state.means).to(dtype)
        state.means = state.means - shift.to(torch.float64)
        cov = COVARIANCES[self.covariance_type]
        # The variational log-probabilities: the Gaussian ones plus a per-component offset.
        offset = (self._log_prob_offset(state, d) + self._log_weights(state)).to(dtype)
        means, prec_chol = state.means.to(dtype), state.prec_chol.to(dtype)
        return shift, lambda x: cov.log_prob(x, means, prec_chol).add_(offset)

    def score(self, X, y=None) -> float:
        """Mean log-likelihood per sample of ``X``.

        Always over this process's rows: unlike GaussianMixture, this estimator is not fitted
        across processes, so under a ``torch.distributed`` process group its score is not a
        collective either (one rank may call it alone).
        """
        with gdist.local_only():
            return super().score(X, y)
