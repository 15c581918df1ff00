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

Seed sweeps (``seeds: [...]``, ``gmmgan train --seeds 0-9``): the same steps for every seed, each
seed set up as its single run would be (:mod:`gmmgan.gan.seed_run`), in one run folder per seed
inside the sweep's folder, and trained together in one process (:class:`gmmgan.gan.sweep.Engine`):
one loop, whether it holds one run or many.

Exact resume: everything random comes from three generators (the batcher's, the z generator and
the global torch RNG used only to initialise the nets), all saved in the checkpoint, so on CPU a
run stopped and resumed ends with the same weights as one that never stopped.
"""

from __future__ import annotations

import dataclasses
import json
import signal
import time
from functools import partial
from pathlib import Path

import torch

from gmmgan import distributed
from gmmgan._device import resolve_device
from gmmgan._files import atomic_write_text, is_disk_full
from gmmgan.data import toy_spec
from gmmgan.gan.checkpoint import CHECKPOINT_NAME, SNAPSHOT_NAME, load_resumable
from gmmgan.gan.config import TrainConfig
from gmmgan.gan.losses import build_gan_loss
from gmmgan.gan.networks import build_networks
from gmmgan.gan.progress import PhaseProgress
from gmmgan.gan.run_folder import (  # the file names are re-exported: commands import them from here
    CONFIG_NAME,
    FINAL_PLOT_NAME,
    LOG_NAME,
    METRICS_NAME,
    TrainingLog,
    claim_run_dir,
    make_samples_dir,
    record_config,
    sample_path,
)
from gmmgan.gan.sampling import generate, image_grid, load_generator, write_samples
from gmmgan.gan.seed_run import build_seed_run, data_root, load_training_data, start_seed_run
from gmmgan.gan.session import (
    TrainingInterrupted,
    disk_full_during_training,
    hold_run_folder,
    interrupts_deferred,
    stopped_by,
    train_session,
)
from gmmgan.gan.sweep import (
    DIVERGED_NAME,
    SUMMARY_NAME,
    Engine,
    check_sweep_fits,
    seed_dir,
    sweep_desc,
    sweep_mode,
    sweep_removed_if_empty,
    write_summary,
)
from gmmgan.gan.train_step import lr_scale
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
    "load_training_data",
    "train",
]



class TrainingDivergedError(RuntimeError):
    """A loss became NaN or infinite; the last good checkpoint on disk is left as it was."""


# ----------------------------------------------------------------------------------- training
def _ema_beta(cfg: TrainConfig) -> float:
    half_life = cfg.schedule.ema_kimg * 1000
    return 0.5 ** (cfg.schedule.batch_size / half_life) if half_life > 0 else 0.0


@train_session
def train(cfg: TrainConfig, *, run_dir: str | Path | None = None, resume: bool = False, console=None,
          quiet: bool = False) -> dict:
    """Train a GAN as ``cfg`` says; returns {'run_dir', 'kimg', 'metrics', 'wall_s', ...}.

    With ``cfg.seeds`` set, a seed sweep: every seed trains as the single run with that seed would,
    all of them in this process (:mod:`gmmgan.gan.sweep`, ``cfg.sweep_mode``); the result's
    'run_dir' is the sweep's folder, 'metrics' its summary, 'runs' one {'seed', 'run_dir',
    'metrics', 'G_ema'} per seed that finished and 'diverged' {seed: why} for those that did not.

    Under ``torchrun`` every rank calls this with the same arguments: each trains on its slice of
    every global batch (``schedule.batch_size`` images in all), gradients are averaged over ranks,
    and only rank 0 writes the run folder (:mod:`gmmgan.distributed`).

    Parameters
    ----------
    cfg : TrainConfig
    run_dir : path, optional
        The run folder; default a new ``cfg.out/NNNNN-<data>-<prior>`` (a sweep:
        ``...-seeds<first>-<last>``, with a ``seed-NNNN`` run folder per seed inside). With
        ``resume=True``, the folder of the run (or sweep) to continue.
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
    sweep = cfg.seeds is not None  # a seed sweep: one run folder per seed inside the sweep's folder
    if resume:  # a resumed run keeps its folder; check it can go on before anything is written
        run_dir = Path(run_dir)
        if sweep and not (run_dir / CONFIG_NAME).is_file():
            raise FileNotFoundError(f"'{run_dir}' is not a sweep folder (no {CONFIG_NAME}); resume a sweep with the "
                                    "folder 'gmmgan train --seeds' made.")
        if sweep or (run_dir / CHECKPOINT_NAME).exists():  # one training at a time in a folder
            hold_run_folder(run_dir)
    # Each seed's config, folder and checkpoint (None: a new run, or a seed of a sweep not started yet).
    plan = _plan_sweep(cfg, run_dir, resume, say) if sweep else [(cfg, run_dir, _resumable(run_dir, sched) if resume
                                                                  else None)]

    # Load training data; construct the prior, the networks, their optimizers and random streams, per seed.
    runs = []
    for seed_cfg, _, ckpt in plan:
        runs.append(build_seed_run(seed_cfg, device, ckpt=ckpt, phase=phase, data=_shared_data(runs, seed_cfg)))
    if sweep:
        sweep_mode(cfg.sweep_mode, runs, all(r.graph for r in runs))  # a mode that cannot run here: say so now
        check_sweep_fits(runs, rows.stop - rows.start, device)

    # Create the run folder of a new run (or sweep), once data, prior and nets are known to work (a
    # bad config leaves no empty folder); rank 0 names it, the others are told.
    root, created = (run_dir, False) if resume else (None, False)
    if not resume:
        desc = sweep_desc(cfg) if sweep else f"{cfg.data.name}-{cfg.prior.kind}"
        claim = partial(claim_run_dir, cfg.out, desc, run_dir)
        root, created = distributed.broadcast_object(distributed.main_only(claim, "creating the run folder"))
        hold_run_folder(root)
    with sweep_removed_if_empty(root, main and created and sweep):
        if sweep:
            distributed.main_only(partial(record_config, root, cfg), "writing the sweep's config")
            say(f"sweep folder: {root} ({len(runs)} seeds; resume them all with: gmmgan train --resume {root})")
        for run, (_, folder, _) in zip(runs, plan):
            if sweep:
                folder = seed_dir(root, run.seed)
                exists = folder.is_dir()
                distributed.main_only(partial(folder.mkdir, exist_ok=True), "creating a seed's folder")
                run.run_dir, run.created = folder, not exists
                hold_run_folder(folder)
            else:
                run.run_dir, run.created = root, created
            # Resume the training state, or start the run: fit the prior, warm-start G, a first checkpoint.
            start_seed_run(run, autocast, say, phase, main=main, world=world)

    # Set up the training step, the log/sample/snapshot ticks, the samples folder and the logs.
    d_eps = cfg.optim.d_adam_eps
    if cfg.loss.kind in ("mixture_density", "em_density") and d_eps > 1e-4:
        # A fresh D embeds everything near one point where the score is flat (the simplex's centre; the middle
        # of a fitted mixture at least md_reg_covar wide): its first gradients are tiny and a large Adam eps
        # swallows them (measured on the tiny ring at eps 1e-2: no change in 60 steps, em_density 40).
        start = "the simplex's centre" if cfg.loss.kind == "mixture_density" else "its first embeddings"
        say(f"warning: loss.kind={cfg.loss.kind} with D's Adam eps {d_eps:g}: D may not leave {start} "
            "(its first gradients are tiny); set optim.d_eps=1e-8 (or optim.eps).")
    engine = Engine(runs, gan=build_gan_loss(cfg.loss), cfg=cfg, ema_beta=_ema_beta(cfg), autocast=autocast,
                    rows=rows)
    if engine.stacked and device.type == "cuda":
        # The seeds' convolutions run as grouped ones, for which cuDNN's default choice is slow: let it
        # time its algorithms once (a 10-seed DCGAN step on an H200: 8.2 -> 6.6 ms).
        torch.backends.cudnn.benchmark = True
    cur_nimg, step = runs[0].cur_nimg, runs[0].step
    for run in runs:
        distributed.main_only(partial(make_samples_dir, run.run_dir), "creating the samples folder")
        run.log = TrainingLog(run.run_dir, console, cur_nimg, total, progress=main and not quiet and run is runs[0])
    next_log, next_snap = _next_at(cur_nimg, sched.log_kimg), _next_at(cur_nimg, sched.snapshot_kimg)
    next_sample = _next_at(cur_nimg, sched.sample_kimg) if sched.sample_kimg else None
    check_every = 1 if device.type == "cpu" else 50  # .item() syncs the GPU: check NaN less often there
    tick_time, tick_nimg = time.time(), cur_nimg
    diverged: dict[int, str] = {}
    if sweep:
        how = ("" if engine.mode == "single" else
               f" trained together{_ENGINE_WORDS[engine.mode]} (sweep_mode={engine.mode})")
        say(f"sweep: {len(runs)} seed{'s' if len(runs) > 1 else ''} ({', '.join(str(r.seed) for r in runs)}){how}")
    resume_hint = root if sweep else runs[0].run_dir

    # Main training loop.
    try:
        while cur_nimg < total:
            engine.refresh_density(cur_nimg)  # loss.kind=em_density: refit D's mixture head when due (outside the graph)
            if sched.lr_decay != "none":  # from the image count alone: a resumed run has the rates of an uninterrupted one
                engine.set_lr_scale(lr_scale(sched, cur_nimg + B))
            engine.step(engine.draw())
            cur_nimg += B
            step += 1
            for run in engine.runs:
                run.cur_nimg, run.step = cur_nimg, step
            done = cur_nimg >= total
            if step % check_every == 0 or done or cur_nimg >= min(next_log, next_snap):
                engine = _check_finite(engine, B, sweep, diverged, say)

            if cur_nimg >= next_log or done:
                now = time.time()
                rate = (cur_nimg - tick_nimg) / max(now - tick_time, 1e-9)
                for run, (ld, lg) in zip(engine.runs, engine.step_fn.pop_means()):
                    entry = {"kimg": round(cur_nimg / 1000, 4), "step": step, "loss_d": ld, "loss_g": lg,
                             "images_per_s": round(rate, 1), "wall_s": round(now - t_start, 2)}
                    run.log.write(entry, cur_nimg, info=f"D {ld:.3f}  G {lg:.3f}  {rate:,.0f} img/s"
                                  + (f" per seed x {len(engine.runs)}" if sweep else ""))
                tick_time, tick_nimg, next_log = now, cur_nimg, _next_at(cur_nimg, sched.log_kimg)
            if next_sample is not None and (cur_nimg >= next_sample or done):
                engine.sync()
                kimg = cur_nimg / 1000
                for run in engine.runs:
                    distributed.main_only(partial(write_samples, sample_path(run.run_dir, kimg), run.G_ema, run.prior,
                                                  run.data, run.seed + 2, device, kimg, cfg.eval_samples),
                                          "writing a sample grid")
                    run.log.add_picture(sample_path(run.run_dir, kimg), cur_nimg)  # TensorBoard, if it imports
                next_sample = _next_at(cur_nimg, sched.sample_kimg)
            if cur_nimg >= next_snap or done:
                engine.sync()
                with interrupts_deferred():  # all the seeds' checkpoints at the same step, or none
                    for run in engine.runs:
                        run.save()
                next_snap = _next_at(cur_nimg, sched.snapshot_kimg)
            if step % 16 == 0 or done:  # rich costs ~0.1 ms a call: not every step
                runs[0].log.show_progress(cur_nimg)
    except KeyboardInterrupt as e:  # Ctrl-C or SIGTERM
        raise TrainingInterrupted(
            f"interrupted{stopped_by(e)} at {cur_nimg / 1000:.1f} kimg; the last checkpoint"
            + (f"s of the seeds, {root}/seed-*/{CHECKPOINT_NAME}, are" if sweep else
               f", {runs[0].run_dir / CHECKPOINT_NAME}, is")
            + f" at {min(r.last_good for r in engine.runs) / 1000:.1f} kimg. Continue with: gmmgan train --resume "
            f"{resume_hint}", getattr(e, "signum", signal.SIGINT)
        ) from None
    except OSError as e:
        if not is_disk_full(e):
            raise
        where = (f"s of the seeds, {root}/seed-*/{CHECKPOINT_NAME}, are" if sweep else
                 f", {runs[0].run_dir / CHECKPOINT_NAME}, is")
        raise disk_full_during_training(e, resume_hint, f"; training stopped at {cur_nimg / 1000:.1f} kimg. The last "
                         f"checkpoint{where} intact at {min(r.last_good for r in engine.runs) / 1000:.3f} kimg: free "
                         f"some space, then continue with: gmmgan train --resume {resume_hint}") from None
    finally:
        for run in runs:
            if run.log is not None:
                run.log.close()

    # Evaluate the EMA generator of each seed (rank 0) and report.
    try:
        for run in engine.runs:
            run.metrics = distributed.main_only(partial(_final_evaluation, run.cfg, run.run_dir, run.G_ema, run.prior,
                                                        run.data, device, cur_nimg / 1000, say),
                                                "evaluating the run")
        summary = distributed.main_only(partial(write_summary, root, cfg, engine.runs, diverged),
                                        "writing the sweep's summary") if sweep else None
    except OSError as e:
        if not is_disk_full(e):
            raise
        raise disk_full_during_training(e, resume_hint, f" after training ended. The run is complete: its "
                         f"checkpoint{'s' if sweep else ''} ({cur_nimg / 1000:.3f} kimg) and {SNAPSHOT_NAME} are "
                         f"intact; free some space, then measure it with: gmmgan eval {runs[0].run_dir}") from None
    wall = time.time() - t_start
    if sweep:
        say(f"done: {len(engine.runs)} seeds x {cur_nimg / 1000:.1f} kimg in {wall:.1f} s; sweep {root}, "
            f"summary {root / SUMMARY_NAME}")
        return {"run_dir": root, "kimg": cur_nimg / 1000, "metrics": summary, "wall_s": wall,
                "runs": [{"seed": r.seed, "run_dir": r.run_dir, "metrics": r.metrics, "G_ema": r.G_ema} for r in
                         engine.runs], "diverged": diverged, "cuda_graph": engine.graphed, "sweep_mode": engine.mode}
    run = runs[0]
    say(f"done: {cur_nimg / 1000:.1f} kimg in {wall:.1f} s; snapshot {run.run_dir / SNAPSHOT_NAME}")
    return {"run_dir": run.run_dir, "kimg": cur_nimg / 1000, "metrics": run.metrics, "wall_s": wall, "G": run.G,
            "D": run.D, "G_ema": run.G_ema, "prior": run.prior, "cuda_graph": engine.graphed}


