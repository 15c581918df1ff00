"""The Mixture Density GAN discriminator loss (Eghbal-zadeh, Zellinger, Parada-Cabaleiro and Widmer,
"Mixture Density Generative Adversarial Networks", CVPR 2019), ``loss.kind: mixture_density``.

D maps a sample (or a PacGAN pack) to an embedding ``e`` in R^d instead of one logit. A fixed mixture
of K isotropic Gaussians in that space, centred at the vertices ``mu_k`` of a regular simplex with
equal weights, has the likelihood L(e) = (1/K) sum_k N(e | mu_k, sigma^2 I); D's probability that the
sample is real is that likelihood divided by its largest value (the paper's lambda = max_e L(e)),

    p(x) = L(e(x)) / max_e L(e) = f(e(x)) / max_e f(e),   f(e) = sum_k exp(-||e - mu_k||^2 / (2 sigma^2)),

so p lies in (0, 1] and reaches 1 (at, or next to, a vertex): D can be sure of a real. Without the
division (p = L or p = f / K), p stays <= 1/K at a vertex, the real term -log p never falls below
log K and the fake term -log(1 - p) is at most log(K / (K - 1)): D cannot tell real from fake with any
confidence and G learns nothing (measured on the ring: 7/8 modes, HQ 8% after 100 kimg).

The losses are binary cross-entropy on p (the paper's), with the non-saturating generator loss:

    L_D = -E log p(real) - E log(1 - p(fake)),        L_G = -E log p(fake).

Everything is computed from the *score* s = log p = logsumexp_k(-||e - mu_k||^2 / (2 sigma^2)) - log max f <= 0
(:meth:`MixtureDensityLoss.score`): -log p = -s, and -log(1 - p) = -log1mexp(s), evaluated as
log(-expm1(s)) for s > -log 2 and log1p(-exp(s)) below (Maechler 2012), so that neither an embedding
far from every vertex (p underflows) nor one at a vertex gives an infinite loss or a NaN gradient.
On the fake side s is clamped at -eps (float eps) first: with K = 1 a real at the vertex has s = 0.
R1 and WGAN-GP penalise the gradient of s (the log-probability of "real") in place of a logit.

Defaults (``LossConfig.md_*``): embedding size d = 9 and K = d + 1 = 10 components, one per vertex
of a regular simplex in R^d, as in the paper; sigma = 1 and simplex edge length 5 are this module's
(a public re-implementation, github.com/haihabi/MD-GAN, read for the division by lambda, uses unit-norm
vertices, sigma = 0.5 and embeddings bounded by a scaled sigmoid; the authors' own code is not public). Why 5: the centre of the simplex (where a freshly initialised
D puts every embedding) is always a stationary point of s, and the Hessian of s there is
(dist^2 / (2 K sigma^2) - 1) / sigma^2 times the identity on the simplex's span, so for dist < sigma sqrt(2K)
(4.47 for K = 10) the centre is a local *maximum* of p: D is pulled to put reals at the centre instead
of at the vertices (at dist = 3, p is even larger at the centre than at a vertex: the centre is then
where p = 1). At dist = 5 the centre is a local minimum (s = -3.32 there, -3e-5 at a vertex) and a
kernel is worth exp(-5^2 / 2) ~ 4e-6 of its peak at a neighbouring vertex: distinct kernels whose
tails still give a gradient between vertices. Keep md_distance > md_sigma * sqrt(2 * md_components)
when changing K.

max f is found once, in float64, by mean-shift (the fixed-point iteration e <- sum_k w_k mu_k / sum_k w_k,
w_k = exp(-||e - mu_k||^2 / 2 sigma^2), which climbs to a local maximum of f) started from the centroid
of the first j vertices for j = 1..K: by the simplex's symmetry every local maximum is equivalent to
one reached from such a start (a vertex, the centre, or a face's centre).

Initialisation: a freshly (DCGAN-)initialised D maps every sample to within ~1e-3 of the centre, a
stationary point of s, so D's first gradients are tiny (proportional to the embedding). Adam with
``optim.eps=1e-8`` amplifies them and D leaves the centre within tens of steps on the tiny ring; with
the 2-D quickstart's ``optim.eps=1e-2`` it stays there (the losses did not move in 60 steps).

The means are one constant tensor per device and dtype, made on first use (eager, before any CUDA
graph is captured) and reused; the losses are vmap-friendly (no data-dependent Python control flow).
"""

from __future__ import annotations

import math

import torch

__all__ = ["MixtureDensityLoss", "simplex_vertices", "check_mixture_density"]


def check_mixture_density(dim, components, sigma, distance, min_dim: int = 1) -> None:
    """ValueError with a helpful message unless the ``loss.md_*`` values describe a valid mixture.

    The config asks ``min_dim=2``: a D with one output unit gives a logit (squeezed to (N,)), not an embedding.
    """
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < min_dim:
        raise ValueError(f"loss.md_dim (the size of D's embedding) must be an integer >= {min_dim}, got {dim!r}.")
    if components is not None:
        if isinstance(components, bool) or not isinstance(components, int) or components < 1:
            raise ValueError(f"loss.md_components must be an integer >= 1 (or null for md_dim + 1), got {components!r}.")
        if components > dim + 1:
            raise ValueError(f"loss.md_components={components} is more than md_dim + 1 = {dim + 1}: a regular simplex "
                             f"in R^{dim} has at most {dim + 1} vertices; raise loss.md_dim to >= {components - 1} "
                             "or lower md_components.")
    if not sigma > 0:
        raise ValueError(f"loss.md_sigma (the kernels' standard deviation) must be > 0, got {sigma!r}.")
    if not distance > 0:
        raise ValueError(f"loss.md_distance (the simplex edge length) must be > 0, got {distance!r}.")


