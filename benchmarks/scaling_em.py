"""EM seconds per iteration of GaussianMixture.fit on 1, 2, 4 GPUs for data streamed from host memory.

The script starts the processes itself (torch.multiprocessing, NCCL on CUDA, gloo on the CPU),
one run per entry of ``--gpus``; every rank generates only its shard of one global data set
(rows from a Gaussian mixture, drawn in fixed global blocks with per-block seeds, so the data do
not depend on the number of ranks), in pinned host memory, and fits it with
``GaussianMixture.fit``, which all-reduces the E-step statistics. In ``stream`` mode (default)
the data stay on the host and every EM pass copies them to the GPU block by block (pinned,
non_blocking, one block ahead on a side stream); ``resident`` copies each shard to its GPU once.

Reported per run: EM seconds/iteration (median over iterations 2..max_iter, measured on rank 0
between iteration callbacks; all ranks are in step through the all-reduce), the time to the
first iteration (data summary, k-means++ and Lloyd steps), the host->GPU rate one rank reaches,
the ratio to the 1-GPU run of the same invocation, and the final lower bound (the same on every
N up to rounding: the fits are the same EM).

    # target case: N = 10^8, D = 32, float32 (12.8 GB on the host), K = 16 full covariances
    PYTHONPATH=src python -m benchmarks.scaling_em --gpus 1,2,4 --json scaling_em.json
    # a quick check of the plumbing on the CPU (gloo)
    PYTHONPATH=src python -m benchmarks.scaling_em --device cpu --n 20000 --d 8 --k 4 --gpus 1,2 --iters 5
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import socket
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
import torch.multiprocessing as mp

from benchmarks._common import machine_info, write_json

GEN_BLOCK = 1 << 20  # rows per generation block (global; each block has its own seed)


def make_shard(rows: range, d: int, k_true: int, seed: int, device: torch.device) -> torch.Tensor:
    """This rank's rows of the global data set, float32 on the host (pinned when CUDA is used)."""
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(k_true, d, generator=g) * 4.0
    scales = torch.rand(k_true, d, generator=g) + 0.5
    gen_dev = device if device.type == "cuda" else torch.device("cpu")
    means, scales = means.to(gen_dev), scales.to(gen_dev)
    out = torch.empty((len(rows), d), dtype=torch.float32, pin_memory=device.type == "cuda")
    first, last = rows.start // GEN_BLOCK, (rows.stop - 1) // GEN_BLOCK
    for b in range(first, last + 1):
        gb = torch.Generator(device=gen_dev).manual_seed(seed * 1_000_003 + b)
        z = torch.randint(k_true, (GEN_BLOCK,), generator=gb, device=gen_dev)
        x = means[z] + torch.randn(GEN_BLOCK, d, generator=gb, device=gen_dev) * scales[z]
        lo, hi = max(rows.start, b * GEN_BLOCK), min(rows.stop, (b + 1) * GEN_BLOCK)
        out[lo - rows.start : hi - rows.start].copy_(x[lo - b * GEN_BLOCK : hi - b * GEN_BLOCK])
    return out


