"""One seed's training state and its set-up: what a single run is, and what a seed sweep holds N of.

:func:`build_seed_run` loads the data and makes the prior, the nets, their optimizers and the random
streams, in the same order and from the same seed as a single run; :func:`start_seed_run` then either
loads the run's checkpoint (``--resume``) or fits the prior, warm-starts G and writes the first
checkpoint. :class:`SeedRun` writes the full training state and the generator snapshot of its own
run folder. The loop that trains one or many of them is :func:`gmmgan.gan.training_loop.train`.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import time
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from gmmgan import distributed
from gmmgan.data import TensorData, load_dataset, toy_spec
from gmmgan.data.root import resolve_data_root
from gmmgan.gan import checkpoint, embedding_file
from gmmgan.gan.config import TrainConfig
from gmmgan.gan.networks import build_networks
from gmmgan.gan.priors import Prior, build_prior, trained_parameters
from gmmgan.gan.progress import PhaseProgress
from gmmgan.gan.run_folder import TrainingLog, keep_snapshot, record_config
from gmmgan.gan.sampling import generate
from gmmgan.gan.session import removed_if_unfinished
from gmmgan.gan.train_step import adam

__all__ = ["SeedRun", "base_lrs", "build_seed_run", "data_root", "load_training_data", "start_seed_run"]


def data_root(cfg: TrainConfig) -> str | None:
    """The folder image data are read from (:func:`gmmgan.data.root.resolve_data_root`; None for ring/grid)."""
    if toy_spec(cfg.data.name) is not None:
        return None
    return str(resolve_data_root(cfg.data.root))


# The data sets that data.download can fetch, and the files each needs.
_DOWNLOADABLE = {"mnist": "mnist", "mnist-limited": "mnist", "stacked-mnist": "mnist",
                 "fashion-mnist": "fashion-mnist", "fashion-mnist-limited": "fashion-mnist"}


def load_training_data(cfg: TrainConfig, device: torch.device, progress=None) -> TensorData:
    """The training set of ``cfg.data``, on ``device`` (images in [-1, 1], points as they are).

    ``progress(done, total)`` is called while an image folder is read.
    """
    d = cfg.data
    source = _DOWNLOADABLE.get(d.name)
    if d.download and source is not None:
        from gmmgan.data.download import download_dataset

        # Rank 0 alone writes; the others wait for its files (or learn that it failed).
        distributed.main_only(partial(download_dataset, source, data_root(cfg)), f"downloading {source}")
    # In torch's default dtype (float32), as the nets: a test may run a whole training in float64.
    return load_dataset(d.name, data_root(cfg), "train", d.resolution, n=d.n, seed=cfg.seed, per_class=d.per_class,
                        channels=d.channels, device=device, progress=progress, dtype=torch.get_default_dtype())


@dataclasses.dataclass(eq=False)
class SeedRun:
    """Everything one seed's training holds: config, data, prior, nets, optimizers, random streams, folder."""

    cfg: TrainConfig
    data: TensorData
    prior: Prior
    G: nn.Module
    D: nn.Module
    G_ema: nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    batcher: object
    zgen: torch.Generator
    device: torch.device
    graph: bool  # whether its step may be replayed as a CUDA graph
    ckpt: dict | None = None  # the checkpoint it resumes from (None: a new run)
    run_dir: Path | None = None
    created: bool = False  # whether this training made run_dir (then it is removed if no checkpoint lands)
    cur_nimg: int = 0
    step: int = 0
    last_good: int = 0  # where its checkpoint on disk is (once one is)
    rng: tuple | None = None  # the global RNG states its checkpoint records (set once its nets are made)
    log: TrainingLog | None = None
    metrics: dict | None = None

    @property
    def seed(self) -> int:
        return self.cfg.seed

    def write_state(self) -> None:
        """Rank 0: the full training state, then the snapshot of the nets that are sampled."""
        # A sweep made other seeds' nets since: record this seed's RNG as a single run would. Not with
        # DiffAugment, whose draws come from the global RNG: the checkpoint records it as it is now, so
        # saving does not rewind the augmentation stream and a resumed run draws on where it stopped.
        if self.rng is not None and not self.cfg.loss.diffaugment:
            torch.set_rng_state(self.rng[0])
            if self.device.type == "cuda":
                torch.cuda.set_rng_state_all(self.rng[1])
        checkpoint.save_checkpoint(self.run_dir / checkpoint.CHECKPOINT_NAME, checkpoint.training_state(
            self.G, self.D, self.G_ema, self.prior, self.opt_g, self.opt_d, self.batcher, self.zgen, self.device,
            cur_nimg=self.cur_nimg, step=self.step, cfg=self.cfg))
        self.last_good = self.cur_nimg  # on disk now, whatever happens to the snapshot
        checkpoint.save_generator(self.run_dir / checkpoint.SNAPSHOT_NAME, self.G_ema, self.prior, cfg=self.cfg,
                                  data_shape=self.data.shape, cur_nimg=self.cur_nimg, step=self.step)
        keep_snapshot(self.run_dir, self.cur_nimg / 1000, self.cfg.schedule.keep_snapshots)

    def save(self) -> None:
        """Average the nets' buffers over ranks (a collective: every rank at the same step); rank 0 writes."""
        for module in (self.G, self.D, self.G_ema):
            distributed.average_buffers_(module)
        distributed.main_only(self.write_state, "writing the checkpoint")
        self.last_good = self.cur_nimg


