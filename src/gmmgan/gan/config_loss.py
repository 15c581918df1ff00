"""The ``loss`` section of the training config (:class:`LossConfig`), re-exported by :mod:`gmmgan.gan.config`.

A module of its own so that config.py stays short; ``from gmmgan.gan.config import LossConfig`` is
the way to import it.
"""

from __future__ import annotations

from dataclasses import dataclass

from gmmgan.gan.config_values import check_choice, check_positive

__all__ = ["EM_DENSITY_COVARIANCES", "LOSS_KINDS", "LossConfig", "check_em_density", "check_loss_with_packing"]

LOSS_KINDS = ("ns", "nonsaturating", "hinge", "wgan", "rpgan", "mixture_density", "em_density")
EM_DENSITY_COVARIANCES = ("full", "diag", "spherical", "tied")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_em_density(dim, components, refresh_kimg, fit_samples, covariance, reg_covar) -> None:
    """ValueError with a helpful message unless the ``loss.md_*`` values describe a valid em_density head."""
    if not _is_int(dim) or dim < 1:
        raise ValueError(f"loss.md_dim (the size of D's embedding) must be an integer >= 1, got {dim!r}.")
    if components is not None and (not _is_int(components) or components < 1):
        raise ValueError(f"loss.md_components must be an integer >= 1 (or null for md_dim + 1), got {components!r}.")
    k = dim + 1 if components is None else components
    if not refresh_kimg > 0:
        raise ValueError(f"loss.md_refresh_kimg (how often the mixture is fitted again) must be > 0, got "
                         f"{refresh_kimg!r} (e.g. 10).")
    check_choice("loss.md_covariance", covariance, EM_DENSITY_COVARIANCES)
    if not reg_covar > 0:
        raise ValueError(f"loss.md_reg_covar (the floor of the mixture's variances, in embedding units) must be > 0, "
                         f"got {reg_covar!r} (e.g. 1).")
    if not _is_int(fit_samples) or fit_samples < 2 * k:
        raise ValueError(f"loss.md_fit_samples={fit_samples!r} is too few real samples to fit {k} components "
                         f"(at least 2 * md_components = {2 * k}); raise it (default 4096) or lower loss.md_components.")


def check_loss_with_packing(loss: LossConfig, pack: int) -> None:
    """em_density with PacGAN packing: the fit sees one embedding per pack, so it needs 2 K packs."""
    if loss.kind != "em_density" or pack <= 1:
        return
    k = loss.md_dim + 1 if loss.md_components is None else loss.md_components
    if loss.md_fit_samples // pack < 2 * k:
        raise ValueError(f"loss.md_fit_samples={loss.md_fit_samples} gives {loss.md_fit_samples // pack} packs of "
                         f"nets.pack={pack}, too few embeddings to fit {k} components (at least {2 * k}); raise "
                         f"loss.md_fit_samples to >= {2 * k * pack}.")


