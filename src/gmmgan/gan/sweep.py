"""Seed sweeps: the folders, the step over many seeds, the memory check and the summary.

A sweep (``gmmgan train --seeds 0-9``, or ``seeds: [...]`` in a config) trains N independent GANs in
one process. Its folder ``out/NNNNN-<data>-<prior>-seeds<first>-<last>/`` holds the sweep's
config.yaml (with ``seeds``), one run folder per seed (``seed-0003/``, exactly as a single run with
``seed=3`` writes it, so ``gmmgan sample``, ``eval`` and ``train --resume`` work on it unchanged), and
``summary.json`` / ``summary.md`` (each metric's mean +- standard error over the seeds).

:class:`Engine` is what the training loop steps: for one seed the plain :class:`TrainStep` on its
own nets; for several, one single-run step per seed replayed side by side as one CUDA graph
(:mod:`gmmgan.gan.concurrent_step`; the default on one GPU), the nets stacked
(:mod:`gmmgan.gan.stacked`; torchrun, learnable priors, MLPs on the CPU) or one single-run step per
seed in turn (:mod:`gmmgan.gan.sequential_step`; DCGAN on the CPU), each seed's batches and latents
drawn from its own generators in every mode, so that seed s trains as its single run would.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path

import torch

from gmmgan import distributed
from gmmgan._files import atomic_write_text
from gmmgan._stats import mean_se
from gmmgan.gan.checkpoint import CHECKPOINT_NAME
from gmmgan.gan.concurrent_step import ConcurrentSteps
from gmmgan.gan.density_head import refresh_due, refresh_head
from gmmgan.gan.priors import trained_parameters
from gmmgan.gan.seed_run import base_lrs
from gmmgan.gan.sequential_step import SequentialSteps
from gmmgan.gan.stacked import StackedModule, stacked_adam, unstack_adam
from gmmgan.gan.train_step import TrainStep, adam

__all__ = ["DIVERGED_NAME", "SUMMARY_NAME", "Engine", "check_sweep_fits", "seed_dir", "sweep_desc",
           "sweep_mode", "sweep_removed_if_empty", "write_summary"]

SUMMARY_NAME = "summary.json"
DIVERGED_NAME = "diverged.txt"  # in a seed's folder: why it stopped (a resumed sweep leaves it out)


def seed_dir(root: Path, seed: int) -> Path:
    """The run folder of ``seed`` inside the sweep folder ``root``."""
    return Path(root) / f"seed-{seed:04d}"


def sweep_desc(cfg) -> str:
    """The name of a new sweep folder after its number: ``grid-fitted_gmm-seeds0-9``."""
    seeds = cfg.seeds
    span = f"{seeds[0]}-{seeds[-1]}" if len(seeds) > 1 else f"{seeds[0]}"
    return f"{cfg.data.name}-{cfg.prior.kind}-seeds{span}"


@contextlib.contextmanager
def sweep_removed_if_empty(root: Path, created: bool):
    """On a failure inside, remove the sweep folder this training made if none of its seeds has a checkpoint."""
    try:
        yield
    except BaseException:
        if created and root.is_dir() and not any(root.glob(f"seed-*/{CHECKPOINT_NAME}")):
            shutil.rmtree(root, ignore_errors=True)
        raise


# ----------------------------------------------------------------------------------- memory
def _bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def _activation_bytes(run, rows: int) -> int:
    """Bytes of the outputs of every layer of G and D for one batch (measured by hooks on a forward)."""
    total = 0

    def count(_module, _inputs, output):
        nonlocal total
        if torch.is_tensor(output):
            total += output.numel() * output.element_size()

    leaves = [m for net in (run.G, run.D) for m in net.modules() if not list(m.children())]
    handles = [m.register_forward_hook(count) for m in leaves]
    was = run.G.training, run.D.training
    try:
        with torch.no_grad():
            z = torch.zeros(rows, run.prior.z_dim, device=run.device)  # the prior may not be fitted yet
            run.D.eval()(run.G.eval()(z))
    finally:
        for h in handles:
            h.remove()
        run.G.train(was[0])
        run.D.train(was[1])
    return total


def estimate_sweep_bytes(runs, rows: int) -> int:
    """Device memory a sweep of ``len(runs)`` seeds needs while training, roughly and on the high side.

    Per seed: G's weights 5 times (weights, gradients, Adam's two moments, the EMA copy) and D's 4
    times, the stacked copies of both made for the step, and the layer outputs of G and D kept for
    the backward passes (G once, D on real and fake, doubled for R1's double backward); plus each
    distinct training set once.
    """
    run = runs[0]
    g, d = _bytes(run.G.parameters()), _bytes(run.D.parameters())
    act = _activation_bytes(run, rows)
    per_seed = 2 * (5 * g + 4 * d) + 6 * act
    data = sum(_bytes([t]) for t in {id(r.data.data): r.data.data for r in runs}.values())
    return len(runs) * per_seed + data


def _available_bytes(device: torch.device) -> int | None:
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def check_sweep_fits(runs, rows: int, device: torch.device) -> None:
    """MemoryError before training if the sweep's seeds would not fit on ``device`` together."""
    need, have = estimate_sweep_bytes(runs, rows), _available_bytes(device)
    if have is None or need <= 0.9 * have:
        return
    per = need / len(runs)
    fit = max(0, int(0.9 * have // per))
    gib = 2 ** 30
    raise MemoryError(
        f"a sweep of {len(runs)} seeds needs about {need / gib:.1f} GiB on {device}, but only {have / gib:.1f} GiB "
        f"is free; about {fit} seed{'s' if fit != 1 else ''} fit at once. Train the seeds in smaller sweeps "
        f"(e.g. --seeds {runs[0].seed}-{runs[0].seed + max(fit, 1) - 1}, then the rest) or lower "
        "schedule.batch_size.")


# ----------------------------------------------------------------------------------- the step
def sweep_mode(wanted: str, runs, graph: bool) -> str:
    """How the seeds of a sweep are stepped: 'streams', 'stacked' or 'sequential'.

    'auto' takes 'streams' where it can run (a CUDA graph for every seed, one process). Elsewhere
    it takes 'stacked' (fewer, larger calls), except for convolutional nets on the CPU, where the
    stacked net's grouped convolutions are slower than the seeds' own nets one after the other
    (docs/benchmarks.md, 'Seed sweeps on the CPU'): there it takes 'sequential'.
    """
    can = graph and runs[0].device.type == "cuda" and distributed.world_size() == 1
    if wanted == "streams" and not can and len(runs) > 1:
        raise ValueError("sweep_mode=streams replays each seed's step as a branch of one CUDA graph: it needs "
                         "device=cuda, cuda_graphs=true, a prior without trained parameters (not learnable_gmm) "
                         "and a single process (not torchrun). Use sweep_mode=auto, stacked or sequential here.")
    if wanted != "auto":
        return wanted
    if can:
        return "streams"
    if runs[0].device.type == "cpu" and _convolutional(runs[0].D):
        return "sequential"
    return "stacked"


def _convolutional(net: torch.nn.Module) -> bool:
    return any(isinstance(m, torch.nn.modules.conv._ConvNd) for m in net.modules())


class Engine:
    """One training step over ``runs``: a single run's own nets, or the seeds of a sweep stacked.

    ``draw()`` takes this rank's rows of every seed's next real batch, latents and gradient-penalty
    weights from that seed's own generators; ``step(...)`` trains on them; ``sync()`` copies the
    stacked state back into each seed's nets and optimizers (before its checkpoint, samples or
    evaluation; nothing to do for a single run).
    """

    def __init__(self, runs, *, gan, cfg, ema_beta: float, autocast, rows: slice):
        self.runs, self.rows, self.gp = list(runs), rows, cfg.loss.gp_weight > 0
        self.autocast, self.loss_cfg = autocast, cfg.loss
        first = self.runs[0]
        graph = all(r.graph for r in self.runs)
        self.mode = sweep_mode(cfg.sweep_mode, self.runs, graph) if len(self.runs) > 1 else "single"
        self.stacked = self.mode == "stacked"
        # schedule.lr_decay: the rates of the config's optim section, scaled at every step (set_lr_scale).
        self.decay = cfg.schedule.lr_decay != "none"
        kw = {"r1_gamma": cfg.loss.r1_gamma, "r2_gamma": cfg.loss.r2_gamma, "reg_interval": cfg.loss.reg_interval,
              "gp_weight": cfg.loss.gp_weight,
              "ema_beta": ema_beta, "autocast": autocast, "device": first.device, "graph": graph,
              "first_step": first.step,
              "base_lrs": base_lrs(first.cfg, first.prior) if self.decay else None,
              "diffaugment": cfg.loss.diffaugment}
        if not self.stacked:
            # One seed, or one single-run step per seed: replayed side by side (gmmgan.gan.concurrent_step)
            # or in turn (gmmgan.gan.sequential_step).
            steps = [TrainStep(r.G, r.D, r.G_ema, r.prior, r.opt_g, r.opt_d, gan, **kw) for r in self.runs]
            per_seed = {"streams": ConcurrentSteps, "sequential": SequentialSteps}
            self.step_fn = steps[0] if len(steps) == 1 else per_seed[self.mode](steps)
            return
        self.G = StackedModule([r.G for r in self.runs])
        self.D = StackedModule([r.D for r in self.runs])
        self.G_ema = StackedModule([r.G_ema for r in self.runs]).requires_grad_(False)
        prior_params = [p for r in self.runs for p in trained_parameters(r.prior)]
        self.g_groups = [(list(self.G.parameters()), True)] + ([(prior_params, False)] if prior_params else [])
        self.d_groups = [(list(self.D.parameters()), True)]

        def make_adam(groups):
            return adam(groups, first.device, graph)

        self.opt_g = stacked_adam(make_adam, self.g_groups, [r.opt_g for r in self.runs])
        self.opt_d = stacked_adam(make_adam, self.d_groups, [r.opt_d for r in self.runs])
        self.step_fn = TrainStep(self.G, self.D, self.G_ema, [r.prior for r in self.runs], self.opt_g, self.opt_d,
                                 gan, **kw)

    @property
    def graphed(self) -> bool:
        return self.step_fn.graphed

    def draw(self):
        """Every seed's next (real, z, gp_eps), from its own generators, in the form :meth:`step` takes."""
        rows, B = self.rows, self.runs[0].cfg.schedule.batch_size
        per_seed = []
        for r in self.runs:
            real = r.batcher.next()[rows]
            z = r.prior.sample(B, r.zgen)[rows]
            eps = torch.rand(B, generator=r.zgen, device=r.device)[rows] if self.gp else None
            per_seed.append((real, z, eps))
        if not self.stacked:
            return per_seed if len(self.runs) > 1 else per_seed[0]
        real, z, eps = zip(*per_seed)
        return torch.stack(real), torch.stack(z), torch.stack(eps) if self.gp else None

    def step(self, batch) -> None:
        """One training step of every seed on ``batch``, as :meth:`draw` returned it."""
        if self.mode in ("streams", "sequential"):
            self.step_fn(batch)
        else:
            self.step_fn(*batch)

    def set_lr_scale(self, scale: float) -> None:
        """Learning rates of every seed at ``scale`` times the config's (``schedule.lr_decay``), from the next step."""
        self.step_fn.set_lr_scale(scale)

    def refresh_density(self, cur_nimg: int) -> bool:
        """``loss.kind=em_density``: refit every seed's mixture head if a refresh is due before the step at ``cur_nimg``.

        Each seed's head is fitted on its own D (:func:`gmmgan.gan.density_head.refresh_head`); a sweep
        copies its stacked D into the seeds' nets first and the new heads back into the stacked
        buffers after, in place. Returns whether it refreshed.
        """
        B = self.runs[0].cfg.schedule.batch_size
        if self.loss_cfg.kind != "em_density":
            return False
        index = refresh_due(cur_nimg, B, self.loss_cfg.md_refresh_kimg)
        if index is None:
            return False
        nets = [r.D for r in self.runs]
        if self.stacked:
            self.D.unstack_into(nets)
        for r in self.runs:
            refresh_head(r.D, r.data.data, seed=r.seed, index=index, loss_cfg=r.cfg.loss, batch_size=B,
                         autocast=self.autocast)
        if self.stacked:
            self.D.restack_buffers_from(nets)
        return True

    def sync(self) -> None:
        if not self.stacked:
            return
        self.G.unstack_into([r.G for r in self.runs])
        self.D.unstack_into([r.D for r in self.runs])
        self.G_ema.unstack_into([r.G_ema for r in self.runs])
        unstack_adam(self.opt_g, self.g_groups, [r.opt_g for r in self.runs])
        unstack_adam(self.opt_d, self.d_groups, [r.opt_d for r in self.runs])
        if self.decay:  # the seeds' checkpoints record the rates of the step they stopped at, as single runs do
            for stacked, opts in ((self.opt_g, [r.opt_g for r in self.runs]), (self.opt_d, [r.opt_d for r in self.runs])):
                for opt in opts:
                    for group, wide in zip(opt.param_groups, stacked.param_groups):
                        group["lr"] = float(wide["lr"])


# ----------------------------------------------------------------------------------- the summary
def write_summary(root: Path, cfg, runs, diverged: dict[int, str]) -> dict:
    """summary.json and summary.md of a sweep: every numeric metric's mean +- standard error over the seeds."""
    per_seed = {r.seed: r.metrics for r in runs if r.metrics}
    keys = [k for k, v in next(iter(per_seed.values()), {}).items() if isinstance(v, (int, float)) and k != "kimg"]
    stats = {k: {f: v for f, v in mean_se([m[k] for m in per_seed.values()]).items() if f != "per_seed"}
             for k in keys}
    summary = {"seeds": list(cfg.seeds), "finished": sorted(r.seed for r in runs), "diverged": diverged,
               "kimg": max((r.cur_nimg for r in runs), default=0) / 1000, "metrics": stats,
               "per_seed": {str(s): m for s, m in per_seed.items()},
               "run_dirs": {str(r.seed): r.run_dir.name for r in runs}}
    atomic_write_text(root / SUMMARY_NAME, json.dumps(summary, indent=2) + "\n")
    lines = [f"# Sweep {root.name}", "",
             f"{cfg.data.name}, prior {cfg.prior.kind}, {len(cfg.seeds)} seeds "
             f"({', '.join(map(str, cfg.seeds))}), {summary['kimg']:g} kimg each.", ""]
    if stats:
        lines += ["| metric | mean ± standard error | per seed |", "| --- | --- | --- |"]
        for k, st in stats.items():
            values = ", ".join(f"{per_seed[s][k]:.4g}" for s in sorted(per_seed))
            se = "" if st["se"] is None else f" ± {st['se']:.4g}"
            lines.append(f"| {k} | {st['mean']:.4g}{se} | {values} |")
    else:
        lines.append("No metrics at the end of training (image runs): measure each seed with `gmmgan eval`.")
    for s, why in diverged.items():
        lines.append(f"\nSeed {s} diverged and is not in the table: {why}")
    atomic_write_text(root / "summary.md", "\n".join(lines) + "\n")
    return summary