# ----------------------------------------------------------------------------------- helpers of train()
_ENGINE_WORDS = {"stacked": " as one stacked model", "streams": " as one CUDA graph, a branch per seed",
                 "sequential": ", each seed's step in turn"}


def _silent(*args) -> None:
    """``say`` of a quiet run, and of every rank but 0."""


def _rows_of_this_rank(batch_size: int, pack: int, world: int) -> slice:
    """This rank's rows of every global batch; each rank's share must be whole packs of D's input."""
    if batch_size % (pack * world):
        raise ValueError(f"schedule.batch_size={batch_size} must be a multiple of nets.pack ({pack}) times the "
                         f"number of processes ({world}).")
    rows = distributed.shard_range(batch_size)
    return slice(rows.start, rows.stop)


def _resumable(run_dir: Path, sched) -> dict:
    """The checkpoint of the run in ``run_dir``, checked to be resumable by every process."""
    ckpt = load_resumable(run_dir, sched.total_kimg)
    # Every rank reads the run folder here: on several machines each reads its own node's copy.
    distributed.check_same_file(run_dir / CHECKPOINT_NAME, "; on --resume every process reads the run folder: "
                                "put it on a filesystem all the machines share, or copy it to each of them "
                                "again after rank 0's last checkpoint.")
    return ckpt


