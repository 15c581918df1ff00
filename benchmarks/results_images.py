"""Results tables (2)-(5) of docs/protocols.md, 'Targets': the image benchmarks, trained on GPUs in parallel.

Tables (``--tables``, comma-separated; default all):

- ``stacked``: Stacked MNIST, fitted-GMM vs Gaussian prior, with a full-size D and with D at 1/4
  of G; modes (of 1,000) and KL on 26,000 samples (``gmmgan eval``).
- ``mnist500``: MNIST with 500 training images, fitted-GMM vs Gaussian prior, same budget;
  FID / KID / precision / recall / density / coverage on 10,000 samples (``gmmgan eval``), beside
  real-test vs real-train.
- ``full``: MNIST and Fashion-MNIST, all 60,000 training images, the same metrics.
- ``cluster``: MNIST, clustering accuracy and NMI of per-component generation
  (``gmmgan eval --metrics clustering``), beside the fitted GMM's own clustering of the real test
  set (``python -m benchmarks.gmm_real_clustering``).

Every (config, seed) is one job: its training run, then its evaluation. The seeds of one config
train together as one seed sweep (``gmmgan train --config C --seeds 0-2``: one process; on one GPU
each seed's captured step is a branch of one CUDA graph, 10 Stacked-MNIST seeds in 2.6x less time
than 10 single runs on an H200, docs/benchmarks.md), then each seed's folder in the sweep is
evaluated in turn (``gmmgan eval``, one process per command), all in processes that see one GPU
(``CUDA_VISIBLE_DEVICES``); a GPU runs ``--per-gpu`` sweeps at a time. ``--sweep-size N`` cuts a
config's seeds into sweeps of at most N (to spread one config over several GPUs, or to fit in GPU
memory); ``--no-sweep`` trains every seed in its own process. One JSON per job (seed) goes to
``OUT/json/<table>/``; ``python -m benchmarks.results_report OUT`` renders the tables. Data and the
feature classifiers are checked before anything trains.

Examples (repository root)::

    PYTHONPATH=src python -m benchmarks.results_images --gpus 0,1,2,3 --data-root /data \\
        --cache-dir /data/classifiers --out results --tables stacked --seeds 0
    # shorter schedule (the tables then say so), e.g. 640 kimg = 5 Stacked-MNIST epochs
    PYTHONPATH=src python -m benchmarks.results_images --gpus 0,1,2,3 --data-root /data \\
        --cache-dir /data/classifiers --out results --kimg 640
    # the pipeline on CPU, tiny: 0.5 kimg, 500 evaluation samples
    PYTHONPATH=src python -m benchmarks.results_images --device cpu --jobs 2 --data-root ../shared/data \\
        --out /tmp/r --tables mnist500 --kimg 0.5 -n 500

Runs already done in ``--out`` are skipped (``--force`` redoes them) and the sweeps train only the
seeds still to do, so a table can be finished over several invocations. ``--dry-run`` prints every
command.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from benchmarks import _results as R
from benchmarks._common import machine_info

# table -> the configs/<name>.yaml of its rows (same nets and budget within a table).
TABLES = {
    "stacked": ["stacked_mnist_fitted_gmm", "stacked_mnist_gaussian",
                "stacked_mnist_dquarter_fitted_gmm", "stacked_mnist_dquarter_gaussian"],
    "mnist500": ["mnist500_fitted_gmm", "mnist500_gaussian"],
    "full": ["mnist_fitted_gmm", "mnist_gaussian", "fashion_mnist_fitted_gmm", "fashion_mnist_gaussian"],
    "cluster": ["mnist_cluster_fitted_gmm"],
}
# gmmgan eval's -n: samples per seed (for 'cluster': in all, split evenly over the components).
EVAL_SAMPLES = {"stacked": 26_000, "mnist500": 10_000, "full": 10_000, "cluster": 10_000}
IMAGE_FIELDS = ("fid", "kid_mean", "precision", "recall", "density", "coverage")


def _datasets(table: str, rows) -> set[str]:
    if table in ("stacked", "mnist500", "cluster"):
        return {"mnist"}
    return {"fashion-mnist" if name.startswith("fashion") else "mnist" for name in rows}


def preflight(tables: list[str], data_root: Path, cache_dir: Path | None) -> None:
    """Every data file and classifier the tables need exists: fail before any GPU time is spent."""
    from gmmgan.data.mnist import find_raw_files
    from gmmgan.metrics import default_cache_dir

    folder = cache_dir or default_cache_dir()
    needed = set().union(*(_datasets(t, TABLES[t]) for t in tables))
    for ds in sorted(needed):
        for split in ("train", "test"):
            find_raw_files(data_root, split, ds)  # raises FileNotFoundError naming what is missing
        if not (folder / f"{ds}.safetensors").is_file():
            raise FileNotFoundError(
                f"no {ds} feature classifier in {folder} ({ds}.safetensors and {ds}.json); copy the cached ones "
                f"there (--cache-dir) or train one: PYTHONPATH=src python -m gmmgan eval train-classifier "
                f"--dataset {ds} --data-root {data_root} --cache-dir {folder} --device cuda")


def _collect(table: str):
    def collect(run_dir: Path) -> dict:
        e = R.read_json(run_dir / "eval.json")
        if table == "stacked":
            return {"modes": e["modes"]["mean"], "kl": e["reverse_kl"]["mean"], "kl_floor": e.get("kl_floor")}
        out = {}
        if "metrics" in e and "model" in e["metrics"]:
            m = e["metrics"]
            out.update({k: m["model"][k] for k in IMAGE_FIELDS + ("n_fake",)})
            out.update({f"ref_{k}": m["reference"][k] for k in IMAGE_FIELDS + ("n_fake",)})
        if "clustering" in e:
            out.update(accuracy=e["clustering"]["accuracy"]["mean"], nmi=e["clustering"]["nmi"]["mean"],
                       per_component=e["clustering"]["n_per_component"])
        ref = run_dir / "gmm_real_clustering.json"
        if ref.is_file():
            g = R.read_json(ref)
            out.update(gmm_accuracy=g["accuracy"], gmm_nmi=g["nmi"])
        out["feature_network"] = e.get("metrics", {}).get("feature_network") or e.get("feature_network")
        return out
    return collect


def make_jobs(args, tables: list[str]) -> list[R.Job]:
    jobs = []
    cache = ["--cache-dir", str(args.cache_dir)] if args.cache_dir else []
    for table in tables:
        n = args.n_samples or EVAL_SAMPLES[table]
        for row in TABLES[table]:
            cfg = R.CONFIGS / f"{row}.yaml"
            if not cfg.is_file():
                raise FileNotFoundError(f"config '{cfg}' of table {table!r} does not exist; run from a full checkout.")
            extra = ([f"schedule.total_kimg={args.kimg:g}"] if args.kimg is not None else []) + args.overrides
            overrides = [f"device={args.device}", f"data.root={args.data_root}", *extra]
            if args.device == "cpu":
                overrides.append("cpu_threads=1")
            for seed in args.seeds:
                def evals(run_dir: Path, seed=seed, n=n, table=table) -> list[list[str]]:
                    common = ["--device", args.device, "--data-root", str(args.data_root)]
                    steps = [[sys.executable, "-m", "gmmgan", "eval", str(run_dir), "-n", str(n), "--seeds", str(seed),
                              "--no-plots", *common, *cache, *(["--metrics", "clustering"] if table == "cluster" else [])]]
                    if table == "cluster":
                        steps.append([sys.executable, "-m", "benchmarks.gmm_real_clustering", str(run_dir), *common])
                    return steps

                info = {"row": row, "config": os.path.relpath(cfg, R.ROOT), "seed": seed, "overrides": extra,
                        "protocol_kimg": R.protocol_kimg(cfg),
                        "budget_kimg": args.kimg if args.kimg is not None else R.protocol_kimg(cfg),
                        "eval_samples": n, "device": args.device}
                jobs.append(R.Job(table=table, name=f"{row}-s{seed}", group=row, config=cfg, seed=seed,
                                  overrides=overrides, evals=evals, collect=_collect(table), info=info))
    return jobs


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tables", default=",".join(TABLES), help=f"comma-separated subset of {','.join(TABLES)} (default: all)")
    p.add_argument("--data-root", required=True, help="folder holding MNIST/raw and FashionMNIST/raw")
    p.add_argument("--cache-dir", default=None, help="folder holding the feature classifiers (mnist.safetensors, "
                   "mnist.json, fashion-mnist.*); default: $GMMGAN_CACHE/classifiers, else ~/.cache/gmmgan/classifiers")
    p.add_argument("--out", default="results", help="results folder (default: ./results)")
    p.add_argument("--seeds", default="0", help="training seeds, e.g. 0 (default), 0-2 or 0,1")
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda", help="cuda (default) or cpu (to try it out)")
    p.add_argument("--gpus", default="0", help="GPU ids for --device cuda, e.g. 0,1,2,3 (default: 0)")
    p.add_argument("--per-gpu", type=int, default=1,
                   help="sweeps (with --no-sweep: jobs) sharing one GPU at a time (default: 1)")
    p.add_argument("--jobs", type=int, default=1,
                   help="--device cpu: sweeps (with --no-sweep: jobs) at a time, one thread each (default: 1)")
    p.add_argument("--kimg", type=float, default=None, help="override schedule.total_kimg of every run "
                   "(the tables then report this budget next to the protocol's)")
    p.add_argument("-n", "--n-samples", type=int, default=None,
                   help="evaluation samples per seed (default: the protocol's: 26,000 Stacked MNIST, 10,000 otherwise)")
    R.add_run_options(p, "job")
    return p


def main(argv=None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    tables = [t.strip() for t in args.tables.split(",") if t.strip()]
    if not tables or any(t not in TABLES for t in tables):
        p.error(f"--tables must be a comma-separated subset of {','.join(TABLES)}, got {args.tables!r}")
    try:
        args.seeds = R.parse_seeds(args.seeds)
        gpus = [int(g) for g in args.gpus.split(",") if g.strip()] if args.device == "cuda" else []
    except ValueError as e:
        p.error(str(e) if "seed" in str(e) else f"--gpus takes comma-separated integers, got {args.gpus!r}")
    if args.device == "cuda" and not gpus:
        p.error(f"--gpus {args.gpus!r} names no GPU; give GPU ids such as 0 or 0,1,2,3")
    if min(args.per_gpu, args.jobs) < 1 or (args.kimg is not None and args.kimg <= 0) or (args.n_samples or 1) < 1:
        p.error("--per-gpu, --jobs, --kimg and -n must be positive")
    if (bad := R.check_run_options(args)) is not None:
        p.error(bad)
    args.data_root = Path(args.data_root).expanduser().resolve()
    args.cache_dir = Path(args.cache_dir).expanduser().resolve() if args.cache_dir else None
    out = Path(args.out).resolve()
    runs_dir = Path(args.runs_dir).resolve() if args.runs_dir else None
    if args.dry_run:
        R.dry_run(make_jobs(args, tables), runs_dir or out / "runs", sweep=args.sweep, sweep_size=args.sweep_size)
        return 0
    try:
        preflight(tables, args.data_root, args.cache_dir)
    except (FileNotFoundError, ValueError) as e:
        p.error(str(e))
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available() or torch.cuda.device_count() <= max(gpus, default=0):
            p.error(f"--gpus {args.gpus} but this machine has {torch.cuda.device_count()} usable GPU(s); "
                    "use fewer GPUs, or --device cpu to try the pipeline")
        threads = max(1, (os.cpu_count() or 1) // (len(gpus) * args.per_gpu))
        slots = [(f"gpu{g}.{i}", {**R.base_env(threads), "CUDA_VISIBLE_DEVICES": str(g)})
                 for i in range(args.per_gpu) for g in gpus]
    else:
        slots = [(f"cpu{i}", {**R.base_env(1), "CUDA_VISIBLE_DEVICES": ""}) for i in range(args.jobs)]
    jobs = make_jobs(args, tables)
    started, t0 = R.utc_now(), time.time()
    how = f"as {len(R.make_sweeps(jobs, args.sweep_size))} sweep(s)" if args.sweep else "one process each"
    print(f"{len(jobs)} jobs ({', '.join(tables)}) {how} on {len(slots)} slot(s); results in {out}", flush=True)
    results = R.run_all(jobs, out, slots, timeout=args.timeout, force=args.force, runs_dir=runs_dir,
                        sweep=args.sweep, sweep_size=args.sweep_size, log=lambda s: print(s, flush=True))
    machine = machine_info(gpu_ids=gpus)
    for table in tables:
        mine = [r for r in results if r["table"] == table]
        R.write_invocation(out, table, {
            "command": R.invocation(), "started": started, "finished": R.utc_now(),
            "wall_s": round(time.time() - t0, 1), "slots": [s for s, _ in slots], "runs": len(mine),
            "sweeps": sorted({r["sweep"]["name"] for r in mine if "sweep" in r}) if args.sweep else None,
            "failed": sum(r["status"] != "ok" for r in mine), "machine": machine})
    failed = [r for r in results if r["status"] != "ok"]
    print(f"done in {time.time() - t0:.0f} s: {len(results) - len(failed)} ok, {len(failed)} failed. "
          f"Tables: python -m benchmarks.results_report {out}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
