"""Latent priors for generators: the five configurations of docs/protocols.md, section 'Latent priors'.

=================  ==========================================================================
class              z
=================  ==========================================================================
GaussianPrior      z ~ N(0, I) (the baseline)
FittedGMMPrior     a GMM fitted on real data in an embedding (identity for 2-D, PCA or an
                   autoencoder for images)
                   is sampled, plus optional N(0, I) noise coordinates; optional warm start
                   regressing G onto the embedding's decoder
FixedGMMPrior      static GM-GAN: K means drawn once uniformly in [-c, c]^d, fixed sigma
LearnableGMMPrior  DeLiGAN: z = mu_k + sigma_k * eps with mu, sigma trained with G and a
                   penalty mean((1 - sigma)^2) that keeps sigma from collapsing
GMMRegularizedPrior  z ~ N(0, I), and the generator loss adds lambda * (-log p_GMM(embed(G(z))))
                   for a GMM fitted on real-data embeddings
=================  ==========================================================================

Common interface: ``sample(n, generator=None, component=None) -> z (n, z_dim)``, ``z_dim``,
``n_components``, ``fit(real, callback=None)`` (a no-op for priors that are not fitted; ``callback``
is called after every EM iteration of a fitted mixture, see :class:`gmmgan.GaussianMixture`), ``penalty(fake)`` (the
extra generator loss, or None), ``warm_start_target(z)`` (what G(z) is regressed onto, or None),
and ``state_dict`` / ``load_state_dict`` (priors are ``nn.Module`` s; fitted quantities are buffers
that take the saved shapes on load).
"""

from __future__ import annotations

import math
import numbers

import torch
from torch import nn

from gmmgan.gan.component_consistency import ComponentHead, consistency_loss
from gmmgan.gan.embed import Embedding, ResizableBuffersMixin
from gmmgan.gan.embedding_kinds import build_embedding
from gmmgan.gan.fitted_mixture import FittedMixture
from gmmgan.gan.losses import gmm_nll

__all__ = [
    "FittedGMMPrior",
    "FittedMixture",
    "FixedGMMPrior",
    "GMMRegularizedPrior",
    "GaussianPrior",
    "LearnableGMMPrior",
    "Prior",
    "build_prior",
    "trained_parameters",
]

def _check_n(n) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}.")
    return n


def _check_int(name: str, value, minimum: int = 1) -> int:
    """A constructor's size argument (z_dim, n_components, ...): an int >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}.")
    return int(value)


def _check_positive(name: str, value, allow_zero: bool = False) -> float:
    """A constructor's scale argument (sigma, mean_range, ...): a finite number > 0 (or >= 0)."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be a finite number {'>= 0' if allow_zero else '> 0'}, got {value!r}.")
    return float(value)


