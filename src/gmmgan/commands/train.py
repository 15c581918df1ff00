"""``gmmgan train``: train a GAN with a Gaussian or GMM prior from a YAML config and key=value overrides."""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path

__all__ = ["add_parser", "run"]

_EPILOG = """\
configuration:
  Settings come from the built-in defaults (the quickstart), then --config FILE (YAML with the
  sections data, prior, nets, loss, optim, schedule), then KEY=VALUE overrides with dotted keys.
  An unknown key is an error that lists the valid ones. The resolved config is saved in the run
  folder as config.yaml.

quickstart:
  Plain 'gmmgan train' trains on the 25-Gaussian grid with the fitted-GMM prior (a GMM fitted on
  the data is the generator's input; G is warm-started to map it onto the data, then fine-tuned
  adversarially), on a CPU in under a minute, and prints modes / high-quality % / reverse KL.

run folder (OUT/NNNNN-<data>-<prior>/):
  config.yaml, log.jsonl, samples/*.png, checkpoint.pt (full state, for --resume),
  generator.safetensors (for 'gmmgan sample'), final.png and metrics.json (2-D data);
  snapshots/ with schedule.keep_snapshots=N. One training at a time per folder (RUN/.lock).

stopping:
  Ctrl-C or SIGTERM (timeout, docker stop, SLURM) stops at once and prints the resume command
  (exit status 130, or 143 for SIGTERM); the last checkpoint (every schedule.snapshot_kimg) is kept.

examples:
  gmmgan train                                           # the quickstart
  gmmgan train --config configs/grid_gaussian.yaml       # the baseline: Gaussian prior
  gmmgan train --config configs/ring_fitted_gmm.yaml seed=3
  gmmgan train --config configs/stacked_mnist_fitted_gmm.yaml data.root=/data device=cuda
  gmmgan train --resume runs/00000-grid-fitted_gmm schedule.total_kimg=800
  gmmgan train --config configs/ring_fitted_gmm.yaml --seeds 0-9   # 10 seeds in one process

seed sweeps (--seeds, or seeds: [...] in the config):
  N independent GANs trained together in one process, each seed with its own weights, BatchNorm
  statistics, Adam state, batches and latents, so seed s trains as its single run would.
  sweep_mode=auto picks the engine: on one GPU 'streams' (each seed's captured step a branch of
  one CUDA graph, run concurrently: 10 Stacked-MNIST seeds in 2.6x less time than 10 single runs
  on an H200), 'sequential' for DCGAN on the CPU (each seed's own step in turn: CPU grouped
  convolutions are slow), elsewhere 'stacked' (the seeds' nets as one model; MLPs on the CPU,
  torchrun, learnable priors). Folder OUT/NNNNN-<data>-<prior>-seeds<first>-<last>/ holds the
  sweep's config.yaml, seed-NNNN/ (each exactly a single run's folder: sample, eval and --resume
  work on it) and summary.json / summary.md (mean +- standard error over the seeds). Resume the
  whole sweep with --resume on its folder. A seed whose loss becomes NaN stops alone (its folder
  says so in diverged.txt); the others go on, and the exit status is then 1.

several GPUs (one process per GPU; schedule.batch_size is the global batch, split over them):
  torchrun --nproc_per_node 4 -m gmmgan train --config configs/stacked_mnist_fitted_gmm.yaml
  A run resumes at any number of processes; only rank 0 prints and writes the run folder.
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "train",
        help="train a GAN (Gaussian or GMM prior) and save checkpoints",
        description="Train a GAN whose latent prior is a Gaussian or a Gaussian mixture (fitted on the\n"
                    "data, fixed, learnable, or used as a likelihood regulariser).",
        epilog=_EPILOG,
    )
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="config overrides with dotted keys, e.g. prior.kind=gaussian schedule.total_kimg=100")
    p.add_argument("--config", default=None, metavar="FILE", help="YAML config file (default: the quickstart)")
    p.add_argument("--resume", default=None, metavar="RUN",
                   help="continue the run in folder RUN exactly where its last checkpoint left off "
                        "(its config.yaml is the base config; overrides still apply)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="parent folder of the new run folder (default: the config's 'out', ./runs)")
    p.add_argument("--seeds", default=None, metavar="SEEDS",
                   help="a seed sweep: train these seeds together in one process "
                        "(e.g. 0-9, 0,1,5 or 0-4,10); one run folder per seed plus summary.json/summary.md")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar and no summary")
    return p


# On --resume these keys may differ from the run's config.yaml; the others define what the checkpoint
# holds (its data, prior, nets, loss, seed), and changing them would mix two runs in one folder.
_RESUMABLE_PREFIXES = ("schedule.", "optim.", "device", "bf16", "cuda_graphs", "channels_last", "sweep_mode", "out", "eval_samples",
                       "cpu_threads", "data.root", "data.download")


def _check_resume_overrides(saved, cfg) -> None:
    """ValueError naming every override that changes what the resumed run's checkpoint was trained with."""
    from gmmgan.gan.config import config_to_dict

    def flat(d: dict, prefix: str = "") -> dict:
        out = {}
        for k, v in d.items():
            out.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {prefix + k: v})
        return out

    old, new = flat(config_to_dict(saved)), flat(config_to_dict(cfg))
    changed = [f"{k} ({old[k]!r} -> {new[k]!r})" for k in old
               if old[k] != new[k] and not k.startswith(_RESUMABLE_PREFIXES)]
    if changed:
        raise ValueError(
            f"--resume continues a run with the settings its checkpoint was trained with, but the overrides "
            f"change {', '.join(changed)}; start a new run (without --resume) to change them. On resume "
            f"only {', '.join(p.rstrip('.') + ('.*' if p.endswith('.') else '') for p in _RESUMABLE_PREFIXES)} "
            "may change.")