def build_seed_run(cfg: TrainConfig, device: torch.device, *, ckpt: dict | None = None, phase=None,
                   data: TensorData | None = None) -> SeedRun:
    """Data, prior, G, D, G_ema, Adam for each, the batcher and the z generator of ``cfg.seed``.

    The global RNG is used only from the data to the optimizers, to initialise the nets, seeded with
    ``cfg.seed``: so seed s of a sweep starts from the very nets of a single run with seed s.
    ``data``: the training set, when an earlier seed of a sweep loaded the same one.
    """
    torch.manual_seed(cfg.seed)
    if data is None:
        shown = phase if cfg.data.name == "folder" else partial(phase, enabled=False)  # a bar only where it is slow
        with shown("loading images", unit="images") as bar:
            data = load_training_data(cfg, device, progress=bar.count)
    if cfg.loss.diffaugment and len(data.shape) != 3:  # the config refuses the 2-D sets by name; any other non-image
        raise ValueError(f"loss.diffaugment={cfg.loss.diffaugment!r} augments images, but {cfg.data.name} has samples "
                         f"of shape {tuple(data.shape)}; DiffAugment is for images: drop it (loss.diffaugment='').")
    prior = build_prior(cfg.prior, data.shape, cfg.seed).to(device)
    if cfg.prior.embed_from is not None and ckpt is None:  # a resumed run has it in its checkpoint
        source = embedding_file.load_embedding(cfg.prior.embed_from, prior.embedding,
                                               embedding_file.data_identity(cfg.data, data.shape))
        cfg = dataclasses.replace(cfg, prior=dataclasses.replace(cfg.prior, embed_from=str(source)))
    G, D = build_networks(cfg, data.shape, prior.z_dim)
    # NHWC only where cuDNN runs the convolutions: on the CPU NCHW is as fast, and sweeps compare
    # seeds against single runs there to 1e-4.
    layout = torch.channels_last if cfg.channels_last and device.type == "cuda" and len(data.shape) == 3 else None
    G, D = G.to(device, memory_format=layout), D.to(device, memory_format=layout)
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    # A CUDA graph replays fixed kernels: latents that carry gradients (learnable prior) rule it out.
    graph = cfg.cuda_graphs and device.type == "cuda" and not trained_parameters(prior)
    opt_g, opt_d = _optimizers(cfg, G, D, prior, device, graph)
    # Every rank draws the same global batch and z, then keeps its rows: the stream of batches does
    # not depend on the number of processes, and a run resumes at any world size.
    batcher = data.batcher(cfg.schedule.batch_size, generator=torch.Generator().manual_seed(cfg.seed))
    zgen = torch.Generator(device=device).manual_seed(cfg.seed + 1)
    return SeedRun(cfg, data, prior, G, D, G_ema, opt_g, opt_d, batcher, zgen, device, graph, ckpt=ckpt)


