"""The GAN training loop: one readable file, from data to checkpoints (in the style of edm / nanoGPT).

    cfg = gmmgan.gan.config.load_config("configs/grid_fitted_gmm.yaml", ["schedule.total_kimg=50"])
    result = gmmgan.gan.training_loop.train(cfg)          # -> {'run_dir': ..., 'metrics': {...}, ...}

What happens, top to bottom (the section comments of :func:`train`):

1. The whole dataset is loaded onto the device once and batched there (:class:`TensorBatcher`).
2. The prior is built (:mod:`gmmgan.gan.priors`), then G, D and the EMA copy of G, and Adam for each.
3. A new run gets its folder (:mod:`gmmgan.gan.run_folder`), its prior is fitted on the real data if
   it is a fitted one, the fitted-GMM prior may warm-start G by regressing it onto the embedding's
   decoder, and a first checkpoint is written; a resumed run loads its checkpoint instead and trims
   its log back to it (:mod:`gmmgan.gan.checkpoint`).
4. Adversarial training, one D step and one G step per batch (:class:`gmmgan.gan.train_step.TrainStep`).
   Progress is counted in real images shown to D (kimg). G's weights are averaged into an EMA copy
   (half-life ``ema_kimg``) that is what gets sampled, plotted and saved for ``gmmgan sample``.
5. Every ``log_kimg``: a JSONL line (and TensorBoard, if it imports); every ``sample_kimg``: a plot
   of ``eval_samples`` fixed-z samples over the true modes (2-D) or an image grid (a row per component
   for mixture priors of up to 16 components; :mod:`gmmgan.gan.sampling`), also as a TensorBoard
   image; every ``snapshot_kimg`` and at the end: the full checkpoint and the generator snapshot
   (:mod:`gmmgan.gan.checkpoint`), and with ``keep_snapshots`` a copy of it in snapshots/.
6. At the end of a 2-D run: modes captured, high-quality fraction and reverse KL on
   ``eval_samples`` samples (:func:`gmmgan.metrics.mode_coverage`), printed, saved and plotted; an
   image run ends with a grid of samples.

Exact resume: everything random comes from three generators (the batcher's, the z generator and
the global torch RNG used only to initialise the nets), all saved in the checkpoint, so on CPU a
run stopped and resumed ends with the same weights as one that never stopped.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import signal
import time
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from gmmgan import distributed
from gmmgan._device import resolve_device
from gmmgan._files import atomic_write_text, is_disk_full
from gmmgan.data import TensorData, load_dataset, toy_spec
from gmmgan.data.root import resolve_data_root
from gmmgan.gan.checkpoint import (
    CHECKPOINT_NAME,
    SNAPSHOT_NAME,
    load_resumable,
    load_training_state,
    save_checkpoint,  # looked up here at call time: tests replace training_loop.save_checkpoint
    save_generator,
    training_state,
)
from gmmgan.gan.config import TrainConfig
from gmmgan.gan.losses import get_gan_loss
from gmmgan.gan.networks import build_networks
from gmmgan.gan.priors import Prior, build_prior
from gmmgan.gan.progress import PhaseProgress
from gmmgan.gan.run_folder import (  # the file names are re-exported: commands import them from here
    CONFIG_NAME,
    FINAL_PLOT_NAME,
    LOG_NAME,
    METRICS_NAME,
    TrainingLog,
    claim_run_dir,
    keep_snapshot,
    make_samples_dir,
    record_config,
    sample_path,
)
from gmmgan.gan.sampling import generate, image_grid, load_generator, write_samples
from gmmgan.gan.session import (
    TrainingInterrupted,
    disk_full_during_training,
    hold_run_folder,
    removed_if_unfinished,
    stopped_by,
    train_session,
)
from gmmgan.gan.train_step import TrainStep, adam
from gmmgan.plotting.samples import plot_points

__all__ = [
    "CONFIG_NAME",
    "FINAL_PLOT_NAME",
    "LOG_NAME",
    "METRICS_NAME",
    "TrainingDivergedError",
    "TrainingInterrupted",
    "build_networks",
    "load_generator",
    "train",
]



class TrainingDivergedError(RuntimeError):
    """A loss became NaN or infinite; the last good checkpoint on disk is left as it was."""


# ----------------------------------------------------------------------------------- setup
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
    return load_dataset(d.name, data_root(cfg), "train", d.resolution, n=d.n, seed=cfg.seed, per_class=d.per_class,
                        channels=d.channels, device=device, progress=progress)


# ----------------------------------------------------------------------------------- training
def _ema_beta(cfg: TrainConfig) -> float:
    half_life = cfg.schedule.ema_kimg * 1000
    return 0.5 ** (cfg.schedule.batch_size / half_life) if half_life > 0 else 0.0


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


@train_session
def train(cfg: TrainConfig, *, run_dir: str | Path | None = None, resume: bool = False, console=None,
          quiet: bool = False) -> dict:
    """Train a GAN as ``cfg`` says; returns {'run_dir', 'kimg', 'metrics', 'wall_s', ...}.

    Under ``torchrun`` every rank calls this with the same arguments: each trains on its slice of
    every global batch (``schedule.batch_size`` images in all), gradients are averaged over ranks,
    and only rank 0 writes the run folder (:mod:`gmmgan.distributed`).

    Parameters
    ----------
    cfg : TrainConfig
    run_dir : path, optional
        The run folder; default a new ``cfg.out/NNNNN-<data>-<prior>``. With ``resume=True``, the
        folder of the run to continue (its ``checkpoint.pt`` must exist).
    resume : bool, default=False
    console : rich.console.Console, optional
        Where the progress bar and summary go (default: a new console on stdout).
    quiet : bool, default=False
        No progress bar and no printing.

    Raises
    ------
    TrainingDivergedError
        A loss became NaN/inf; the message names the step and the last good checkpoint.
    TrainingInterrupted
        Ctrl-C or SIGTERM (handled alike while train() runs in the main thread); the message names
        the last checkpoint and the resume command. A new run stopped before its first checkpoint
        has its folder removed.
    gmmgan.gan.run_folder.RunFolderInUseError
        Another process is training in ``run_dir`` (it holds the folder's lock, ``RUN/.lock``).
    gmmgan._files.DiskFullError
        The disk filled up; the message names the file, the intact checkpoint and its kimg.

    train() leaves the process as it found it: torch's thread count (``cpu_threads``) and the
    SIGTERM handler are restored, and the run folder's lock released, however it ends.
    """
    from rich.console import Console

    # Initialise the processes, the device and the console.
    t_start = time.time()
    device = distributed.init_from_env(resolve_device(cfg.device, spelling="device={}"))
    world, main = distributed.world_size(), distributed.is_main()
    console = console or Console(highlight=False)
    say = partial(console.print, soft_wrap=True) if main and not quiet else _silent
    phase = partial(PhaseProgress, console, enabled=main and not quiet)  # progress of the long set-up phases
    if device.type == "cpu" and cfg.cpu_threads:
        torch.set_num_threads(cfg.cpu_threads)
    # bf16 autocast only where it pays off; no weight cache: it would be stale inside a replayed CUDA graph.
    autocast = partial(torch.autocast, device_type=device.type, dtype=torch.bfloat16,
                       enabled=cfg.bf16 and device.type == "cuda", cache_enabled=False)
    if toy_spec(cfg.data.name) is None and cfg.data.root is None:  # record where the data came from
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, root=data_root(cfg)))
    sched, B = cfg.schedule, cfg.schedule.batch_size
    rows = _rows_of_this_rank(B, cfg.nets.pack, world)
    total = round(sched.total_kimg * 1000)
    if resume:  # a resumed run keeps its folder; check it can go on before anything is written
        run_dir = Path(run_dir)
        if (run_dir / CHECKPOINT_NAME).exists():  # one training at a time in a folder
            hold_run_folder(run_dir)
        ckpt = load_resumable(run_dir, sched.total_kimg)
        # Every rank reads the run folder here: on several machines each reads its own node's copy.
        distributed.check_same_file(run_dir / CHECKPOINT_NAME, "; on --resume every process reads the run folder: "
                                    "put it on a filesystem all the machines share, or copy it to each of them "
                                    "again after rank 0's last checkpoint.")

    # Load training data. The global RNG is used only from here to the optimizers, to initialise the nets.
    torch.manual_seed(cfg.seed)
    with phase("loading images", unit="images", enabled=main and not quiet and cfg.data.name == "folder") as bar:
        data = load_training_data(cfg, device, progress=bar.count)

    # Construct the prior and the networks.
    prior = build_prior(cfg.prior, data.shape, cfg.seed).to(device)
    G, D = build_networks(cfg, data.shape, prior.z_dim)
    G, D = G.to(device), D.to(device)
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)

    # Set up the optimizers and the random streams of batches and latents.
    # A CUDA graph replays fixed kernels: latents that carry gradients (learnable prior) rule it out.
    graph = cfg.cuda_graphs and device.type == "cuda" and not list(prior.parameters())
    opt_g, opt_d = _optimizers(cfg, G, D, prior, device, graph)
    # Every rank draws the same global batch and z, then keeps its rows: the stream of batches does
    # not depend on the number of processes, and a run resumes at any world size.
    batcher = data.batcher(B, generator=torch.Generator().manual_seed(cfg.seed))
    zgen = torch.Generator(device=device).manual_seed(cfg.seed + 1)
    cur_nimg = step = 0

    # Create the run folder of a new run, once data, prior and nets are known to work (a bad config
    # leaves no empty folder); rank 0 names it, the others are told.
    created = False
    if not resume:
        claim = partial(claim_run_dir, cfg.out, f"{cfg.data.name}-{cfg.prior.kind}", run_dir)
        run_dir, created = distributed.broadcast_object(distributed.main_only(claim, "creating the run folder"))
        hold_run_folder(run_dir)

    def write_state() -> None:  # rank 0: the full training state, then the snapshot of the nets that are sampled
        nonlocal last_good
        save_checkpoint(run_dir / CHECKPOINT_NAME, training_state(G, D, G_ema, prior, opt_g, opt_d, batcher, zgen,
                                                                  device, cur_nimg=cur_nimg, step=step, cfg=cfg))
        last_good = cur_nimg  # on disk now, whatever happens to the snapshot
        save_generator(run_dir / SNAPSHOT_NAME, G_ema, prior, cfg=cfg, data_shape=data.shape, cur_nimg=cur_nimg,
                       step=step)
        keep_snapshot(run_dir, cur_nimg / 1000, sched.keep_snapshots)  # and the last few in snapshots/

    # Resume training state, or start the new run: fit the prior, warm-start G, write a first checkpoint.
    last_good = int(ckpt["cur_nimg"]) if resume else 0  # where the checkpoint on disk is (once one is)
    with removed_if_unfinished(run_dir, main and created, last_good):  # until a new run's first checkpoint exists
        if resume:
            load_training_state(ckpt, run_dir, G, D, G_ema, prior, opt_g, opt_d, batcher, zgen, device)
            cur_nimg, step = int(ckpt["cur_nimg"]), int(ckpt["step"])  # the log is trimmed back to here
            distributed.main_only(partial(record_config, run_dir, cfg, cur_nimg / 1000), "writing the config")
            say(f"resumed {run_dir} at {cur_nimg / 1000:.3f} kimg (step {step})")
        else:
            distributed.main_only(partial(record_config, run_dir, cfg), "writing the config")
            say(f"run folder: {run_dir}" + (f" ({world} processes)" if world > 1 else ""))
            _fit_prior(prior, data, say, phase)
            _warm_start(G, prior, cfg, zgen, autocast, len(data.shape) == 3, say, toy_spec(data.name), phase)
            distributed.broadcast_state_(prior)  # rank 0's fit (its K too, for n_components='auto')
            for module in (G, D):  # the same start on every rank, whatever the GPUs did
                distributed.broadcast_module_(module)
            G_ema.load_state_dict(G.state_dict())
            _save(write_state, G, D, G_ema)  # a good checkpoint exists from the start

    # Set up the training step, the log/sample/snapshot ticks, the samples folder and the log.
    step_fn = TrainStep(G, D, G_ema, prior, opt_g, opt_d, get_gan_loss(cfg.loss.kind), r1_gamma=cfg.loss.r1_gamma,
                        gp_weight=cfg.loss.gp_weight, ema_beta=_ema_beta(cfg), autocast=autocast, device=device,
                        graph=graph, first_step=step)
    distributed.main_only(partial(make_samples_dir, run_dir), "creating the samples folder")
    next_log, next_snap = _next_at(cur_nimg, sched.log_kimg), _next_at(cur_nimg, sched.snapshot_kimg)
    next_sample = _next_at(cur_nimg, sched.sample_kimg) if sched.sample_kimg else None
    check_every = 1 if device.type == "cpu" else 50  # .item() syncs the GPU: check NaN less often there
    tick_time, tick_nimg = time.time(), cur_nimg
    log = TrainingLog(run_dir, console, cur_nimg, total, progress=main and not quiet)  # closed by the finally below

    # Main training loop.
    try:
        while cur_nimg < total:
            real = batcher.next()[rows]
            z = prior.sample(B, zgen)[rows]
            gp_eps = torch.rand(B, generator=zgen, device=device)[rows] if cfg.loss.gp_weight > 0 else None
            step_fn(real, z, gp_eps)
            cur_nimg += B
            step += 1
            done = cur_nimg >= total
            if step % check_every == 0 or done or cur_nimg >= min(next_log, next_snap):
                _check_finite(step_fn, B, run_dir, last_good)

            if cur_nimg >= next_log or done:
                ld, lg = step_fn.pop_means()
                now = time.time()
                rate = (cur_nimg - tick_nimg) / max(now - tick_time, 1e-9)
                entry = {"kimg": round(cur_nimg / 1000, 4), "step": step, "loss_d": ld, "loss_g": lg,
                         "images_per_s": round(rate, 1), "wall_s": round(now - t_start, 2)}
                log.write(entry, cur_nimg, info=f"D {ld:.3f}  G {lg:.3f}  {rate:,.0f} img/s")
                tick_time, tick_nimg, next_log = now, cur_nimg, _next_at(cur_nimg, sched.log_kimg)
            if next_sample is not None and (cur_nimg >= next_sample or done):
                kimg = cur_nimg / 1000
                distributed.main_only(partial(write_samples, sample_path(run_dir, kimg), G_ema, prior, data,
                                              cfg.seed + 2, device, kimg, cfg.eval_samples), "writing a sample grid")
                log.add_picture(sample_path(run_dir, kimg), cur_nimg)  # TensorBoard (rank 0), if it imports
                next_sample = _next_at(cur_nimg, sched.sample_kimg)
            if cur_nimg >= next_snap or done:
                _save(write_state, G, D, G_ema)
                last_good, next_snap = cur_nimg, _next_at(cur_nimg, sched.snapshot_kimg)
            if step % 16 == 0 or done:  # rich costs ~0.1 ms a call: not every step
                log.show_progress(cur_nimg)
    except KeyboardInterrupt as e:  # Ctrl-C or SIGTERM
        raise TrainingInterrupted(
            f"interrupted{stopped_by(e)} at {cur_nimg / 1000:.1f} kimg; the last checkpoint, "
            f"{run_dir / CHECKPOINT_NAME}, is at {last_good / 1000:.1f} kimg. Continue with: gmmgan train --resume "
            f"{run_dir}", getattr(e, "signum", signal.SIGINT)
        ) from None
    except OSError as e:
        if not is_disk_full(e):
            raise
        raise disk_full_during_training(e, run_dir, f"; training stopped at {cur_nimg / 1000:.1f} kimg. The last checkpoint, "
                         f"{run_dir / CHECKPOINT_NAME}, is intact at {last_good / 1000:.3f} kimg: free some space, "
                         f"then continue with: gmmgan train --resume {run_dir}") from None
    finally:
        log.close()

    # Evaluate the EMA generator (rank 0) and report.
    try:
        metrics = distributed.main_only(partial(_final_evaluation, cfg, run_dir, G_ema, prior, data, device,
                                                cur_nimg / 1000, say), "evaluating the run")
    except OSError as e:
        if not is_disk_full(e):
            raise
        raise disk_full_during_training(e, run_dir, f" after training ended. The run is complete: its checkpoint, "
                         f"{run_dir / CHECKPOINT_NAME} ({cur_nimg / 1000:.3f} kimg), and {SNAPSHOT_NAME} are intact; "
                         f"free some space, then measure it with: gmmgan eval {run_dir}") from None
    wall = time.time() - t_start
    say(f"done: {cur_nimg / 1000:.1f} kimg in {wall:.1f} s; snapshot {run_dir / SNAPSHOT_NAME}")
    return {"run_dir": run_dir, "kimg": cur_nimg / 1000, "metrics": metrics, "wall_s": wall, "G": G, "D": D,
            "G_ema": G_ema, "prior": prior, "cuda_graph": step_fn.graphed}


# ----------------------------------------------------------------------------------- helpers of train()
def _silent(*args) -> None:
    """``say`` of a quiet run, and of every rank but 0."""


def _rows_of_this_rank(batch_size: int, pack: int, world: int) -> slice:
    """This rank's rows of every global batch; each rank's share must be whole packs of D's input."""
    if batch_size % (pack * world):
        raise ValueError(f"schedule.batch_size={batch_size} must be a multiple of nets.pack ({pack}) times the "
                         f"number of processes ({world}).")
    rows = distributed.shard_range(batch_size)
    return slice(rows.start, rows.stop)


def _optimizers(cfg: TrainConfig, G: nn.Module, D: nn.Module, prior: Prior, device: torch.device, graph: bool):
    """Adam for G (and, at ``optim.prior_lr``, for the parameters of a learnable prior) and for D."""
    adam_kw = {"betas": tuple(cfg.optim.betas), "eps": cfg.optim.eps}
    g_groups = [{"params": list(G.parameters())}]
    if list(prior.parameters()):
        g_groups.append({"params": list(prior.parameters()), "lr": cfg.optim.prior_lr or cfg.optim.g_lr})
    opt_g = adam(g_groups, device, graph, lr=cfg.optim.g_lr, **adam_kw)
    opt_d = adam(D.parameters(), device, graph, lr=cfg.optim.d_lr, **adam_kw)
    return opt_g, opt_d


def _fit_prior(prior: Prior, data: TensorData, say, phase=PhaseProgress) -> None:
    """Fit a fitted prior (a GMM in the data's embedding) on all the real data; other priors are left as they are.

    The bar (``phase``, :class:`PhaseProgress`) counts EM iterations over all initialisations (it
    only pulses while K is chosen by BIC, ``n_components='auto'``, which reports no iterations).
    """
    if not prior.needs_fit:
        return
    t0 = time.time()
    mixture = getattr(prior, "mixture", None)
    em = (mixture.max_iter, mixture.n_init) if mixture is not None and mixture._k != "auto" else None
    with phase("prior fit", total=em[0] * em[1] if em else None,
               unit="EM iterations" if em else "(K chosen by BIC)") as bar, \
            distributed.local_only():  # every rank fits on all the data (then rank 0's copy is kept)
        prior.fit(data.data, callback=partial(_em_progress, bar, em[0]) if em else None)
    say(f"prior: {type(prior).__name__} fitted ({prior.n_components} components, z_dim {prior.z_dim}) "
        f"in {time.time() - t0:.1f} s")


def _em_progress(bar: PhaseProgress, max_iter: int, info: dict) -> None:
    """GaussianMixture's callback after each EM iteration: the prior-fit bar counts over the initialisations."""
    bar.update(info["init"] * max_iter + info["n_iter"], info=f"init {info['init'] + 1}, lower bound "
                                                              f"{info['lower_bound']:.4f}")


def _save(write_state, *modules: nn.Module) -> None:
    """Average the nets' buffers over ranks (a collective: every rank gets here at the same step); rank 0 writes."""
    for module in modules:
        distributed.average_buffers_(module)
    distributed.main_only(write_state, "writing the checkpoint")


def _next_at(cur_nimg: int, kimg: float) -> int:
    """The first image count after ``cur_nimg`` that is a multiple of ``kimg`` thousand images (at least 1)."""
    every = max(1, round(kimg * 1000))
    return (cur_nimg // every + 1) * every


def _check_finite(step_fn: TrainStep, batch_size: int, run_dir: Path, last_good: int) -> None:
    """Stop with :class:`TrainingDivergedError` if a loss since the last check was NaN or infinite."""
    s = step_fn.first_bad_step()
    if s >= 0:
        raise TrainingDivergedError(
            f"a loss became NaN or infinite at step {s} (around {s * batch_size / 1000:.3f} kimg); training stopped. "
            f"The last good checkpoint is {run_dir / CHECKPOINT_NAME} ({last_good / 1000:.3f} kimg), left "
            "unchanged. Try lower learning rates (optim.g_lr, optim.d_lr), R1 (loss.r1_gamma=1) or spectral "
            "norm (nets.d_spectral_norm=true)."
        )


def _final_evaluation(cfg: TrainConfig, run_dir: Path, G_ema, prior, data, device, kimg: float, say) -> dict | None:
    """2-D runs: modes, HQ and reverse KL of the EMA generator (metrics.json + plot); images: a grid."""
    spec = toy_spec(data.name)
    if spec is None:
        image_grid(run_dir / FINAL_PLOT_NAME, G_ema, prior, cfg.seed + 2, device)
        say(f"samples: {run_dir / FINAL_PLOT_NAME}")
        return None
    from gmmgan.metrics.modes2d import mode_coverage

    samples = generate(G_ema, prior, cfg.eval_samples, cfg.seed + 2, device)
    cov = mode_coverage(samples, spec)
    metrics = {"kimg": kimg, "n_samples": cov.n_samples, "modes": cov.modes_captured, "n_modes": cov.n_modes,
               "hq": cov.hq_fraction, "kl": cov.reverse_kl, "kl_floor": cov.kl_floor}
    atomic_write_text(run_dir / METRICS_NAME, json.dumps(metrics, indent=2) + "\n")
    plot_points(run_dir / FINAL_PLOT_NAME, samples, data.info["means"],
                f"{data.name} / {cfg.prior.kind}: {cov.modes_captured}/{cov.n_modes} modes, "
                f"HQ {100 * cov.hq_fraction:.1f}%, KL {cov.reverse_kl:.4f}")
    say(f"[bold]{data.name}[/bold] ({cfg.eval_samples} samples of the EMA generator): "
        f"modes {cov.modes_captured}/{cov.n_modes}, high quality {100 * cov.hq_fraction:.1f}%, "
        f"reverse KL {cov.reverse_kl:.4f} (perfect-sampler floor {cov.kl_floor:.4f})")
    say(f"plot: {run_dir / FINAL_PLOT_NAME}")
    return metrics