def _warn_if_slow_on_cpu(cfg) -> None:
    """Once, before a new image run on the CPU: how long it would take, and what to change if that is too long."""
    from gmmgan._device import resolve_device
    from gmmgan.cli import err_console
    from gmmgan.gan.cpu_speed import slow_cpu_warning

    if os.environ.get("WORLD_SIZE", "1") != "1":
        return  # under torchrun: the ranks share the CPU, and rank 0 alone would have to say it
    try:
        if resolve_device(cfg.device, spelling="device={}").type != "cpu":
            return
        message = slow_cpu_warning(cfg)
    except (ValueError, RuntimeError):
        return  # a bad config: training reports it, with its own context
    if message:
        from rich.markup import escape

        err_console.print(f"[bold yellow]warning:[/bold yellow] {escape(message)}", soft_wrap=True)


def run(args) -> int:
    from gmmgan import distributed
    from gmmgan.cli import EXIT_FAILURE, EXIT_OK, console, print_error
    from gmmgan.gan.config import load_config
    from gmmgan.gan.training_loop import CONFIG_NAME, TrainingDivergedError, train

    run_dir = None
    config_path = args.config
    if args.resume is not None:
        if args.config is not None:
            raise ValueError("--resume continues a run with its own config.yaml; drop --config (overrides still work).")
        if args.out is not None:
            raise ValueError("--resume continues in the run's own folder; drop --out.")
        run_dir = Path(args.resume)
        if run_dir.is_file():
            raise ValueError(f"--resume takes the run folder, not a file in it: use --resume {run_dir.parent}")
        if not run_dir.is_dir():
            raise FileNotFoundError(f"run folder '{run_dir}' does not exist; give a folder written by 'gmmgan train'.")
        config_path = run_dir / CONFIG_NAME
        if not config_path.is_file():
            raise FileNotFoundError(f"'{config_path}' does not exist; '{run_dir}' is not a gmmgan run folder.")
    overrides = list(args.overrides)
    if args.seeds is not None:
        if any(o.split("=", 1)[0].strip() == "seeds" for o in overrides):
            raise ValueError("give the seeds once: --seeds or seeds=..., not both.")
        overrides.append(f"seeds={args.seeds}")
    cfg = load_config(config_path, overrides)
    if run_dir is not None:
        _check_resume_overrides(load_config(config_path), cfg)
    if args.out is not None:
        cfg = dataclasses.replace(cfg, out=str(args.out))
    finished = False
    if run_dir is None:
        _warn_if_slow_on_cpu(cfg)
    try:
        result = train(cfg, run_dir=run_dir, resume=args.resume is not None, console=console, quiet=args.quiet)
        finished = True
        if result.get("diverged"):
            if distributed.is_main():
                print_error(f"seed{'s' if len(result['diverged']) > 1 else ''} "
                            f"{', '.join(map(str, result['diverged']))} of the sweep diverged (see diverged.txt in "
                            f"their folders); the other seeds finished: {result['run_dir']}")
            return EXIT_FAILURE
    except TrainingDivergedError as e:
        if distributed.is_main():  # every rank stops; one says why
            print_error(str(e))
        return EXIT_FAILURE
    finally:
        # Under torchrun: leave the process group on every path; after a normal end all ranks are
        # here, so wait for each other first (after an error a peer may never come).
        distributed.shutdown(synchronize=finished)
    return EXIT_OK
