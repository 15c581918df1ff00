"""A seed sweep against the same seeds as single runs, one after the other: whole wall times, same machine.

    PYTHONPATH=src python -m benchmarks.sweep_speed --config configs/grid_fitted_gmm.yaml --seeds 0-9 \\
        --set schedule.total_kimg=20 device=cpu --json sweep_speed.json

Both sides run in this process with the same config and overrides, so they share the start-up of
Python and torch; each single run still loads its data, fits its prior and warm-starts on its own,
as the sweep does per seed. Prints both wall times, their ratio and each side's final 2-D metrics
(mean over seeds) when the data are ring or grid. For the GPU training-throughput comparison on the
Stacked-MNIST protocol, see benchmarks/train_speed.py (``--variants graph-bf16,sweep-graph-bf16``).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks._common import machine_info, write_json


def _mean(rows, key):
    values = [r[key] for r in rows if r]
    return statistics.mean(values) if values else None


def main(argv=None) -> int:
    from gmmgan._seeds import parse_seeds
    from gmmgan.gan.config import load_config
    from gmmgan.gan.training_loop import train

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True)
    p.add_argument("--seeds", default="0-9")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides for both sides")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    seeds = parse_seeds(args.seeds)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        singles = [train(load_config(args.config, [*args.set, f"seed={s}"]), run_dir=Path(tmp) / f"single{s}",
                         quiet=True)["metrics"] for s in seeds]
        single_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        sweep = train(load_config(args.config, [*args.set, f"seeds={args.seeds}"]), run_dir=Path(tmp) / "sweep",
                      quiet=True)
        sweep_s = time.perf_counter() - t0
    swept = [r["metrics"] for r in sweep["runs"]]
    out = {"config": args.config, "overrides": args.set, "seeds": seeds, "machine": machine_info(),
           "sweep_mode": sweep["sweep_mode"], "single_runs_s": single_s, "sweep_s": sweep_s,
           "speedup": single_s / sweep_s,
           "single_metrics": singles, "sweep_metrics": swept}
    print(f"{len(seeds)} single runs: {single_s:.1f} s; one sweep (sweep_mode={sweep['sweep_mode']}): "
          f"{sweep_s:.1f} s; {single_s / sweep_s:.2f}x")
    for key in ("modes", "hq", "kl"):
        a, b = _mean(singles, key), _mean(swept, key)
        if a is not None:
            print(f"  {key}: single runs {a:.4g}, sweep {b:.4g} (mean over seeds)")
    if args.json:
        write_json(args.json, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