def _plan_sweep(cfg: TrainConfig, root: Path | None, resume: bool, say) -> list[tuple]:
    """(config, folder, checkpoint or None) of each seed of a sweep; a resumed sweep's diverged seeds are left out."""
    plan = []
    for s in cfg.seeds:
        seed_cfg = dataclasses.replace(cfg, seed=s, seeds=None)
        folder = seed_dir(root, s) if resume else None
        if resume and (folder / DIVERGED_NAME).is_file():
            say(f"seed {s} diverged earlier ({folder / DIVERGED_NAME}); the sweep goes on without it")
            continue
        ckpt = _resumable(folder, cfg.schedule) if resume and (folder / CHECKPOINT_NAME).is_file() else None
        plan.append((seed_cfg, folder, ckpt))
    if not plan:
        raise TrainingDivergedError(f"every seed of the sweep in {root} diverged; nothing to resume.")
    at = {int(c["cur_nimg"]) if c is not None else 0 for _, _, c in plan}
    if len(at) > 1:
        raise ValueError(f"the seeds of the sweep in {root} stopped at different points ({sorted(a / 1000 for a in at)} "
                         "kimg) and cannot train together; resume each seed's folder on its own "
                         "(gmmgan train --resume SWEEP/seed-NNNN).")
    return plan


