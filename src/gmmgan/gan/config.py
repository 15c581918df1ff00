"""The training configuration: a typed dataclass tree, loaded from YAML plus ``key=value`` overrides.

The defaults are the built-in quickstart: the 25-Gaussian grid with the fitted-GMM prior, on CPU in
about two minutes. Its optimiser settings suit a warm-started generator (a small G learning rate
against a fast D, for gentle adversarial fine-tuning); every other setting of the benchmarks in
docs/protocols.md (section 'Targets'), the Gaussian baseline included, is a YAML file in ``configs/``.

>>> cfg = load_config(None, ["prior.kind=gaussian", "schedule.total_kimg=10"])
>>> cfg.prior.kind, cfg.schedule.total_kimg
('gaussian', 10.0)

Unknown keys are a ``ValueError`` that lists the valid ones; values are checked against the field
types (``int``, ``float``, ``bool``, ``str``, optional values, pairs of floats) and coerced from the
strings of a command line (``"1e-3"`` -> 0.001, ``"true"`` -> True, ``"null"`` -> None).
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gmmgan._seeds import parse_seeds
from gmmgan.gan.config_loss import LOSS_KINDS, LossConfig, check_loss_with_packing
from gmmgan.gan.config_values import check_choice as _choice
from gmmgan.gan.config_values import check_positive as _positive
from gmmgan.gan.config_values import coerce as _coerce

__all__ = [
    "LOSS_KINDS",
    "PRIOR_KINDS",
    "DataConfig",
    "LossConfig",
    "NetsConfig",
    "OptimConfig",
    "PriorConfig",
    "ScheduleConfig",
    "TrainConfig",
    "apply_overrides",
    "config_from_dict",
    "config_to_dict",
    "parse_seeds",
    "load_config",
    "save_config",
    "valid_keys",
]

PRIOR_KINDS = ("gaussian", "fitted_gmm", "fixed_gmm", "learnable_gmm", "gmm_reg")
EMBEDDINGS = ("auto", "identity", "pca", "autoencoder", "manifold", "contrastive")
LEARNED_EMBEDDINGS = ("autoencoder", "manifold", "contrastive")  # trained by gmmgan, reusable (prior.embed_from)
_COVARIANCE_TYPES = ("full", "diag", "spherical", "tied")
LR_DECAYS = ("none", "linear", "cosine")


@dataclass
class DataConfig:
    """What to train on (see :func:`gmmgan.data.load_dataset`).

    name : ring, grid, mnist, fashion-mnist, mnist-limited, fashion-mnist-limited, stacked-mnist, folder.
    root : folder holding MNIST/raw and FashionMNIST/raw (or the image folder); None = the
        ``GMMGAN_DATA`` environment variable, else ``./data`` (:func:`gmmgan.data.root.resolve_data_root`).
        Not needed for ring/grid.
    n : number of points (ring/grid, default 100,000) or images (stacked-mnist, default 128,000;
        folder: the first n files in sorted order, default all).
    resolution : resize images to this size (None = native, 28 px; a folder needs it: each image is
        resized, shorter side = resolution, and center-cropped).
    per_class : images per class for the *-limited datasets (50 -> 500 images).
    download : fetch MNIST / Fashion-MNIST into ``root`` first if its files are missing
        (md5-verified, as ``gmmgan data download`` does). Off by default: nothing is downloaded
        unless asked for.
    channels : folder only: 1 (grey; colour images are converted), 3 (RGB; grey images are
        replicated) or None (as the images are: 1 if every image is grey, else 3).
    """

    name: str = "grid"
    root: str | None = None
    n: int | None = None
    resolution: int | None = None
    per_class: int = 50
    download: bool = False
    channels: int | None = None

    def __post_init__(self):
        _positive("data.n", self.n)
        _positive("data.resolution", self.resolution)
        _positive("data.per_class", self.per_class)
        if self.channels is not None:
            if self.channels not in (1, 3):
                raise ValueError(f"data.channels must be 1 (grey), 3 (RGB) or null (as the images are), "
                                 f"got {self.channels!r}.")
            if self.name != "folder":
                raise ValueError(f"data.channels applies to image folders (data.name=folder), not {self.name!r}; "
                                 "drop it (MNIST-like data have 1 channel, Stacked MNIST 3).")


@dataclass
class PriorConfig:
    """The latent prior (docs/protocols.md, section 'Latent priors').

    kind : gaussian (baseline), fitted_gmm (GMM fitted on real data in an embedding), fixed_gmm
        (static GM-GAN), learnable_gmm (DeLiGAN), gmm_reg (Gaussian z + GMM-likelihood regulariser).
    z_dim : latent size of gaussian, fixed_gmm, learnable_gmm and gmm_reg (fitted_gmm uses
        embed_dim + noise_dim, or the data dimension with the identity embedding).
    n_components : mixture components K; fitted_gmm and gmm_reg also take 'auto' (K chosen by BIC
        by :class:`gmmgan.GaussianMixture`).
    covariance_type : of the fitted GMM (fitted_gmm, gmm_reg).
    embed : auto (identity for 2-D points, PCA for images), identity, pca, autoencoder (trained on
        the images, no labels; its decoder is the warm-start target) or manifold (for clustering: the
        autoencoder's codes on a UMAP-style manifold of embed_manifold_dim dims, as N2D; not gmm_reg) or
        contrastive (the same manifold step on the codes of a SimCLR encoder: clusters best; not gmm_reg).
    embed_dim : PCA dimension, or the autoencoder's / contrastive code size; embed_epochs, embed_width: its
        training passes and first-layer channels.
    embed_manifold_dim : the manifold's (GMM's) dim. embed_from : reuse a run's learned embedding.
    embed_views : contrastive: the random views it learns to ignore, digits (rotations, slants, elastic
        wobble; no flips) or clothing (mirrored half the time, small rotations, no wobble, brighter or
        darker, a square cut out).
    whiten : PCA coordinates scaled to unit variance.
    noise_dim : extra N(0, I) coordinates appended to fitted-GMM samples.
    fit_samples : at most this many real samples are used to fit the embedding and the GMM.
    fit_max_iter, fit_n_init, reg_covar : EM settings of the fitted GMM.
    warm_start_steps : fitted_gmm only: steps regressing G onto the embedding's decoder before the
        adversarial phase (0 = off).
    warm_start_lr : Adam learning rate of the warm start.
    sigma : fixed_gmm: the fixed standard deviation of every component.
    mean_range : fixed_gmm / learnable_gmm: means start uniform in [-mean_range, mean_range].
    sigma_init : learnable_gmm: initial sigma.
    sigma_penalty : learnable_gmm: weight of mean((1 - sigma)^2), which keeps sigma from collapsing.
    reg_weight : gmm_reg: lambda in loss_G + lambda * (-log p_GMM(embed(G(z)))).
    consistency : fitted_gmm: weight of the component-consistency loss (0 = off): the cross-entropy
        between the component posterior of z's mixture part and that of embed(G(z)), so that
        component k keeps generating what the embedding calls k (docs/guide.md, 'Which embedding?').
    """

    kind: str = "fitted_gmm"
    z_dim: int = 2
    n_components: int | str = 25
    covariance_type: str = "full"
    embed: str = "auto"
    embed_dim: int = 32
    embed_epochs: int = 10
    embed_width: int = 32
    embed_manifold_dim: int = 10
    embed_from: str | None = None
    embed_views: str = "digits"
    whiten: bool = True
    noise_dim: int = 0
    fit_samples: int = 20_000
    fit_max_iter: int = 100
    fit_n_init: int = 1
    reg_covar: float = 1e-6
    warm_start_steps: int = 1500
    warm_start_lr: float = 2e-3
    sigma: float = 0.1
    mean_range: float = 1.0
    sigma_init: float = 0.2
    sigma_penalty: float = 0.1
    reg_weight: float = 1e-3
    consistency: float = 0.0

    def __post_init__(self):
        _choice("prior.kind", self.kind, PRIOR_KINDS)
        _choice("prior.covariance_type", self.covariance_type, _COVARIANCE_TYPES)
        _choice("prior.embed", self.embed, EMBEDDINGS)
        from gmmgan.gan.digit_views import VIEW_PRESETS  # here, not at the top: it imports torch

        _choice("prior.embed_views", self.embed_views, tuple(VIEW_PRESETS))
        if self.embed_from is not None and self.embed not in LEARNED_EMBEDDINGS:
            raise ValueError(f"prior.embed_from reuses a learned embedding ({', '.join(LEARNED_EMBEDDINGS)}), "
                             f"not prior.embed={self.embed}; drop prior.embed_from or set prior.embed.")
        if self.kind == "gmm_reg" and self.embed in ("manifold", "contrastive"):  # a neighbour average: no gradient
            raise ValueError(f"prior.embed={self.embed} has no gradient for the GMM-likelihood penalty (gmm_reg); "
                             "use embed=autoencoder or pca.")
        if self.n_components == "auto":
            if self.kind not in ("fitted_gmm", "gmm_reg"):
                raise ValueError(f"prior.n_components='auto' needs a fitted mixture (fitted_gmm or gmm_reg), "
                                 f"not prior.kind={self.kind}; give a number of components.")
        elif isinstance(self.n_components, str):
            raise ValueError(f"prior.n_components must be an integer or 'auto', got {self.n_components!r}.")
        else:
            _positive("prior.n_components", self.n_components)
        for name in ("z_dim", "embed_dim", "embed_epochs", "embed_width", "embed_manifold_dim", "fit_samples",
                     "fit_max_iter", "fit_n_init", "sigma", "mean_range", "sigma_init", "warm_start_lr"):
            _positive(f"prior.{name}", getattr(self, name))
        for name in ("noise_dim", "warm_start_steps", "sigma_penalty", "reg_weight", "reg_covar", "consistency"):
            _positive(f"prior.{name}", getattr(self, name), allow_zero=True)
        if self.consistency and self.kind != "fitted_gmm":
            raise ValueError(f"prior.consistency ties G's images to the fitted prior's components; prior.kind="
                             f"{self.kind} has none to tie to. Use prior.kind=fitted_gmm or set prior.consistency=0.")


@dataclass
class NetsConfig:
    """Generator and discriminator (see :mod:`gmmgan.nets`); sizes of data and z come from the data/prior.

    arch : auto (mlp for 2-D points, dcgan for images), mlp or dcgan.
    g_width, d_width : hidden units (MLP) or base channels (DCGAN); None = reference (MLP G 400,
        D 200; DCGAN 64).
    g_width_mult, d_width_mult : multipliers; d_width_mult=0.5 is "D at 1/4 the size of G" (DCGAN).
    g_layers, d_layers : MLP hidden layers.
    g_batch_norm : MLP G BatchNorm. d_batch_norm : DCGAN D BatchNorm.
    g_spectral_norm, d_spectral_norm : spectral normalisation.
    pack : PacGAN packing degree of D (batch size must be a multiple).
    """

    arch: str = "auto"
    g_width: int | None = 256
    g_width_mult: float = 1.0
    g_layers: int = 3
    g_batch_norm: bool = False
    g_spectral_norm: bool = False
    d_width: int | None = 128
    d_width_mult: float = 1.0
    d_layers: int = 3
    d_batch_norm: bool = True
    d_spectral_norm: bool = False
    pack: int = 1
    leaky_slope: float = 0.2

    def __post_init__(self):
        _choice("nets.arch", self.arch, ("auto", "mlp", "dcgan"))
        for name in ("g_width", "d_width", "g_width_mult", "d_width_mult", "g_layers", "d_layers", "pack"):
            _positive(f"nets.{name}", getattr(self, name))


@dataclass
class OptimConfig:
    """Adam for G and D. prior_lr : learning rate of a learnable prior (None = g_lr). eps : Adam's
    epsilon. The quickstart's 1e-2 (instead of the usual 1e-8) damps the full-size steps Adam takes
    on the tiny, noisy gradients of a D at chance, which otherwise blur a warm-started G; image
    configs use 1e-8. d_eps : D's epsilon, if not eps (a mixture-density D needs 1e-8, a warm-started G 1e-2)."""

    g_lr: float = 2e-5
    d_lr: float = 1e-3
    betas: tuple[float, float] = (0.5, 0.999)
    prior_lr: float | None = None
    eps: float = 1e-2
    d_eps: float | None = None

    def __post_init__(self):
        _positive("optim.g_lr", self.g_lr)
        _positive("optim.d_lr", self.d_lr)
        _positive("optim.prior_lr", self.prior_lr)
        _positive("optim.eps", self.eps)
        _positive("optim.d_eps", self.d_eps)
        if not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"optim.betas must both be in [0, 1), got {list(self.betas)}.")

    @property
    def d_adam_eps(self) -> float:
        """D's Adam epsilon: ``d_eps``, or ``eps`` when it is not set."""
        return self.eps if self.d_eps is None else self.d_eps