class Prior(ResizableBuffersMixin, nn.Module):
    """Base class of latent priors (see the module docstring for the interface)."""

    needs_fit = False

    def __init__(self):
        super().__init__()
        # Tells which device the prior lives on, also for priors without other tensors.
        self.register_buffer("_anchor", torch.zeros(0), persistent=False)

    @property
    def device(self) -> torch.device:
        return self._anchor.device

    @property
    def z_dim(self) -> int:
        raise NotImplementedError

    @property
    def n_components(self) -> int:
        return 1

    def fit(self, real: torch.Tensor, callback=None) -> Prior:
        """Fit to real data samples (N, *shape); priors that need no data ignore it.

        ``callback(info)`` is called after every EM iteration of a fitted mixture (info: init,
        n_iter, lower_bound, change; see :class:`gmmgan.GaussianMixture`).
        """
        return self

    def sample(self, n: int, generator: torch.Generator | None = None, component: int | None = None) -> torch.Tensor:
        """Draw ``n`` latent vectors, shape (n, z_dim), on the prior's device.

        Parameters
        ----------
        n : int
        generator : torch.Generator, optional
            On the prior's device; the default is the global RNG.
        component : int, optional
            Mixture priors: draw only from this component (0 <= component < n_components).
        """
        return self.sample_with_components(n, generator, component)[0]

    def sample_with_components(self, n, generator=None, component=None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(z (n, z_dim), component of each row (n,) or None for priors without components)."""
        raise NotImplementedError

    def penalty(self, fake: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor | None:
        """Extra generator loss given generated samples ``fake = G(z)`` (and their latents ``z``), or None."""
        return None

    def warm_start_target(self, z: torch.Tensor) -> torch.Tensor | None:
        """Samples G(z) should match before adversarial training (fitted prior), or None."""
        return None

    def _components(self, n: int, component, generator, weights: torch.Tensor | None = None) -> torch.Tensor:
        k = self.n_components
        if component is not None:
            if isinstance(component, bool) or not isinstance(component, int) or not 0 <= component < k:
                raise ValueError(f"component must be an int in [0, {k - 1}], got {component!r}.")
            return torch.full((n,), component, dtype=torch.long, device=self.device)
        if weights is None:
            return torch.randint(k, (n,), generator=generator, device=self.device)
        return torch.multinomial(weights, n, replacement=True, generator=generator)

    def _no_components(self, component) -> None:
        if component is not None:
            raise ValueError(
                f"{type(self).__name__} has no mixture components, so component={component!r} cannot be used; "
                "train with a GMM prior (prior.kind=fitted_gmm, fixed_gmm or learnable_gmm) to sample per component."
            )


class GaussianPrior(Prior):
    """z ~ N(0, I) of size ``z_dim`` (the baseline)."""

    def __init__(self, z_dim: int):
        super().__init__()
        self._z_dim = _check_int("z_dim", z_dim)

    @property
    def z_dim(self) -> int:
        return self._z_dim

    def sample_with_components(self, n, generator=None, component=None):
        self._no_components(component)
        return torch.randn(_check_n(n), self.z_dim, generator=generator, device=self.device), None

    def extra_repr(self) -> str:
        return f"z_dim={self.z_dim}"


class _EmbeddedMixtureMixin:
    """Shared by the fitted prior and the regulariser: an embedding + a mixture fitted in it."""

    needs_fit = True
    embedding: Embedding
    mixture: FittedMixture

    def _init_fitting(self, embedding, n_components, covariance_type, fit_samples, fit_kw, seed):
        self.embedding = embedding
        self.mixture = FittedMixture(n_components, covariance_type, seed=seed, **fit_kw)
        self.fit_samples, self.seed = int(fit_samples), int(seed)

    def fit_subset(self, real: torch.Tensor) -> torch.Tensor:
        """The real samples the embedding and the mixture are fitted on: at most ``fit_samples``, drawn from ``seed``."""
        n = real.shape[0]
        if n <= self.fit_samples:
            return real
        g = torch.Generator().manual_seed(self.seed)
        return real[torch.randperm(n, generator=g)[: self.fit_samples].to(real.device)]

    @torch.no_grad()
    def fit(self, real: torch.Tensor, callback=None, embed_callback=None):
        """Fit the embedding and the mixture on (at most ``fit_samples``) real samples (N, *shape).

        ``callback`` is called after every EM iteration of the mixture (see :meth:`FittedMixture.fit`),
        ``embed_callback(done, total, loss[, label])`` while a learned embedding trains.
        """
        self.fit_mixture(self.fit_embedding(real, embed_callback), callback)
        return self

    def fit_embedding(self, real: torch.Tensor, callback=None) -> torch.Tensor:
        """Fit the embedding on the :meth:`fit_subset` of ``real``; returns that subset's codes for the mixture.

        A learned embedding that is already trained (loaded from another run, ``prior.embed_from``) is
        kept as it is; with a manifold step, the codes are its stored training rows' layout coordinates
        (at most ``max_stored`` of them), not the neighbour averages ``encode`` gives.
        """
        real = self.fit_subset(real)
        if not self.embedding.learned:
            self.embedding.fit(real)
        elif not self.embedding.fitted:  # it turns gradients on for its own training (fit runs under no_grad)
            codes = self.embedding.fit_encode(real, callback=callback)
            self._keep_head_features(lambda: self.embedding.features(real))
            return codes
        layout = self.embedding.stored_layout()
        if layout is not None:  # a reused manifold step: its training rows' own coordinates (same data, checked)
            self._keep_head_features(lambda: layout[0])
            return layout[1]
        self._keep_head_features(lambda: self.embedding.features(real))
        return self.embedding.encode(real)

    def _keep_head_features(self, features) -> None:
        """Hook for a prior that fits a head on the mixture's training rows' features (``features()``); no-op here."""

    @torch.no_grad()
    def fit_mixture(self, codes: torch.Tensor, callback=None):
        """Fit the mixture by EM to the embedding's ``codes`` (N, dim) of the real samples."""
        self.mixture.fit(codes, callback=callback)
        self._fit_head(codes)
        return self

    def _fit_head(self, codes: torch.Tensor) -> None:
        """Hook run after the mixture is fitted (the fitted prior's component head); no-op here."""

    @property
    def n_components(self) -> int:
        return self.mixture.n_components


class FittedGMMPrior(_EmbeddedMixtureMixin, Prior):
    """The core pipeline: z = [GMM sample in the embedding, N(0, I) noise of size ``noise_dim``].

    Parameters
    ----------
    embedding : Embedding
        Identity for 2-D points, PCA for images (see :func:`gmmgan.gan.embedding_kinds.build_embedding`).
    n_components : int
    covariance_type : {'full', 'diag', 'spherical', 'tied'}, default='full'
    noise_dim : int, default=0
    fit_samples : int, default=20000
        At most this many real samples are used by :meth:`fit`.
    max_iter, n_init, reg_covar : EM settings.
    seed : int, default=0
        Seeds the subset and EM initialisation.
    consistency : float, default=0
        Weight of the component-consistency loss added to G's (:mod:`gmmgan.gan.component_consistency`):
        the image of a latent from component k must embed into component k. With an embedding whose
        ``encode`` has no gradient (a manifold step), a :class:`ComponentHead` is fitted after the
        mixture and kept in the prior's state as ``head``.
    """

    def __init__(self, embedding: Embedding, n_components: int, covariance_type: str = "full", *, noise_dim: int = 0,
                 fit_samples: int = 20_000, max_iter: int = 100, n_init: int = 1, reg_covar: float = 1e-6, seed: int = 0,
                 consistency: float = 0.0):
        Prior.__init__(self)
        self._init_fitting(embedding, n_components, covariance_type, fit_samples,
                           {"max_iter": max_iter, "n_init": n_init, "reg_covar": reg_covar}, seed)
        self.noise_dim = _check_int("noise_dim", noise_dim, minimum=0)
        self.consistency = _check_positive("consistency", consistency, allow_zero=True)
        # Only when used, so that the state of a prior without it keeps its keys (older runs load).
        self.head = ComponentHead() if self.consistency and not embedding.differentiable else None
        self._head_features: torch.Tensor | None = None

    def _keep_head_features(self, features) -> None:
        if self.head is not None:
            self._head_features = features()

    def _fit_head(self, codes: torch.Tensor) -> None:
        if self.head is None:
            return
        if self._head_features is None:
            raise ValueError("the component head is fitted on the embedding's features of the real samples: "
                             "fit the prior with fit(real) (or fit_embedding(real) before fit_mixture).")
        self.head.fit(self._head_features, self.mixture.log_posterior(codes))
        self._head_features = None

    def penalty(self, fake: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor | None:
        """``consistency`` times the cross-entropy between z's component posterior and G(z)'s, or None."""
        if not self.consistency:
            return None
        if z is None:
            raise ValueError("the component-consistency loss needs the latents z of the generated samples.")
        with torch.no_grad():
            target = self.mixture.log_posterior(z[:, : self.embedding.dim].float())
        if self.head is not None:
            pred = self.head.log_probs(self.embedding.features(fake.float()))
        else:
            pred = self.mixture.log_posterior(self.embedding.encode(fake.float()))
        return self.consistency * consistency_loss(target, pred)

    @property
    def z_dim(self) -> int:
        return self.embedding.dim + self.noise_dim

    def sample_with_components(self, n, generator=None, component=None):
        self.mixture._check_fitted()
        k = self._components(_check_n(n), component, generator, self.mixture.weights)
        z = self.mixture.sample(k, generator)
        if self.noise_dim:
            z = torch.cat([z, torch.randn(n, self.noise_dim, generator=generator, device=self.device)], 1)
        return z, k

    def warm_start_target(self, z: torch.Tensor) -> torch.Tensor:
        """The embedding's decoder applied to the mixture part of z (the PCA reconstruction)."""
        return self.embedding.decode(z[:, : self.embedding.dim])

    def extra_repr(self) -> str:
        return f"n_components={self.n_components}, noise_dim={self.noise_dim}"


class FixedGMMPrior(Prior):
    """Static GM-GAN prior: K means drawn once uniformly in [-mean_range, mean_range]^z_dim, fixed sigma.

    Components are equally likely. The means are drawn from ``seed`` (not the global RNG).
    """

    def __init__(self, z_dim: int, n_components: int, sigma: float = 0.1, mean_range: float = 1.0, seed: int = 0):
        super().__init__()
        z_dim, n_components = _check_int("z_dim", z_dim), _check_int("n_components", n_components)
        mean_range = _check_positive("mean_range", mean_range)
        g = torch.Generator().manual_seed(int(seed))
        self.register_buffer("means", (torch.rand(n_components, z_dim, generator=g) * 2 - 1) * mean_range)
        self.sigma = _check_positive("sigma", sigma)

    @property
    def z_dim(self) -> int:
        return self.means.shape[1]

    @property
    def n_components(self) -> int:
        return self.means.shape[0]

    def sample_with_components(self, n, generator=None, component=None):
        k = self._components(_check_n(n), component, generator)
        eps = torch.randn(n, self.z_dim, generator=generator, device=self.device)
        return self.means[k] + self.sigma * eps, k

    def extra_repr(self) -> str:
        return f"z_dim={self.z_dim}, n_components={self.n_components}, sigma={self.sigma}"


class LearnableGMMPrior(Prior):
    """DeLiGAN prior: z = mu_k + sigma_k * eps, k uniform, mu (K, d) and sigma (K, d) trained with G.

    ``penalty`` returns ``sigma_penalty * mean((1 - sigma)^2)``: without it the generator's loss
    shrinks sigma towards 0 (every component becomes a point). Optimise ``prior.parameters()``
    together with G's.
    """

    def __init__(self, z_dim: int, n_components: int, sigma_init: float = 0.2, mean_range: float = 1.0,
                 sigma_penalty: float = 0.1, seed: int = 0):
        super().__init__()
        z_dim, n_components = _check_int("z_dim", z_dim), _check_int("n_components", n_components)
        mean_range = _check_positive("mean_range", mean_range)
        g = torch.Generator().manual_seed(int(seed))
        self.mu = nn.Parameter((torch.rand(n_components, z_dim, generator=g) * 2 - 1) * mean_range)
        self.sigma = nn.Parameter(torch.full((n_components, z_dim), _check_positive("sigma_init", sigma_init)))
        self.sigma_penalty = _check_positive("sigma_penalty", sigma_penalty, allow_zero=True)

    @property
    def z_dim(self) -> int:
        return self.mu.shape[1]

    @property
    def n_components(self) -> int:
        return self.mu.shape[0]

    def sample_with_components(self, n, generator=None, component=None):
        k = self._components(_check_n(n), component, generator)
        eps = torch.randn(n, self.z_dim, generator=generator, device=self.device)
        return self.mu[k] + self.sigma[k] * eps, k

    def penalty(self, fake: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor | None:
        return self.sigma_penalty * (1 - self.sigma).square().mean() if self.sigma_penalty else None

    def extra_repr(self) -> str:
        return f"z_dim={self.z_dim}, n_components={self.n_components}, sigma_penalty={self.sigma_penalty}"


class GMMRegularizedPrior(_EmbeddedMixtureMixin, Prior):
    """z ~ N(0, I); the generator loss adds ``weight * gmm_nll(gmm, embed(G(z)))`` (docs/protocols.md,
    section 'Latent priors', item 4).

    The GMM is fitted on real-data embeddings by :meth:`fit`; ``sample(component=...)`` is not
    available (z has no components).
    """

    def __init__(self, z_dim: int, embedding: Embedding, n_components: int, weight: float = 1e-3,
                 covariance_type: str = "full", *, fit_samples: int = 20_000, max_iter: int = 100, n_init: int = 1,
                 reg_covar: float = 1e-6, seed: int = 0):
        Prior.__init__(self)
        self._init_fitting(embedding, n_components, covariance_type, fit_samples,
                           {"max_iter": max_iter, "n_init": n_init, "reg_covar": reg_covar}, seed)
        self._z_dim, self.weight = _check_int("z_dim", z_dim), _check_positive("weight", weight, allow_zero=True)

    @property
    def z_dim(self) -> int:
        return self._z_dim

    def sample_with_components(self, n, generator=None, component=None):
        self._no_components(component)
        return torch.randn(_check_n(n), self.z_dim, generator=generator, device=self.device), None

    def penalty(self, fake: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor | None:
        if not self.weight:
            return None
        return self.weight * gmm_nll(self.mixture, self.embedding.encode(fake.float()))

    def extra_repr(self) -> str:
        return f"z_dim={self.z_dim}, n_components={self.n_components}, weight={self.weight}"


def trained_parameters(prior: nn.Module) -> list[nn.Parameter]:
    """The prior's parameters that G's optimizer trains (a learnable prior's; a learned embedding's are frozen)."""
    return [p for p in prior.parameters() if p.requires_grad]


def build_prior(cfg, data_shape: tuple[int, ...], seed: int = 0) -> Prior:
    """The prior described by a :class:`gmmgan.gan.config.PriorConfig` for samples of ``data_shape``.

    Fitted priors come back unfitted: call ``fit(real)`` (or ``load_state_dict``) before sampling.
    """
    kind = cfg.kind
    if kind not in ("gaussian", "fitted_gmm", "gmm_reg", "fixed_gmm", "learnable_gmm"):
        raise ValueError(f"unknown prior kind {kind!r}; expected gaussian, fitted_gmm, fixed_gmm, learnable_gmm or gmm_reg.")
    fit_kw = {"fit_samples": cfg.fit_samples, "max_iter": cfg.fit_max_iter, "n_init": cfg.fit_n_init,
              "reg_covar": cfg.reg_covar, "seed": seed}
    if kind == "gaussian":
        return GaussianPrior(cfg.z_dim)
    if kind in ("fitted_gmm", "gmm_reg"):
        embedding = build_embedding(cfg.embed, tuple(data_shape), cfg.embed_dim, cfg.whiten, seed,
                                    epochs=cfg.embed_epochs, width=cfg.embed_width,
                                    manifold_dim=cfg.embed_manifold_dim, views=cfg.embed_views)
        if kind == "fitted_gmm":
            return FittedGMMPrior(embedding, cfg.n_components, cfg.covariance_type, noise_dim=cfg.noise_dim,
                                  consistency=cfg.consistency, **fit_kw)
        return GMMRegularizedPrior(cfg.z_dim, embedding, cfg.n_components, cfg.reg_weight, cfg.covariance_type, **fit_kw)
    if kind == "fixed_gmm":
        return FixedGMMPrior(cfg.z_dim, cfg.n_components, cfg.sigma, cfg.mean_range, seed)
    return LearnableGMMPrior(cfg.z_dim, cfg.n_components, cfg.sigma_init, cfg.mean_range, cfg.sigma_penalty, seed)