def start_seed_run(run: SeedRun, autocast, say, phase, *, main: bool, world: int = 1) -> None:
    """Resume ``run`` from its checkpoint, or start it: fit the prior, warm-start G, write a first checkpoint.

    A new run's folder is removed again if this fails before its first checkpoint exists.
    """
    cfg, run_dir = run.cfg, run.run_dir
    run.last_good = int(run.ckpt["cur_nimg"]) if run.ckpt is not None else 0
    with removed_if_unfinished(run_dir, main and run.created, run.last_good):
        if run.ckpt is not None:
            checkpoint.load_training_state(run.ckpt, run_dir, run.G, run.D, run.G_ema, run.prior, run.opt_g,
                                           run.opt_d, run.batcher, run.zgen, run.device)
            run.cur_nimg, run.step = int(run.ckpt["cur_nimg"]), int(run.ckpt["step"])  # the log is trimmed back to here
            run.ckpt = None  # its tensors are in the nets now
            distributed.main_only(partial(record_config, run_dir, cfg, run.cur_nimg / 1000), "writing the config")
            say(f"resumed {run_dir} at {run.cur_nimg / 1000:.3f} kimg (step {run.step})")
        else:
            distributed.main_only(partial(record_config, run_dir, cfg), "writing the config")
            say(f"run folder: {run_dir}" + (f" ({world} processes)" if world > 1 else ""))
            if cfg.prior.embed_from is not None:
                say(f"embedding: reusing {cfg.prior.embed_from} (not trained again)")
            _fit_prior(run.prior, run.data, say, phase)
            embedding = getattr(run.prior, "embedding", None)
            if embedding is not None and embedding.learned:  # kept for prior.embed_from of later runs
                distributed.main_only(partial(embedding_file.save_embedding, run_dir / embedding_file.EMBEDDING_NAME,
                                              embedding, embedding_file.data_identity(cfg.data, run.data.shape),
                                              trained_by=str(cfg.prior.embed_from or run_dir), seed=cfg.seed),
                                      "writing the embedding")
            _warm_start(run.G, run.prior, cfg, run.zgen, autocast, len(run.data.shape) == 3, say,
                        toy_spec(run.data.name), phase)
            distributed.broadcast_state_(run.prior)  # rank 0's fit (its K too, for n_components='auto')
            for module in (run.G, run.D):  # the same start on every rank, whatever the GPUs did
                distributed.broadcast_module_(module)
            run.G_ema.load_state_dict(run.G.state_dict())
            run.save()  # a good checkpoint exists from the start
    run.rng = (torch.get_rng_state(), torch.cuda.get_rng_state_all() if run.device.type == "cuda" else [])


# ----------------------------------------------------------------------------------- the set-up phases
def base_lrs(cfg: TrainConfig, prior: Prior) -> tuple[list[float], list[float]]:
    """The config's learning rate of each param group of G's optimizer (G, then a learnable prior) and of D's.

    These, not the rates in a checkpoint, are what ``schedule.lr_decay`` scales at every step.
    """
    g = [cfg.optim.g_lr] + ([cfg.optim.prior_lr or cfg.optim.g_lr] if trained_parameters(prior) else [])
    return g, [cfg.optim.d_lr]


def _optimizers(cfg: TrainConfig, G: nn.Module, D: nn.Module, prior: Prior, device: torch.device, graph: bool):
    """Adam for G (and, at ``optim.prior_lr``, for the parameters of a learnable prior) and for D."""
    adam_kw = {"betas": tuple(cfg.optim.betas), "eps": cfg.optim.eps}
    (g_lr, *prior_lr), (d_lr,) = base_lrs(cfg, prior)
    g_groups = [{"params": list(G.parameters())}]
    if prior_lr:
        g_groups.append({"params": trained_parameters(prior), "lr": prior_lr[0]})
    opt_g = adam(g_groups, device, graph, lr=g_lr, **adam_kw)
    opt_d = adam(D.parameters(), device, graph, lr=d_lr, **{**adam_kw, "eps": cfg.optim.d_adam_eps})
    return opt_g, opt_d