@dataclass
class ScheduleConfig:
    """Progress is counted in thousands of real images shown to D (kimg).

    total_kimg : length of the run. batch_size : images per step.
    snapshot_kimg : full checkpoint + generator snapshot every this many kimg (and at the end).
    sample_kimg : sample plot / image grid every this many kimg (0 = only at the end).
    log_kimg : JSONL log line every this many kimg.
    ema_kimg : half-life of the EMA of G, in kimg (0 = no averaging: the EMA is a copy of G).
    keep_snapshots : 0 keeps only the latest generator snapshot (``generator.safetensors``); N > 0
        also keeps a copy of it for each of the last N snapshot times,
        ``snapshots/generator-000001.500kimg.safetensors`` (older copies are deleted), for
        ``gmmgan sample`` / ``gmmgan eval`` on an earlier point of the run. No metric is computed
        during training (modes / HQ / KL only at the end), so there is no "best" snapshot.
    lr_decay : none (constant learning rates), linear or cosine: from ``lr_decay_start_kimg`` to
        ``total_kimg`` the learning rates of G, D and a learnable prior fall from their ``optim``
        values to ``lr_decay_final`` times them (:func:`gmmgan.gan.train_step.lr_scale`), holding G steady once the
        adversarial phase has little left to fix. The rate of each step is computed from the image
        count, so a resumed run has the rate of an uninterrupted one (a resume that changes
        ``total_kimg`` stretches the decay from that step on).
    lr_decay_start_kimg : where the decay starts (below ``total_kimg``; 0 = from the start).
    lr_decay_final : the learning rates at ``total_kimg``, as a fraction of the ``optim`` ones, in [0, 1].
    """

    total_kimg: float = 100.0
    batch_size: int = 256
    snapshot_kimg: float = 50.0
    sample_kimg: float = 25.0
    log_kimg: float = 5.0
    ema_kimg: float = 20.0
    keep_snapshots: int = 0
    lr_decay: str = "none"
    lr_decay_start_kimg: float = 0.0
    lr_decay_final: float = 0.0

    def __post_init__(self):
        _positive("schedule.total_kimg", self.total_kimg)
        _positive("schedule.batch_size", self.batch_size)
        _positive("schedule.snapshot_kimg", self.snapshot_kimg)
        _positive("schedule.sample_kimg", self.sample_kimg, allow_zero=True)
        _positive("schedule.log_kimg", self.log_kimg)
        _positive("schedule.ema_kimg", self.ema_kimg, allow_zero=True)
        _positive("schedule.keep_snapshots", self.keep_snapshots, allow_zero=True)
        _choice("schedule.lr_decay", self.lr_decay, LR_DECAYS)
        _positive("schedule.lr_decay_start_kimg", self.lr_decay_start_kimg, allow_zero=True)
        if not 0 <= self.lr_decay_final <= 1:
            raise ValueError(f"schedule.lr_decay_final is the final learning rate as a fraction of optim.g_lr / "
                             f"optim.d_lr and must be in [0, 1], got {self.lr_decay_final!r} (e.g. 0.1).")
        if self.lr_decay != "none" and self.lr_decay_start_kimg >= self.total_kimg:
            raise ValueError(f"schedule.lr_decay_start_kimg={self.lr_decay_start_kimg:g} must be below "
                             f"schedule.total_kimg={self.total_kimg:g} (the decay runs from there to the end); "
                             "lower it, or set schedule.lr_decay=none.")


