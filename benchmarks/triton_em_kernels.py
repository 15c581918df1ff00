"""One EM pass (E-step + sufficient statistics over all rows): torch code vs the Triton kernels.

For each shape: the time of one pass of the torch per-block path (as ``GaussianMixture._e_step``
runs it, with its default chunk size) and of ``_triton_em``'s ``em_block`` for each tl.dot
precision pair (E-step, statistics), the kernels' E-step alone, the error against float64 on
the first 65536 rows, and the fraction of the machine's ceilings (measured here: a device copy
and a TF32 matrix product through torch; datasheet: fp32 67, TF32 495 TFLOP/s, HBM 4.8 TB/s).

    PYTHONPATH=src python benchmarks/triton_em_kernels.py --shapes d,e,f,g --json out.json
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time

import torch

from gmmgan.mixture import _triton_em
from gmmgan.mixture._covariance import COVARIANCES
from gmmgan.mixture._data_source import default_chunk_size
from gmmgan.mixture._em_state import log_normalize_

SHAPES = {  # name: (N, D, K, covariance type), the issue's
    "d": (1_000_000, 32, 64, "diag"),
    "e": (1_000_000, 64, 64, "full"),
    "f": (1_000_000, 128, 1024, "diag"),
    "g": (1_000_000, 128, 256, "full"),
    "s": (1_000_000, 32, 64, "spherical"),
}
VARIANTS = {
    "diag": [("tf32x3", "tf32x3"), ("tf32x3", "tf32r"), ("tf32r", "tf32r")],
    "spherical": [("tf32x3", "tf32x3")],
    "full": [("tf32x3", "tf32r"), ("tf32x3", "tf32x3"), ("tf32r", "tf32r")],
}


def _sweep_configs(kernel, d):
    """Launch configurations tried by --sweep (OVERRIDES entries), small on purpose."""
    big = d >= 128
    if kernel == "diag_estep":
        c = [(64, 32, 8, 2), (64, 32, 4, 2), (128, 32, 8, 1), (64, 64, 8, 1)] if big else \
            [(128, 64, 4, 2), (128, 64, 8, 2), (256, 64, 8, 2), (64, 64, 4, 2)]
        return [dict(BLOCK_N=a, BLOCK_K=b, num_warps=w, num_stages=st) for a, b, w, st in c]
    if kernel == "diag_stats":
        c = [(64, 32, 8), (128, 32, 8), (64, 64, 8), (256, 32, 8)] if big else \
            [(64, 64, 4), (128, 64, 4), (128, 64, 8), (256, 64, 8)]
        return [dict(BLOCK_N=a, BLOCK_K=b, num_warps=w) for a, b, w in c]
    if kernel == "full_estep":
        c = [(64, 8), (128, 8)] if big else [(128, 8), (64, 4), (256, 8)]
        return [dict(BLOCK_N=a, num_warps=w, FOLD=f) for f in (False, True) for a, w in c]
    c = [(1, 64, 8), (1, 128, 8), (2, 32, 8), (2, 64, 8)] if big else \
        [(1, 64, 8), (1, 128, 8), (1, 256, 8), (2, 64, 8), (4, 32, 8), (4, 64, 8)]
    return [dict(G=g, BLOCK_N=a, num_warps=w) for g, a, w in c]


def sweep_shape(name, args, dev):
    """Each kernel alone over one chunk, for each configuration, scaled to N rows."""
    n, d, k, cov_type = SHAPES[name]
    n = args.n or n
    gen = torch.Generator().manual_seed(0)
    weights, means, prec_chol = _params(cov_type, k, d, gen, dev)
    log_w = weights.log()
    comp = torch.randint(0, k, (n,), generator=gen).to(dev)
    x = means[comp] + torch.randn(n, d, device=dev)
    kern = _triton_em.resolve("triton", dev, torch.float32, cov_type, d)
    chunk = min(n, _triton_em.default_chunk_size(k, d))
    xc = x[:chunk]
    scale = n / chunk
    sub = slice(0, min(n, 65536))
    ref = _reference(cov_type, x[sub].double(), means.double(), prec_chol.double(), log_w.double())
    prep = kern._prepare(means, prec_chol, log_w)
    kind = "full" if cov_type == "full" else "diag"
    rows = []
    for part in ("estep", "stats"):
        kname = f"{kind}_{part}"
        for cfg in _sweep_configs(kname, d):
            _triton_em.OVERRIDES.clear()
            _triton_em.OVERRIDES[kname] = cfg
            try:
                if part == "estep":
                    t = _time(lambda: kern._estep(xc, *prep, True), args.reps) * scale
                else:
                    w, lse = kern._estep(xc, *prep, True)
                    if kind == "full":
                        t = _time(lambda: kern._stats(xc, prep[0], w, lse), args.reps) * scale  # noqa: B023 - timed at once, in this iteration
                    else:
                        t = _time(lambda: kern._stats(xc, w, lse, k), args.reps) * scale  # noqa: B023 - timed at once, in this iteration
                lpn, nk, sx, stat = kern.em_block(x[sub].contiguous(), means, prec_chol, log_w)
                err = max(_rel(lpn, ref[0]), _rel(nk, ref[1]), _rel(sx, ref[2]), _rel(stat, ref[3]))
                row = dict(shape=name, kernel=kname, cfg=cfg, ms=t * 1e3, err=err)
            except Exception as e:  # noqa: BLE001 - a configuration that does not fit is a result too
                row = dict(shape=name, kernel=kname, cfg=cfg, error=f"{type(e).__name__}: {str(e)[:120]}")
            rows.append(row)
            print(f"sweep {name} {kname:<11} {cfg}  " + (f"{row['ms']:.3f} ms  max err {row['err']:.1e}" if "ms" in row else row["error"]), flush=True)
    _triton_em.OVERRIDES.clear()
    return rows
PEAK = {"fp32": 67e12, "tf32": 495e12, "hbm": 4.8e12}


def _time(fn, reps: int) -> float:
    fn()
    torch.cuda.synchronize()
    out = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        out.append(a.elapsed_time(b) / 1e3)
    return statistics.median(out)


def _params(cov_type, k, d, gen, dev):
    means = torch.randn(k, d, generator=gen, dtype=torch.float64) * (3.0 / math.sqrt(d))
    weights = torch.full((k,), 1.0 / k, dtype=torch.float64)
    if cov_type == "full":
        a = torch.randn(k, d, d, generator=gen, dtype=torch.float64) / math.sqrt(d)
        prec_chol = COVARIANCES["full"].precision_cholesky(0.5 * a @ a.mT + 0.5 * torch.eye(d, dtype=torch.float64), 0.0)
    elif cov_type == "diag":
        prec_chol = (torch.rand(k, d, generator=gen, dtype=torch.float64) + 0.5).rsqrt()
    else:
        prec_chol = (torch.rand(k, generator=gen, dtype=torch.float64) + 0.5).rsqrt()
    return [t.float().to(dev) for t in (weights, means, prec_chol)]


def torch_pass(cov, x, chunk, means, prec_chol, log_w):
    """The torch path's E-step + statistics over all rows (GaussianMixture._e_step's loop body)."""
    f64 = torch.float64
    nk = sx = stat = None
    total = torch.zeros((), dtype=f64, device=x.device)
    for start in range(0, x.shape[0], chunk):
        xb = x[start : start + chunk]
        log_prob, cache = cov.e_step_block(xb, means, prec_chol)
        lpn, resp = log_normalize_(log_prob.add_(log_w))
        total += lpn.sum(dtype=f64)
        a, b = resp.sum(0, dtype=f64), (resp.mT @ xb).to(f64)
        s = cov.accumulate_em(xb, resp, means, prec_chol, cache).to(f64)
        nk, sx, stat = (a, b, s) if nk is None else (nk + a, sx + b, stat + s)
    return total, nk, sx, cov.finalize_em(stat, prec_chol)


def triton_pass(kern, x, chunk, means, prec_chol, log_w):
    f64 = torch.float64
    nk = sx = stat = None
    total = torch.zeros((), dtype=f64, device=x.device)
    for start in range(0, x.shape[0], chunk):
        lpn, a, b, s = kern.em_block(x[start : start + chunk], means, prec_chol, log_w)
        total += lpn.sum(dtype=f64)
        nk, sx, stat = (a, b, s) if nk is None else (nk + a, sx + b, stat + s)
    return total, nk, sx, stat


def _rel(a, b):
    return float((a.double() - b.double()).norm() / b.double().norm())


def ceilings(dev) -> dict:
    src = torch.empty(1 << 30, dtype=torch.uint8, device=dev)
    dst = torch.empty_like(src)
    t = _time(lambda: dst.copy_(src), 10)
    a = torch.randn(8192, 8192, device=dev)
    b = torch.randn(8192, 8192, device=dev)
    prev = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = True
    tm = _time(lambda: a @ b, 10)
    torch.backends.cuda.matmul.allow_tf32 = False
    tf = _time(lambda: a @ b, 5)
    torch.backends.cuda.matmul.allow_tf32 = prev
    return {"copy_TBps": 2 * src.numel() / t / 1e12, "tf32_mm_TFLOPs": 2 * 8192**3 / tm / 1e12,
            "fp32_mm_TFLOPs": 2 * 8192**3 / tf / 1e12}


def run_shape(name, args, dev):
    n, d, k, cov_type = SHAPES[name]
    n = args.n or n
    gen = torch.Generator().manual_seed(0)
    weights, means, prec_chol = _params(cov_type, k, d, gen, dev)
    log_w = weights.log()
    comp = torch.randint(0, k, (n,), generator=gen).to(dev)
    x = means[comp] + torch.randn(n, d, device=dev)
    cov = COVARIANCES[cov_type]
    kern = _triton_em.resolve("triton", dev, torch.float32, cov_type, d)
    tf_chunk = _triton_em.default_chunk_size(k, d)
    # Work counted once per pass, as TF32 products (x3 does three of each): E-step + statistics.
    flops = (8 * n * k * d) if cov_type != "full" else (4 * n * k * d * d)
    min_bytes = 4 * n * d  # every row read once; the kernels also write/read (rows, K) log-probs
    kern_bytes = 4 * n * d * 2 + 4 * n * k * 2
    sub = slice(0, min(n, 65536))
    x64 = x[sub].double()
    ref = _reference(cov_type, x64, means.double(), prec_chol.double(), log_w.double())
    rows = []
    if not args.skip_torch:
        t = _time(lambda: torch_pass(cov, x, default_chunk_size(k, d, dev, 4, cov_type), means, prec_chol, log_w), args.torch_reps)
        rows.append(dict(shape=name, n=n, d=d, k=k, cov=cov_type, path="torch", ms=t * 1e3,
                         tf32_frac=flops / t / PEAK["tf32"], fp32_frac=flops / t / PEAK["fp32"]))
        print(_fmt(rows[-1]), flush=True)
    saved = dict(_triton_em.PRECISION)
    try:
        for prec in VARIANTS[cov_type]:
            _triton_em.PRECISION[cov_type] = prec
            t = _time(lambda: triton_pass(kern, x, tf_chunk, means, prec_chol, log_w), args.reps)
            prep = kern._prepare(means, prec_chol, log_w)
            te = _time(lambda: kern._estep(x[:tf_chunk], *prep, True), args.reps) * (n / min(n, tf_chunk))  # noqa: B023 - timed at once, in this iteration
            lpn, nk, sx, stat = kern.em_block(x[sub].contiguous(), means, prec_chol, log_w)
            err = dict(lpn=_rel(lpn, ref[0]), nk=_rel(nk, ref[1]), sx=_rel(sx, ref[2]), stat=_rel(stat, ref[3]))
            rows.append(dict(shape=name, n=n, d=d, k=k, cov=cov_type, path="triton", precision="/".join(prec),
                             ms=t * 1e3, estep_ms=te * 1e3, tf32_frac=flops / t / PEAK["tf32"],
                             fp32_frac=flops / t / PEAK["fp32"], hbm_frac=kern_bytes / t / PEAK["hbm"],
                             min_bytes_frac=min_bytes / t / PEAK["hbm"], flops=flops, kern_bytes=kern_bytes, err=err))
            print(_fmt(rows[-1]), flush=True)
    finally:
        _triton_em.PRECISION.update(saved)
    return rows


def _reference(cov_type, x, means, prec_chol, log_w):
    cov = COVARIANCES[cov_type]
    log_prob, _ = cov.e_step_block(x, means, prec_chol)
    lpn, resp = log_normalize_(log_prob + log_w)
    return lpn, resp.sum(0), resp.mT @ x, cov.accumulate(x, resp, means)


def _fmt(r):
    s = f"{r['shape']} N={r['n']} D={r['d']} K={r['k']} {r['cov']:<9} {r['path']:<6} {r.get('precision', ''):<13} {r['ms']:9.3f} ms"
    if "estep_ms" in r:
        s += f" (E-step {r['estep_ms']:.3f})  err " + " ".join(f"{a}={e:.1e}" for a, e in r["err"].items())
    return s + f"  TF32 {100 * r['tf32_frac']:.1f}%  fp32 {100 * r['fp32_frac']:.0f}%"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shapes", default="d,e,f,g")
    p.add_argument("--n", type=int, default=None, help="override N")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--torch-reps", type=int, default=2)
    p.add_argument("--skip-torch", action="store_true")
    p.add_argument("--sweep", action="store_true", help="time each kernel's launch configurations instead")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    dev = torch.device("cuda")
    import triton

    info = dict(gpu=torch.cuda.get_device_name(dev), torch=torch.__version__, triton=triton.__version__,
                command="python benchmarks/triton_em_kernels.py " + " ".join(sys.argv[1:] if argv is None else argv),
                date=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    info["ceilings"] = ceilings(dev)
    print(json.dumps(info), flush=True)
    rows = []
    for name in args.shapes.split(","):
        rows += (sweep_shape if args.sweep else run_shape)(name.strip(), args, dev)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(info, rows=rows), f, indent=1)
    return rows


if __name__ == "__main__":
    main()
