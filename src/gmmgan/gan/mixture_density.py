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

A learnable mixture (``loss.md_learnable``, :class:`SimplexMixtureHead`): the means (starting at the
simplex's vertices) and the shared log-sigma are parameters of D, in a head after D's embedding net
(:class:`gmmgan.gan.density_head.HeadedDiscriminator`), so D's Adam trains them and everything that
handles D's parameters (seed sweeps, torchrun, checkpoints, the captured CUDA-graph step) handles
them. The head outputs the score s = log p itself, so max f is found in every forward, from the
current means, by a fixed number (``PEAK_STEPS``) of mean-shift steps from the K means and the
centroids of the first j means (j = 2..K): the same work at every step, no data-dependent control
flow. The loss on those scores (:func:`score_d_loss`, :func:`score_g_loss`) is the one above, with s
also clamped at 0 on the real side and in G's loss: a peak found a little low (p > 1 where the search
missed the top) then earns D and G nothing.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["MixtureDensityLoss", "SimplexMixtureHead", "simplex_vertices", "check_mixture_density", "score_d_loss",
           "score_g_loss"]

# Mean-shift steps of the learnable head's peak search. Over 200 random perturbations of the simplex
# (K = 2..10 in R^9, sigma 0.3..2, edges 0.5..6) 30 steps came within 5e-6 of the best log f found from
# 3000 random starts in 500 steps (20 steps: 4e-5; the K means alone as starts, without the centroids,
# missed a central mode by up to 0.02).
PEAK_STEPS = 30
# The learnable sigma stays above SIGMA_FLOOR * md_sigma (see SimplexMixtureHead.log_sigma).
SIGMA_FLOOR = 0.1


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


def _fake_term(s: torch.Tensor) -> torch.Tensor:
    """-log(1 - exp(s)), with s clamped just below 0 (K = 1: a real at the vertex has s = 0)."""
    return -_log1mexp(s.clamp(max=-torch.finfo(s.dtype).eps))