SWEEP_MODES = ("auto", "stacked", "streams", "sequential")  # TrainConfig.sweep_mode; gmmgan.gan.sweep.sweep_mode picks one


@dataclass
class TrainConfig:
    """The whole run. seed : seeds data, nets, z and batches. seeds : a seed sweep instead of one run: the
    list of seeds trained together in one process, one run folder each (``gmmgan train --seeds 0-9``;
    ranges and comma lists are accepted as text). device : auto, cpu, cuda, cuda:N.
    bf16 : bfloat16 autocast for the nets (CUDA only; ignored on CPU). cuda_graphs : replay each training
    step as one CUDA graph (CUDA only; small nets are launch-bound, so this is several times faster).
    channels_last : keep the image nets' convolution weights and activations in NHWC on CUDA, the layout
    cuDNN's bf16 kernels work in, so no step spends kernels converting layouts (CUDA only; same arithmetic).
    sweep_mode : how a sweep's seeds are stepped: auto, stacked (the seeds' nets as one model: DCGAN as one
    grouped-convolution net, others under vmap), streams (each seed's own step, all replayed as one CUDA
    graph with a branch per seed; one GPU, no torchrun) or sequential (each seed's own step in turn);
    auto takes streams where it can run, sequential for DCGAN on the CPU, stacked elsewhere. out : parent folder of run
    folders. eval_samples : samples for the 2-D metrics at the end (the protocol uses 2,500)."""

    data: DataConfig = field(default_factory=DataConfig)
    prior: PriorConfig = field(default_factory=PriorConfig)
    nets: NetsConfig = field(default_factory=NetsConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    seed: int = 0
    seeds: list[int] | None = None
    device: str = "auto"
    bf16: bool = True
    cuda_graphs: bool = True
    channels_last: bool = True
    sweep_mode: str = "auto"
    out: str = "runs"
    eval_samples: int = 2500
    cpu_threads: int = 1

    def __post_init__(self):
        _positive("seed", self.seed, allow_zero=True)
        if self.seeds is not None:
            self.seeds = parse_seeds(self.seeds)
        _positive("cpu_threads", self.cpu_threads, allow_zero=True)
        if self.sweep_mode not in SWEEP_MODES:
            raise ValueError(f"sweep_mode must be {', '.join(SWEEP_MODES[:-1])} or {SWEEP_MODES[-1]}, "
                             f"got {self.sweep_mode!r}.")
        _positive("eval_samples", self.eval_samples)
        if not (self.device in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", self.device)):
            raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}.")
        check_loss_with_packing(self.loss, self.nets.pack)
        if self.loss.diffaugment:
            from gmmgan.gan.diffaugment import check_data

            check_data(self.loss.diffaugment, self.data.name)


# ------------------------------------------------------------------------ typed (de)serialisation
def _hints(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def valid_keys(cls=TrainConfig, prefix: str = "") -> list[str]:
    """Every dotted key of the config tree, e.g. ``['data.name', ..., 'seed']``."""
    keys = []
    for f in dataclasses.fields(cls):
        t = _hints(cls)[f.name]
        if dataclasses.is_dataclass(t):
            keys += valid_keys(t, f"{prefix}{f.name}.")
        else:
            keys.append(prefix + f.name)
    return keys


def _unknown(key: str, cls) -> ValueError:
    keys = valid_keys(cls)
    # A near spelling, or the right name in the wrong (or no) section, comes before the long list.
    close = difflib.get_close_matches(key, keys, n=1, cutoff=0.6)
    leaf = key.rsplit(".", 1)[-1]
    close += [k for k in keys if k.rsplit(".", 1)[-1] == leaf and k not in close]
    hint = f" (did you mean {' or '.join(close[:3])}?)" if close else ""
    return ValueError(f"unknown config key {key!r}{hint}; valid keys: {', '.join(keys)}.")


def config_from_dict(d: dict | None, cls=TrainConfig, prefix: str = ""):
    """Build ``cls`` from a nested dict (e.g. parsed YAML); missing keys keep their defaults."""
    d = {} if d is None else d
    if not isinstance(d, dict):
        raise ValueError(f"config section {prefix.rstrip('.') or '(top)'} must be a mapping, got {d!r}.")  # noqa: TRY004
    hints, names = _hints(cls), {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for k, v in d.items():
        if k not in names:
            raise _unknown(prefix + str(k), TrainConfig)
        t = hints[k]
        kwargs[k] = config_from_dict(v, t, f"{prefix}{k}.") if dataclasses.is_dataclass(t) else _coerce(v, t, prefix + k)
    return cls(**kwargs)


def config_to_dict(cfg) -> dict:
    """Plain nested dict (lists for tuples), suitable for YAML and JSON."""
    out = {}
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        out[f.name] = config_to_dict(v) if dataclasses.is_dataclass(v) else (list(v) if isinstance(v, tuple) else v)
    return out


def _parse_override(text: str) -> tuple[str, Any]:
    import yaml

    if "=" not in text:
        raise ValueError(f"override {text!r} is not key=value (e.g. prior.kind=gaussian).")
    key, raw = text.split("=", 1)
    key = key.strip()
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key, value


def apply_overrides(cfg: TrainConfig, overrides: list[str] | tuple[str, ...]) -> TrainConfig:
    """A new config with ``key=value`` overrides applied (dotted keys, e.g. ``prior.kind=fitted_gmm``)."""
    d = config_to_dict(cfg)
    valid = set(valid_keys())
    for text in overrides:
        key, value = _parse_override(text)
        if key not in valid:
            raise _unknown(key, TrainConfig)
        *path, leaf = key.split(".")
        node = d
        for p in path:
            node = node[p]
        node[leaf] = value
    return config_from_dict(d)


def load_config(path: str | Path | None = None, overrides=()) -> TrainConfig:
    """The quickstart defaults, updated from the YAML file ``path`` (if given), then ``overrides``."""
    import yaml

    cfg = TrainConfig()
    if path is not None:
        path = Path(path)
        if path.is_dir():
            raise IsADirectoryError(f"config file '{path}' is a folder; give a YAML file such as configs/grid_gaussian.yaml.")
        if not path.is_file():
            raise FileNotFoundError(f"config file '{path}' does not exist; check the path (the shipped configs are in configs/).")
        try:
            d = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            raise ValueError(f"config file '{path}' is not valid YAML: {e}") from None
        except UnicodeDecodeError:
            raise ValueError(f"config file '{path}' is not a text file; give a YAML config such as "
                             "configs/grid_gaussian.yaml (or a run's config.yaml).") from None
        try:
            cfg = config_from_dict(d)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None
    return apply_overrides(cfg, list(overrides))


def save_config(cfg: TrainConfig, path: str | Path) -> None:
    """Write the resolved config as YAML (atomically: a full disk leaves the previous file as it was)."""
    import yaml

    from gmmgan._files import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