def simplex_vertices(k: int, dim: int, distance: float, dtype=torch.float64, device=None) -> torch.Tensor:
    """The K vertices (K, dim) of a regular simplex centred at 0 with every edge ``distance`` long.

    Deterministic: the standard basis e_1..e_K of R^K, centred (e_i - 1/K, which lie in the
    hyperplane sum = 0), written in the Helmert orthonormal basis of that hyperplane
    (h_j = (1, ..., 1, -j, 0, ...) / sqrt(j (j + 1)), j = 1..K-1), scaled by distance / sqrt(2)
    (|e_i - e_j| = sqrt(2)), then padded with zeros from K - 1 to ``dim`` coordinates.
    """
    check_mixture_density(dim, k, 1.0, distance)
    basis = torch.zeros(k, k - 1, dtype=torch.float64)
    for j in range(1, k):
        basis[:j, j - 1] = 1.0
        basis[j, j - 1] = -float(j)
        basis[:, j - 1] /= math.sqrt(j * (j + 1))
    centred = torch.eye(k, dtype=torch.float64) - 1.0 / k
    coords = centred @ basis * (distance / math.sqrt(2.0))
    out = torch.zeros(k, dim, dtype=torch.float64)
    out[:, : k - 1] = coords
    return out.to(device=device, dtype=dtype)


def _log1mexp(s: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(s)) for s < 0, stable at both ends (both branches are finite where they are used)."""
    near = s > -math.log(2.0)
    a = torch.log(-torch.expm1(torch.where(near, s, -1.0)))
    b = torch.log1p(-torch.exp(torch.where(near, -1.0, s)))
    return torch.where(near, a, b)


def _log_f(e: torch.Tensor, mu: torch.Tensor, sigma: float) -> torch.Tensor:
    """log sum_k exp(-||e - mu_k||^2 / (2 sigma^2)) over the last axis of ``e`` (..., dim) -> (...,)."""
    sq = (e.unsqueeze(-2) - mu).square().sum(-1)  # (..., K); exact (no |e|^2 - 2 e.mu + |mu|^2 cancellation)
    return torch.logsumexp(sq * (-0.5 / sigma ** 2), -1)


def _log_peak(mu: torch.Tensor, sigma: float, iters: int = 2000) -> float:
    """log max_e sum_k exp(-||e - mu_k||^2 / (2 sigma^2)) for the simplex vertices ``mu`` (K, dim), float64."""
    k = mu.shape[0]
    starts = torch.cumsum(mu, 0) / torch.arange(1, k + 1, dtype=mu.dtype).unsqueeze(1)  # centroids of 1..K vertices
    e = starts.clone()
    for _ in range(iters):
        w = torch.softmax((e.unsqueeze(1) - mu).square().sum(-1) * (-0.5 / sigma ** 2), 1)
        e = w @ mu
    return float(torch.maximum(_log_f(e, mu, sigma), _log_f(starts, mu, sigma)).max())


class MixtureDensityLoss:
    """The loss pair of a Mixture Density GAN; the interface of :class:`gmmgan.gan.losses.GANLoss`.

    ``d(real_out, fake_out)`` and ``g(fake_out)`` take D's embeddings (N, dim) and return the mean
    loss; ``score(out)`` maps embeddings (..., dim) to s = log p(real) (...,).
    """

    name = "mixture_density"

    def __init__(self, dim: int = 9, components: int | None = None, sigma: float = 1.0, distance: float = 5.0):
        components = dim + 1 if components is None else components
        check_mixture_density(dim, components, sigma, distance)
        self.dim, self.components, self.sigma, self.distance = dim, components, float(sigma), float(distance)
        self._means64 = simplex_vertices(components, dim, distance)
        self.log_peak = _log_peak(self._means64, self.sigma)
        self._means: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}

    def means(self, device, dtype) -> torch.Tensor:
        """The simplex vertices (K, dim) on ``device`` in ``dtype``, made once per pair."""
        key = (torch.device(device), dtype)
        if key not in self._means:
            self._means[key] = self._means64.to(device=key[0], dtype=dtype)
        return self._means[key]

    def score(self, out: torch.Tensor) -> torch.Tensor:
        """s = log((1/K) sum_k exp(-||e - mu_k||^2 / (2 sigma^2))) <= 0, over the last axis of ``out``."""
        if out.shape[-1] != self.dim:
            raise ValueError(f"mixture_density: D's output must end in md_dim={self.dim} units, got shape "
                             f"{tuple(out.shape)}.")
        e = out.float() if out.dtype in (torch.float16, torch.bfloat16) else out
        mu = self.means(e.device, e.dtype)
        return _log_f(e, mu, self.sigma) - self.log_peak

    def _fake_term(self, s: torch.Tensor) -> torch.Tensor:
        """-log(1 - exp(s)), with s clamped just below 0."""
        return -_log1mexp(s.clamp(max=-torch.finfo(s.dtype).eps))

    def d(self, real_out: torch.Tensor, fake_out: torch.Tensor) -> torch.Tensor:
        """-E log p(real) - E log(1 - p(fake))."""
        return -self.score(real_out).mean() + self._fake_term(self.score(fake_out)).mean()

    def g(self, fake_out: torch.Tensor) -> torch.Tensor:
        """Non-saturating: -E log p(fake)."""
        return -self.score(fake_out).mean()

    def __repr__(self) -> str:
        return (f"MixtureDensityLoss(dim={self.dim}, components={self.components}, sigma={self.sigma}, "
                f"distance={self.distance})")