def _log_f(e: torch.Tensor, mu: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
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
    paired = False  # GANLoss's interface: the G loss takes the fakes' outputs alone

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

    def d(self, real_out: torch.Tensor, fake_out: torch.Tensor) -> torch.Tensor:
        """-E log p(real) - E log(1 - p(fake))."""
        return -self.score(real_out).mean() + _fake_term(self.score(fake_out)).mean()

    def g(self, fake_out: torch.Tensor) -> torch.Tensor:
        """Non-saturating: -E log p(fake)."""
        return -self.score(fake_out).mean()

    def __repr__(self) -> str:
        return (f"MixtureDensityLoss(dim={self.dim}, components={self.components}, sigma={self.sigma}, "
                f"distance={self.distance})")


# ----------------------------------------------------------------------------------- the learnable mixture
def _softplus_inverse(y: float) -> float:
    """x with log(1 + e^x) = y > 0."""
    return y + math.log(-math.expm1(-y))


class SimplexMixtureHead(nn.Module):
    """The learnable mixture of ``loss.md_learnable``: s = log f(e) - log max f <= 0 (about), as parameters of D.

    Parameters
    ----------
    dim : int
        Size d of the embedding (``loss.md_dim``).
    components : int or None
        K (``loss.md_components``; None: dim + 1).
    sigma, distance : float
        The kernels' starting width and the starting simplex's edge length (``md_sigma``, ``md_distance``).

    Parameters (nn)
    ---------------
    means : (K, d)
        Start at :func:`simplex_vertices`; free to move (and to merge: the normalisation by the peak keeps
        p <= 1 whatever they do, and merged kernels are just fewer modes).
    raw_log_sigma : ()
        The shared width before its floor, see :meth:`log_sigma`.
    """

    def __init__(self, dim: int, components: int | None = None, sigma: float = 1.0, distance: float = 5.0):
        super().__init__()
        k = dim + 1 if components is None else components
        check_mixture_density(dim, k, sigma, distance)
        self.dim, self.components = int(dim), int(k)
        self.log_sigma_min = math.log(SIGMA_FLOOR * sigma)
        dtype = torch.get_default_dtype()
        self.means = nn.Parameter(simplex_vertices(k, dim, distance, dtype=dtype))
        raw = self.log_sigma_min + _softplus_inverse(math.log(sigma) - self.log_sigma_min)  # log_sigma() = log(sigma)
        self.raw_log_sigma = nn.Parameter(torch.tensor(raw, dtype=dtype))

    def log_sigma(self) -> torch.Tensor:
        """log sigma = log(SIGMA_FLOOR * md_sigma) + softplus(raw - that): a smooth floor, log(md_sigma) at the start.

        Why a floor: as sigma -> 0 the score's slope (e - mu_k) / sigma^2 grows without bound and the
        kernels stop overlapping (exp(-d^2 / 2 sigma^2) between vertices), so G's gradient vanishes
        between the kernels and explodes far from them, and the losses overflow: a D so sure of itself
        that it teaches G nothing (em_density without md_reg_covar fails this way within a few steps).
        Why smooth: a hard clamp has no gradient below the floor, so a sigma pushed there would stay
        there for good; here it can always come back. (The loss is invariant under scaling the
        embeddings, the means and sigma together, so the floor bounds the kernels' sharpness relative
        to the scale of D's embedding net, which R1 or spectral norm keep in check.)
        """
        m = self.log_sigma_min
        return m + nn.functional.softplus(self.raw_log_sigma - m)

    def log_peak(self) -> torch.Tensor:
        """log max_e f(e) for the current means and sigma, differentiable in both.

        The argmax e* is found by PEAK_STEPS mean-shift steps on *detached* means and sigma, then
        log f(e*) is evaluated with gradients: by the envelope theorem d(max_e log f)/d(mu, sigma) is
        the partial derivative at the fixed maximiser, so this is the exact gradient of the peak
        (up to how close e* is) without back-propagating through the search. The peak itself must
        not be detached: D would then gain by piling kernels onto the reals (f adds up where kernels
        overlap, and a detached peak does not count that the maximum grows with it; only the next
        step's peak undoes it). Trained alone on one blob of reals, 5 kernels ended within 0.003 of
        each other that way, and 3.0 apart with the peak's gradient
        (``tests/test_mixture_density_learnable.py``).
        """
        mu, sigma = self.means, self.log_sigma().exp()
        mu0, sigma0 = mu.detach(), sigma.detach()
        k = self.components
        centroids = torch.cumsum(mu0, 0) / torch.arange(1, k + 1, dtype=mu0.dtype, device=mu0.device).unsqueeze(1)
        e = torch.cat([mu0, centroids[1:]])  # the K means and the centroids of the first 2..K of them
        for _ in range(PEAK_STEPS):
            w = torch.softmax((e.unsqueeze(1) - mu0).square().sum(-1) * (-0.5 / sigma0 ** 2), 1)
            e = w @ mu0
        # amax, not max: at the symmetric start K maxima tie, and amax shares the gradient among them.
        return _log_f(e, mu, sigma).amax()

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        """Scores s = log p(real) (...,) of embeddings ``e`` (..., d), in the parameters' dtype."""
        if e.shape[-1] != self.dim:
            raise ValueError(f"mixture_density: D's output must end in md_dim={self.dim} units, got shape "
                             f"{tuple(e.shape)}.")
        with torch.autocast(device_type=e.device.type, enabled=False):  # distances and logsumexp in float32
            e = e.to(self.means.dtype)
            return _log_f(e, self.means, self.log_sigma().exp()) - self.log_peak()

    def extra_repr(self) -> str:
        return f"dim={self.dim}, components={self.components}, sigma_floor={math.exp(self.log_sigma_min):g}"


def _check_scores(*scores: torch.Tensor) -> None:
    for s in scores:
        if s.ndim != 1:
            raise ValueError(f"mixture_density scores must have shape (N,), got {tuple(s.shape)}: with "
                             "loss.md_learnable D's head outputs one score per sample (pack).")


def score_d_loss(real_s: torch.Tensor, fake_s: torch.Tensor) -> torch.Tensor:
    """-E log p(real) - E log(1 - p(fake)) from scores s = log p (the head's output), s <= 0 on the real side.

    The clamp at 0: the head's peak is a fixed-step search, so p may exceed 1 by a hair; a real above
    the found peak is then as good as one on it, and nothing rewards D for hunting such spots.
    """
    _check_scores(real_s, fake_s)
    return -real_s.clamp(max=0.0).mean() + _fake_term(fake_s).mean()


def score_g_loss(fake_s: torch.Tensor) -> torch.Tensor:
    """Non-saturating -E log p(fake) from scores, s clamped at 0 (as in :func:`score_d_loss`)."""
    _check_scores(fake_s)
    return -fake_s.clamp(max=0.0).mean()