# Data sets whose training set does not depend on the seed: a sweep loads them once for all its seeds.
_SEED_FREE_DATA = ("mnist", "fashion-mnist", "folder")


def _shared_data(runs: list, cfg: TrainConfig):
    """The training set an earlier seed of a sweep loaded, when this seed's is the same; else None."""
    return runs[0].data if runs and cfg.data.name in _SEED_FREE_DATA else None


def _check_finite(engine: Engine, batch_size: int, sweep: bool, diverged: dict, say) -> Engine:
    """Stop with :class:`TrainingDivergedError` if a loss since the last check was NaN or infinite.

    In a sweep, a seed whose loss went bad is left where its last checkpoint is (and marked so in
    its folder); the others go on, in a new engine without it.
    """
    bad = [(run, s) for run, s in zip(engine.runs, engine.step_fn.first_bad_step()) if s >= 0]
    if not bad:
        return engine
    stopped = "this seed stopped" if sweep else "training stopped"
    messages = {run.seed: (f"a loss became NaN or infinite at step {s} (around {s * batch_size / 1000:.3f} kimg); "
                           f"{stopped}. The last good checkpoint is {run.run_dir / CHECKPOINT_NAME} "
                           f"({run.last_good / 1000:.3f} kimg), left unchanged.") for run, s in bad}
    advice = (" Try lower learning rates (optim.g_lr, optim.d_lr), R1 (loss.r1_gamma=1) or spectral norm "
              "(nets.d_spectral_norm=true).")
    if not sweep or len(bad) == len(engine.runs):
        first = bad[0][0].seed
        which = f"every seed of the sweep diverged; seed {first}: " if sweep else ""
        raise TrainingDivergedError(which + messages[first] + advice)
    engine.sync()
    for run, _ in bad:
        diverged[run.seed] = messages[run.seed]
        say(f"[bold yellow]seed {run.seed}[/bold yellow]: {messages[run.seed]} The other seeds go on.")
        distributed.main_only(partial(atomic_write_text, run.run_dir / DIVERGED_NAME, messages[run.seed] + "\n"),
                              "marking a diverged seed")
        run.log.close()
    keep = [run for run in engine.runs if run.seed not in diverged]
    return Engine(keep, gan=engine.step_fn.gan, cfg=keep[0].cfg, ema_beta=engine.step_fn.ema_beta,
                  autocast=engine.step_fn.autocast, rows=engine.rows)


def _next_at(cur_nimg: int, kimg: float) -> int:
    """The first image count after ``cur_nimg`` that is a multiple of ``kimg`` thousand images (at least 1)."""
    every = max(1, round(kimg * 1000))
    return (cur_nimg // every + 1) * every


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
