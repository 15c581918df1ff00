"""Compare implementations of one full-covariance EM pass (E-step + M-step statistics).

A development tool: it times the kernels gmmgan could use for the full-covariance E/M step on
the same data and parameters, so design choices rest on numbers, not guesses. Prints seconds per
pass over N rows for each variant and chunk size.

    PYTHONPATH=src python -m benchmarks.em_kernels --n 200000 --d 16 --k 16 --threads 2
"""

from __future__ import annotations

import argparse
import math
import time

import torch

LOG_2PI = math.log(2 * math.pi)


def setup(n, d, k, dtype, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(k, d, generator=g, dtype=torch.float64) * 3
    X = (centers[torch.randint(k, (n,), generator=g)] + torch.randn(n, d, generator=g, dtype=torch.float64)).to(device, dtype)
    A = torch.randn(k, d, d, generator=g, dtype=torch.float64) * 0.1 + torch.eye(d, dtype=torch.float64)
    cov = A @ A.mT
    P = torch.linalg.solve_triangular(torch.linalg.cholesky(cov), torch.eye(d, dtype=torch.float64).expand(k, d, d), upper=False).mT
    return X, centers.to(device, dtype), P.to(device, dtype), torch.full((k,), 1.0 / k, dtype=dtype, device=device)


def normalize(w):
    top = w.amax(1, keepdim=True)
    r = w.sub_(top).clamp_(min=-75.0).exp_()
    s = r.sum(1, keepdim=True)
    return (top + s.log()).squeeze(1), r.div_(s)


def pass_old(X, mu, P, logw, chunk):
    """(n, K*D) product, subtract, norm; M-step scatter from z = r (x - mu)."""
    n, d = X.shape
    k = mu.shape[0]
    pcat = P.permute(1, 0, 2).reshape(d, k * d)
    mu_p = torch.einsum("kd,kde->ke", mu, P).reshape(1, k * d)
    ld = P.diagonal(dim1=-2, dim2=-1).log().sum(-1)
    acc = 0.0
    for s in range(0, n, chunk):
        x = X[s : s + chunk]
        y = (x @ pcat).sub_(mu_p)
        w = -0.5 * (d * LOG_2PI + torch.linalg.vector_norm(y.view(-1, k, d), dim=-1).square()) + ld + logw
        lpn, r = normalize(w)
        z = (x.unsqueeze(1) - mu).mul_(r.unsqueeze(-1))
        S = z.view(-1, k * d).mT @ x
        acc += float(S[0, 0]) + float(lpn[0])
    return acc


def pass_whitened(X, mu, P, logw, chunk):
    """Batched [x, 1] @ [[P], [-mu P]] -> (K, n, D); M-step scatter sum r y y^T (gmmgan's)."""
    n, d = X.shape
    mu_p = torch.einsum("kd,kde->ke", mu, P)
    p_aug = torch.cat([P, -mu_p.unsqueeze(1)], dim=1)
    ld = P.diagonal(dim1=-2, dim2=-1).log().sum(-1)
    acc = 0.0
    for s in range(0, n, chunk):
        x = X[s : s + chunk]
        x_aug = torch.cat([x, x.new_ones(x.shape[0], 1)], 1)
        y = torch.matmul(x_aug, p_aug)
        w = -0.5 * (d * LOG_2PI + torch.linalg.vector_norm(y, dim=-1).square().mT) + ld + logw
        lpn, r = normalize(w)
        S = torch.bmm((y * r.mT.unsqueeze(-1)).mT, y)
        acc += float(S[0, 0, 0]) + float(lpn[0])
    return acc


def pass_quadratic(X, mu, P, logw, chunk):
    """Quadratic features q = vech(x x^T): half the flops, but float32 cancellation far from 0."""
    n, d = X.shape
    iu = torch.triu_indices(d, d, device=X.device)
    prec = P @ P.mT
    scale = torch.where(iu[0] == iu[1], 1.0, 2.0).to(X.dtype)
    lam = (prec[:, iu[0], iu[1]] * scale).T  # (D(D+1)/2, K)
    lin = -2 * torch.einsum("kde,ke->dk", prec, mu)
    const = torch.einsum("kd,kde,ke->k", mu, prec, mu)
    ld = P.diagonal(dim1=-2, dim2=-1).log().sum(-1)
    acc = 0.0
    for s in range(0, n, chunk):
        x = X[s : s + chunk]
        q = x[:, iu[0]] * x[:, iu[1]]
        sq = torch.addmm(const, q, lam).addmm_(x, lin)
        w = -0.5 * (d * LOG_2PI + sq) + ld + logw
        lpn, r = normalize(w)
        S = r.mT @ q
        acc += float(S[0, 0]) + float(lpn[0])
    return acc


def timeit(fn, *args, repeats=3):
    fn(*args)
    if args[0].is_cuda:
        torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn(*args)
        if args[0].is_cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--d", type=int, default=16)
    ap.add_argument("--k", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--chunks", default="1024,2048,4096,8192,16384")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    X, mu, P, w = setup(args.n, args.d, args.k, dtype, args.device)
    logw = w.log()
    print(f"N={args.n} D={args.d} K={args.k} {args.dtype} {args.device} threads={torch.get_num_threads()}")
    for chunk in [int(c) for c in args.chunks.split(",")]:
        row = [f"chunk {chunk:6d}"]
        for name, fn in (("old", pass_old), ("whitened", pass_whitened), ("quadratic", pass_quadratic)):
            row.append(f"{name} {timeit(fn, X, mu, P, logw, chunk):.4f}s")
        print("  ".join(row), flush=True)


if __name__ == "__main__":
    main()