def _fit_prior(prior: Prior, data: TensorData, say, phase=PhaseProgress) -> None:
    """Fit a fitted prior (a GMM in the data's embedding) on all the real data; other priors are left as they are.

    A learned embedding trains first, under its own bar ("embedding"), unless it was loaded
    (``prior.embed_from``).

    The bar (``phase``, :class:`PhaseProgress`) counts EM iterations over all initialisations (it
    only pulses while K is chosen by BIC, ``n_components='auto'``, which reports no iterations).
    """
    if not prior.needs_fit:
        return
    t0 = time.time()
    embedding = prior.embedding
    trains = embedding.learned and not embedding.fitted
    with (phase("embedding", total=100, unit="%") if trains else contextlib.nullcontext()) as bar, \
            distributed.local_only():  # every rank fits on all the data (then rank 0's copy is kept)
        codes = prior.fit_embedding(data.data, callback=partial(_embedding_progress, bar))
    if trains:
        say(f"embedding: {type(embedding).__name__} trained in {time.time() - t0:.1f} s (reconstruction MSE "
            f"{embedding.history[-1]:.4g})")
        t0 = time.time()
    mixture = prior.mixture
    em = (mixture.max_iter, mixture.n_init) if mixture._k != "auto" else None
    with phase("prior fit", total=em[0] * em[1] if em else None,
               unit="EM iterations" if em else "(K chosen by BIC)") as bar, distributed.local_only():
        prior.fit_mixture(codes, callback=partial(_em_progress, bar, em[0]) if em else None)
    say(f"prior: {type(prior).__name__} fitted ({prior.n_components} components, z_dim {prior.z_dim}) "
        f"in {time.time() - t0:.1f} s")
    head = getattr(prior, "head", None)
    if head is not None and head.agreement is not None:
        say(f"component head: picks the mixture's component of {100 * head.agreement:.1f}% of the training images")


def _embedding_progress(bar: PhaseProgress, done: int, total: int, loss: float | None, label: str = "MSE") -> None:
    """A learned embedding's training callback: the bar shows the fraction of its steps done and the last loss."""
    bar.update(100 * done / total, info=f"{label} {loss:.4g}" if loss is not None else None)


def _em_progress(bar: PhaseProgress, max_iter: int, info: dict) -> None:
    """GaussianMixture's callback after each EM iteration: the prior-fit bar counts over the initialisations."""
    bar.update(info["init"] * max_iter + info["n_iter"], info=f"init {info['init'] + 1}, lower bound "
                                                              f"{info['lower_bound']:.4f}")


def _warm_start(G, prior: Prior, cfg: TrainConfig, zgen, autocast, images: bool, say, spec=None,
                phase=PhaseProgress) -> None:
    """Regress G(z) onto the prior's target (the embedding's decoder): a head start on the modes.

    ``phase(description, total=..., unit=...)`` makes its progress bar (:class:`PhaseProgress`).
    """
    steps = cfg.prior.warm_start_steps
    if not steps or type(prior).warm_start_target is Prior.warm_start_target:
        return  # this prior has no decoder to regress onto
    opt = torch.optim.Adam(G.parameters(), lr=cfg.prior.warm_start_lr)
    # Cosine decay to 0: the regression ends precise (errors well below the modes' widths).
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 0.5 * (1 + math.cos(math.pi * i / steps)))
    with phase("warm start", total=steps, unit="steps") as bar:
        for i in range(steps):
            z = prior.sample(cfg.schedule.batch_size, zgen)
            with torch.no_grad():
                target = prior.warm_start_target(z)
                target = target.clamp(-1, 1) if images else target
            with autocast():
                loss = F.mse_loss(G(z).float(), target.float())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if (i + 1) % 100 == 0:  # .item() syncs the GPU: not every step
                bar.update(i + 1, info=f"MSE {loss.item():.4g}")
            elif (i + 1) % 10 == 0:
                bar.update(i + 1)
    say(f"warm start: {steps} steps regressing G onto the embedding's decoder, final MSE {loss.item():.4g}")
    if spec is not None:
        from gmmgan.metrics.modes2d import mode_coverage

        cov = mode_coverage(generate(G.eval(), prior, cfg.eval_samples, cfg.seed + 2, zgen.device), spec)
        G.train()
        say(f"after the warm start: modes {cov.modes_captured}/{cov.n_modes}, high quality "
            f"{100 * cov.hq_fraction:.1f}%, reverse KL {cov.reverse_kl:.4f}")