@dataclass
class LossConfig:
    """kind : ns (non-saturating), hinge, wgan, rpgan (relativistic pairing, :mod:`gmmgan.gan.losses`),
    mixture_density or em_density. r1_gamma : R1 weight (gamma/2 * E|grad D(real)|^2). r2_gamma : R2
    weight (gamma/2 * E|grad D(fake)|^2, at the generated samples D is trained on; R3GAN pairs it with
    R1 and rpgan). gp_weight : WGAN-GP weight. reg_interval : lazy regularization (StyleGAN2's): R1 and
    R2 only every reg_interval-th step, weighted by reg_interval so their mean weight is the same (1 =
    every step; StyleGAN2 uses 16). R1 and R2 cost a second backward pass through D, so a step with
    them costs about 1.6x one without (Stacked MNIST, rpgan + R1 + R2); WGAN-GP stays at every step.

    diffaugment : DiffAugment for images (Zhao et al. 2020, :mod:`gmmgan.gan.diffaugment`): a comma list of
        ``color``, ``translation``, ``cutout`` ('' = off; not for 2-D points). Every batch D sees, real
        or fake, in the D and in the G step, is augmented with fresh random draws per sample; R1 (and
        WGAN-GP) is taken on the augmented reals D sees. The draws come from torch's global RNG (seeded
        by the run, recorded in its checkpoint; a CUDA graph draws new ones at each replay): a run is
        reproducible for its seed on the CPU, but the seeds of a stacked sweep share one stream, so with
        DiffAugment on a sweep's seed does not train exactly as its single run (nor does a multi-process
        run as a single-process one: every rank draws the same numbers for its own rows).
    kind=mixture_density (Mixture Density GAN, :mod:`gmmgan.gan.mixture_density`): D outputs an embedding
        of md_dim units; p(real) = mean_k exp(-|e - mu_k|^2 / 2 md_sigma^2) over md_components (null =
        md_dim + 1) vertices mu_k of a regular simplex with edges md_distance (keep it > md_sigma *
        sqrt(2 * md_components), see the module); BCE on p, R1/GP on log p. Use optim.eps=1e-8 with it.
    md_learnable : kind=mixture_density only (default false: the fixed simplex above). True: the means
        (starting at the simplex's vertices) and the shared log-sigma (starting at log md_sigma) are
        parameters of D, trained by D's Adam at optim.d_lr (a :class:`~gmmgan.gan.mixture_density.SimplexMixtureHead`
        after D's embedding net; seed sweeps, torchrun and checkpoints treat them as D's other
        weights). max f is then searched afresh in every forward (a fixed number of mean-shift steps
        from the current means), p is clamped at 1, and sigma has a smooth floor at md_sigma / 10.
    kind=em_density (:mod:`gmmgan.gan.density_head`): D embeds each sample (pack) in md_dim units and
        scores it by the log-density of a Gaussian mixture of md_components (null = md_dim + 1)
        components with md_covariance covariances, fitted by EM on D's embeddings of md_fit_samples
        real samples before the first step and again every md_refresh_kimg kimg, minus the fit
        samples' mean log-density (reals score ~0 just after a fit). That score is the logit of the
        non-saturating loss (R1/GP act on it). md_sigma and md_distance do not apply.
    """

    kind: str = "ns"
    r1_gamma: float = 0.1
    r2_gamma: float = 0.0
    reg_interval: int = 1
    gp_weight: float = 0.0
    diffaugment: str = ""
    md_dim: int = 9
    md_components: int | None = None
    md_sigma: float = 1.0
    md_distance: float = 5.0
    md_refresh_kimg: float = 10.0
    md_fit_samples: int = 4096
    md_covariance: str = "full"
    md_reg_covar: float = 1.0
    md_learnable: bool = False

    def __post_init__(self):
        check_choice("loss.kind", self.kind, LOSS_KINDS)
        if not isinstance(self.md_learnable, bool):  # a YAML/command-line value is coerced before it gets here
            raise ValueError(  # noqa: TRY004 - a config value: reported as the config's other errors are
                f"loss.md_learnable must be true or false, got {self.md_learnable!r}.")
        if self.md_learnable and self.kind != "mixture_density":
            raise ValueError(f"loss.md_learnable=true makes the mixture of loss.kind=mixture_density learnable; "
                             f"loss.kind={self.kind} has no such mixture (drop md_learnable or set the kind).")
        if self.kind == "mixture_density":  # only then: the module imports torch, which a bare config does not need
            from gmmgan.gan.mixture_density import check_mixture_density

            check_mixture_density(self.md_dim, self.md_components, self.md_sigma, self.md_distance, min_dim=2)
        if self.kind == "em_density":
            check_em_density(self.md_dim, self.md_components, self.md_refresh_kimg, self.md_fit_samples,
                             self.md_covariance, self.md_reg_covar)
        check_positive("loss.r1_gamma", self.r1_gamma, allow_zero=True)
        check_positive("loss.r2_gamma", self.r2_gamma, allow_zero=True)
        check_positive("loss.gp_weight", self.gp_weight, allow_zero=True)
        if self.reg_interval < 1:
            raise ValueError(f"loss.reg_interval is how often R1/R2 are taken (every n-th step) and must be an "
                             f"integer >= 1, got {self.reg_interval!r} (1 = every step; StyleGAN2 uses 16).")
        if self.diffaugment:  # only then: the parser's module imports torch, which a bare config does not need
            from gmmgan.gan.diffaugment import parse_policy

            parse_policy(self.diffaugment)
