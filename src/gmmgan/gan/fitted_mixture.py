"""The Gaussian mixture a fitted prior (or the GMM-likelihood regulariser) samples from, kept as tensors.

Fitted by EM with :class:`gmmgan.GaussianMixture` on an embedding's codes, then held as buffers
(weights, means, Cholesky factors) so that sampling and the differentiable ``log_prob`` run on
the prior's device, inside a captured CUDA graph too.
"""

from __future__ import annotations

import torch
from torch import nn

from gmmgan.gan.embed import ResizableBuffersMixin

__all__ = ["FittedMixture"]

_SAMPLE_CHUNK = 4096  # rows per block when sampling full-covariance components (bounds memory)


class FittedMixture(ResizableBuffersMixin, nn.Module):
    """A Gaussian mixture fitted with :class:`gmmgan.GaussianMixture`, kept as tensors for sampling.

    Buffers: ``weights`` (K,), ``means`` (K, d), ``scale_tril`` (K, d, d) (Cholesky factors of the
    covariances, any covariance type expanded to full). :meth:`log_prob` is differentiable.
    ``n_components='auto'`` lets :class:`gmmgan.GaussianMixture` choose K by BIC; K is then known
    after :meth:`fit` (or from a loaded state dict).
    """

    def __init__(self, n_components: int | str, covariance_type: str = "full", *, max_iter: int = 100,
                 n_init: int = 1, reg_covar: float = 1e-6, seed: int = 0):
        super().__init__()
        if n_components != "auto" and (isinstance(n_components, bool) or not isinstance(n_components, int)
                                        or n_components < 1):
            raise ValueError(f"n_components must be a positive int or 'auto', got {n_components!r}.")
        self._k, self.covariance_type = n_components, covariance_type
        self.max_iter, self.n_init, self.reg_covar, self.seed = max_iter, n_init, reg_covar, seed
        for name in ("weights", "means", "scale_tril"):
            self.register_buffer(name, torch.empty(0))
        self.lower_bound: float | None = None

    @property
    def fitted(self) -> bool:
        return self.means.numel() > 0

    @property
    def n_components(self) -> int:
        """K: the fitted number of components (the requested one before fitting, unless 'auto')."""
        if self.fitted:
            return self.means.shape[0]
        if self._k == "auto":
            raise ValueError("n_components='auto' is only known after fit(); fit the prior on real data first.")
        return self._k

    @torch.no_grad()
    def fit(self, e: torch.Tensor, callback=None) -> FittedMixture:
        """Fit by EM to embeddings ``e`` (N, d); ``callback`` as :class:`gmmgan.GaussianMixture`'s (not for 'auto')."""
        from gmmgan import GaussianMixture
        from gmmgan.mixture._covariance import COVARIANCES

        if self._k != "auto" and e.shape[0] < self._k:
            raise ValueError(
                f"cannot fit {self._k} mixture components to {e.shape[0]} samples; "
                "use fewer components (prior.n_components) or more data (prior.fit_samples)."
            )
        # float32: several times faster than float64 on CPU and ample for a latent prior.
        x = e.float()
        gm = GaussianMixture(self._k, covariance_type=self.covariance_type, max_iter=self.max_iter,
                             n_init=self.n_init, reg_covar=self.reg_covar, random_state=self.seed,
                             callback=callback).fit(x)
        k, d = gm.means_.shape
        cov = COVARIANCES[self.covariance_type].full_covariances(torch.as_tensor(gm.covariances_).double(), k, d)
        # Kept in torch's default dtype (float32), as the nets that consume the samples.
        device, dtype = self.weights.device, torch.get_default_dtype()
        self.weights = torch.as_tensor(gm.weights_).to(device, dtype)
        self.means = torch.as_tensor(gm.means_).to(device, dtype)
        self.scale_tril = torch.linalg.cholesky(cov).to(device, dtype)
        self.lower_bound = float(gm.lower_bound_)
        return self

    def _check_fitted(self) -> None:
        if not self.fitted:
            raise ValueError("the mixture is not fitted yet; call fit() on real data (or load a state_dict) first.")

    def sample(self, k: torch.Tensor, generator=None) -> torch.Tensor:
        """One sample from component ``k[i]`` for every i; shape (len(k), d)."""
        self._check_fitted()
        eps = torch.randn(k.shape[0], self.means.shape[1], generator=generator, device=self.means.device)
        out = torch.empty_like(eps)
        for s in range(0, k.shape[0], _SAMPLE_CHUNK):
            kk = k[s : s + _SAMPLE_CHUNK]
            out[s : s + _SAMPLE_CHUNK] = self.means[kk] + (self.scale_tril[kk] @ eps[s : s + _SAMPLE_CHUNK, :, None])[..., 0]
        return out

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) for x (n, d), differentiable w.r.t. x; shape (n,)."""
        self._check_fitted()
        D = torch.distributions
        mix = D.MixtureSameFamily(
            D.Categorical(probs=self.weights, validate_args=False),
            D.MultivariateNormal(self.means, scale_tril=self.scale_tril, validate_args=False),
            validate_args=False,
        )
        return mix.log_prob(x.to(self.means.dtype))

    def log_posterior(self, x: torch.Tensor) -> torch.Tensor:
        """log p(k | x) for x (n, d), differentiable w.r.t. x; shape (n, K).

        Written with a triangular solve instead of ``torch.distributions`` so it needs no
        validation and runs inside a captured CUDA graph (the component-consistency loss,
        :mod:`gmmgan.gan.component_consistency`).
        """
        self._check_fitted()
        diff = (x.to(self.means.dtype)[:, None, :] - self.means[None]).transpose(0, 1)  # (K, n, d)
        white = torch.linalg.solve_triangular(self.scale_tril, diff.transpose(1, 2), upper=False)  # (K, d, n)
        maha = white.square().sum(1).T  # (n, K)
        log_det = torch.log(torch.diagonal(self.scale_tril, dim1=-2, dim2=-1)).sum(-1)  # (K,)
        return torch.log_softmax(torch.log(self.weights) - log_det - 0.5 * maha, dim=1)
