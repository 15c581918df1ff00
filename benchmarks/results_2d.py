"""Results table (1) of docs/protocols.md, 'Targets': ring and grid, five priors, many seeds, on CPU.

For every data set in ``--data`` and prior in ``--priors``, trains ``configs/<data>_<prior>.yaml``
for every seed (``seed=S``; the seed drives data, nets, z and batches): the seeds of one config as
one seed sweep, ``gmmgan train --config C --seeds 0-9`` (one process, the seeds stacked as one
model), pinned to one CPU thread (``cpu_threads=1``, OMP/MKL threads 1), ``--jobs`` sweeps (so
configs) at a time. ``--no-sweep`` trains every seed in its own process instead (``--jobs`` runs at
a time); ``--sweep-size N`` cuts a config's seeds into sweeps of at most N. Each seed's metrics are
the ones ``gmmgan train`` computes at its end, in its run folder: modes captured, high-quality
fraction and reverse KL of 2,500 samples of the EMA generator (docs/protocols.md, section '2-D
mixtures'). One JSON per seed goes to ``OUT/json/<data>/``; render the table with
``python -m benchmarks.results_report OUT``.

Examples (repository root)::

    # the full table: 2 x 5 configs x 10 seeds = 100 runs of 500 kimg, as 10 sweeps of 10 seeds
    PYTHONPATH=src python -m benchmarks.results_2d --out results --jobs 10
    # the same, one process per run, 60 at a time
    PYTHONPATH=src python -m benchmarks.results_2d --out results --jobs 60 --no-sweep
    # a quick check of the pipeline: 2 kimg, few warm-start steps, 2 seeds, one config
    PYTHONPATH=src python -m benchmarks.results_2d --out /tmp/r --data ring --priors gaussian \\
        --seeds 0,1 --kimg 2 --set data.n=5000
    # the commands it would run
    PYTHONPATH=src python -m benchmarks.results_2d --out /tmp/r --data ring --dry-run

A second invocation with the same ``--out`` skips the runs already done (``--force`` redoes them)
and sweeps only the seeds still to do, so a long table can be run in pieces (e.g. ``--data ring``
then ``--data grid``).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from benchmarks import _results as R
from benchmarks._common import machine_info

DATASETS = ("ring", "grid")
PRIORS = ("fitted_gmm", "fixed_gmm", "learnable_gmm", "gmm_reg", "gaussian")
# Rows with a GMM on the discriminator's side (configs/<data>_<row>.yaml), asked for by --priors, not run by default.
D_SIDE = ("md_gaussian", "md_fitted_gmm", "em_density_gaussian", "em_density_fitted_gmm")


def _csv(choices):
    def parse(text: str) -> list[str]:
        items = [t.strip() for t in text.split(",") if t.strip()]
        bad = [t for t in items if t not in choices]
        if bad or not items:
            raise argparse.ArgumentTypeError(f"expected a comma-separated subset of {','.join(choices)}, got {text!r}")
        return items
    return parse


def _seeds(text: str) -> list[int]:
    try:
        return R.parse_seeds(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="results", help="results folder (default: ./results)")
    p.add_argument("--data", type=_csv(DATASETS), default=list(DATASETS), help="ring,grid (default: both)")
    p.add_argument("--priors", type=_csv(PRIORS + D_SIDE), default=list(PRIORS),
                   help=f"default: {','.join(PRIORS)}; also {','.join(D_SIDE)} (discriminator-side GMM)")
    p.add_argument("--seeds", type=_seeds, default=list(range(10)), help="e.g. 0-9 (default) or 0,1")
    p.add_argument("--jobs", type=int, default=max(1, (os.cpu_count() or 2) - 2),
                   help="sweeps (with --no-sweep: runs) at a time, one CPU thread each (default: CPU count - 2)")
    p.add_argument("--kimg", type=float, default=None,
                   help="override schedule.total_kimg of every run (the table then reports this budget)")
    R.add_run_options(p, "run", ", e.g. data.n=5000")
    p.add_argument("--configs-dir", default=str(R.CONFIGS), help="where <data>_<prior>.yaml live (default: configs/)")
    return p


def _collect(run_dir: Path) -> dict:
    m = R.read_json(run_dir / "metrics.json")
    return {k: m[k] for k in ("modes", "n_modes", "hq", "kl", "kl_floor", "n_samples", "kimg")}


def make_jobs(args) -> list[R.Job]:
    jobs = []
    for data in args.data:
        for prior in args.priors:
            cfg = Path(args.configs_dir) / f"{data}_{prior}.yaml"
            if not cfg.is_file():
                raise FileNotFoundError(f"config '{cfg}' does not exist; give --configs-dir or fewer --priors.")
            extra = ([f"schedule.total_kimg={args.kimg:g}"] if args.kimg is not None else []) + args.overrides
            for seed in args.seeds:
                info = {"data": data, "prior": prior, "config": os.path.relpath(cfg, R.ROOT), "seed": seed,
                        "overrides": extra, "protocol_kimg": R.protocol_kimg(cfg),
                        "budget_kimg": args.kimg if args.kimg is not None else R.protocol_kimg(cfg),
                        "device": "cpu, 1 thread"}
                jobs.append(R.Job(table=data, name=f"{data}_{prior}-s{seed}", group=f"{data}_{prior}", config=cfg,
                                  seed=seed, overrides=["device=cpu", "cpu_threads=1", *extra],
                                  evals=lambda run_dir: [], collect=_collect, info=info))
    return jobs


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.jobs < 1:
        raise SystemExit("--jobs must be >= 1")
    if args.kimg is not None and args.kimg <= 0:
        raise SystemExit("--kimg must be > 0")
    if (bad := R.check_run_options(args)) is not None:
        raise SystemExit(bad)
    out = Path(args.out).resolve()
    runs_dir = Path(args.runs_dir).resolve() if args.runs_dir else None
    jobs = make_jobs(args)
    if args.dry_run:
        R.dry_run(jobs, runs_dir or out / "runs", sweep=args.sweep, sweep_size=args.sweep_size)
        return 0
    units = len(R.make_sweeps(jobs, args.sweep_size)) if args.sweep else len(jobs)
    slots = [(f"cpu{i}", {**R.base_env(1), "CUDA_VISIBLE_DEVICES": ""}) for i in range(min(args.jobs, units))]
    started, t0 = R.utc_now(), time.time()
    how = f"as {units} sweep{'s' * (units > 1)}" if args.sweep else "one process each"
    print(f"{len(jobs)} runs ({len(args.data)} data sets x {len(args.priors)} priors x {len(args.seeds)} seeds) {how}, "
          f"{len(slots)} at a time, one CPU thread each; results in {out}", flush=True)
    results = R.run_all(jobs, out, slots, timeout=args.timeout, force=args.force, runs_dir=runs_dir,
                        sweep=args.sweep, sweep_size=args.sweep_size, log=lambda s: print(s, flush=True))
    machine = machine_info()
    for data in args.data:
        mine = [r for r in results if r["table"] == data]
        R.write_invocation(out, data, {
            "command": R.invocation(), "started": started, "finished": R.utc_now(),
            "wall_s": round(time.time() - t0, 1), "jobs": args.jobs, "runs": len(mine),
            "sweeps": sorted({r["sweep"]["name"] for r in mine if "sweep" in r}) if args.sweep else None,
            "failed": sum(r["status"] != "ok" for r in mine), "machine": machine})
    failed = [r for r in results if r["status"] != "ok"]
    print(f"done in {time.time() - t0:.0f} s: {len(results) - len(failed)} ok, {len(failed)} failed"
          f"{' (' + ', '.join(r['job'] for r in failed) + ')' if failed else ''}. "
          f"Table: python -m benchmarks.results_report {out}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