def stream_check(X: torch.Tensor, args, device) -> dict:
    """One process, a slice of the shard: streamed (pinned tensor / pageable numpy) fits == resident fit.

    Exercises the pinned, prefetched copy path on the GPU with many small blocks; the three fits
    read the same rows in the same blocks, so they should agree to float32 rounding.
    """
    from gmmgan import GaussianMixture
    from gmmgan import distributed as gdist
    from gmmgan.mixture import _data_source

    rows = X[: min(len(X), 1 << 21)]
    fits = {}
    saved = _data_source.DEVICE_MEMORY_FRACTION
    try:
        for name, data, fraction in [("resident", rows, 1.0), ("pinned", rows, 0.0), ("numpy", rows.numpy(), 0.0)]:
            _data_source.DEVICE_MEMORY_FRACTION = fraction
            with gdist.local_only(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                gm = GaussianMixture(args.k, covariance_type=args.cov, max_iter=3, tol=1e-300, random_state=0,
                                     dtype="float32", device=device, chunk_size=50_000).fit(data)
            fits[name] = (torch.as_tensor(gm.means_).cpu(), gm.lower_bound_)
    finally:
        _data_source.DEVICE_MEMORY_FRACTION = saved
    ref_means, ref_bound = fits["resident"]
    diff = max(float((m - ref_means).abs().max()) for m, _ in fits.values())
    bound_diff = max(abs(b - ref_bound) for _, b in fits.values())
    return {"max_abs_mean_diff": diff, "max_bound_diff": bound_diff, "ok": diff < 1e-3 and bound_diff < 1e-4}


def worker(rank: int, world: int, port: int, args, result_path: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(world))
    from gmmgan import GaussianMixture
    from gmmgan import distributed as gdist
    from gmmgan.mixture import _data_source

    if args.device == "cpu":
        torch.set_num_threads(max(1, args.threads // world))
    device = gdist.init_from_env(args.device)
    if args.mode == "stream":
        _data_source.DEVICE_MEMORY_FRACTION = 0.0  # even data that would fit on the GPU is streamed
    try:
        rows = gdist.shard_range(args.n)
        t0 = time.perf_counter()
        X = make_shard(rows, args.d, args.k_true, args.seed, device)
        gdist.barrier()
        gen_s = time.perf_counter() - t0
        check = stream_check(X, args, device) if args.check and gdist.is_main() else None
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        gdist.barrier()
        stamps = []

        def callback(info):
            stamps.append(time.perf_counter())

        gm = GaussianMixture(args.k, covariance_type=args.cov, max_iter=args.iters, tol=1e-300, random_state=0,
                             dtype="float32", device=device, callback=callback, chunk_size=args.chunk_size)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        gdist.barrier()
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tol=1e-300: ConvergenceWarning by design
            gm.fit(X)
        per_iter = [b - a for a, b in itertools.pairwise(stamps)]
        s_iter = statistics.median(per_iter) if per_iter else float("nan")
        result = {
            "gpus": world, "rank_rows": len(rows), "gen_s": gen_s, "s_per_iter": s_iter,
            "first_iter_s": stamps[0] - start if stamps else float("nan"),
            "init_s": (stamps[0] - start - s_iter) if stamps else float("nan"),
            "fit_s": time.perf_counter() - start, "n_iter": gm.n_iter_, "lower_bound": gm.lower_bound_,
            "host_to_device_GBps": (len(rows) * args.d * 4 / s_iter / 1e9) if args.mode == "stream" else None,
            "peak_gpu_GB": torch.cuda.max_memory_allocated(device) / 1e9 if device.type == "cuda" else None,
            "stream_check": check,
        }
        if gdist.is_main():
            Path(result_path).write_text(json.dumps(result))
    finally:
        gdist.shutdown()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gpus", default="1,2,4", help="numbers of processes (GPUs) to run, in order")
    p.add_argument("--n", type=int, default=10**8, help="rows over all ranks")
    p.add_argument("--d", type=int, default=32)
    p.add_argument("--k", type=int, default=16, help="components fitted")
    p.add_argument("--k-true", type=int, default=16, help="components the data are drawn from")
    p.add_argument("--cov", default="full", choices=["full", "tied", "diag", "spherical"])
    p.add_argument("--iters", type=int, default=10, help="EM iterations (tol=1e-300: all of them run)")
    p.add_argument("--mode", default="stream", choices=["stream", "resident"])
    p.add_argument("--chunk-size", type=int, default=None, help="rows per E-step block (default: gmmgan's)")
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="CPU threads in total (cpu mode)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-check", dest="check", action="store_false",
                   help="skip the streamed == resident check on 2M rows of rank 0's shard")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    counts = [int(g) for g in args.gpus.split(",")]
    if args.device == "cuda":
        if not torch.cuda.is_available():
            p.error("--device cuda but CUDA is not available; use --device cpu for a smoke run.")
        if max(counts) > torch.cuda.device_count():
            p.error(f"--gpus asks for {max(counts)} GPUs but {torch.cuda.device_count()} are visible.")
    machine = machine_info(cuda=args.device == "cuda")
    gpu = machine.get("gpu", "cpu")
    gb = args.n * args.d * 4 / 1e9
    print(f"# {gpu} x {torch.cuda.device_count() if args.device == 'cuda' else 0}, torch {torch.__version__}; "
          f"N={args.n:,} D={args.d} ({gb:.1f} GB float32), K={args.k} {args.cov}, {args.mode}, {args.iters} iterations",
          flush=True)
    out = {"device": gpu, "torch": torch.__version__, "machine": machine, "args": vars(args), "rows": []}
    base = None
    for world in counts:
        with tempfile.TemporaryDirectory() as tmp:
            path = str(Path(tmp) / "result.json")
            mp.start_processes(worker, args=(world, _free_port(), args, path), nprocs=world, join=True,
                               start_method="spawn")
            r = json.loads(Path(path).read_text())
        base = base or r["s_per_iter"]
        r["speedup_vs_first"] = base / r["s_per_iter"]
        rate = f", {r['host_to_device_GBps']:.1f} GB/s host->GPU per rank" if args.device == "cuda" and r["host_to_device_GBps"] else ""
        if r["stream_check"] is not None:
            c = r["stream_check"]
            print(f"  streamed == resident on 2M rows: {c['ok']} (max |means diff| {c['max_abs_mean_diff']:.2e}, "
                  f"lower bound diff {c['max_bound_diff']:.2e})", flush=True)
        unit = "GPU(s)" if args.device == "cuda" else "process(es)"
        print(f"{world} {unit}: {r['s_per_iter']:.3f} s/iteration ({r['speedup_vs_first']:.2f}x vs {counts[0]}), "
              f"first iteration after {r['first_iter_s']:.1f} s (init ~{r['init_s']:.1f} s), data generated in "
              f"{r['gen_s']:.1f} s{rate}, lower bound {r['lower_bound']:.6f}", flush=True)
        out["rows"].append(r)
    if args.json:
        write_json(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
