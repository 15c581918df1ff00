"""How often does each automatic-K method return the true number of components, and how fast?

Methods (all float64, same candidate range per data set; scikit-learn on the CPU, gmmgan on
--device, default the CPU):

  gmmgan-bic     gmmgan.select_n_components: every candidate K fitted in one stacked EM, lowest BIC
  gmmgan-bgm     gmmgan.BayesianGaussianMixture (Dirichlet process), K = its active components
  sklearn-bgm    sklearn.mixture.BayesianGaussianMixture, same settings, same active-component rule
  sklearn-bic    a loop of sklearn.mixture.GaussianMixture(K).fit over the candidates, lowest BIC

Data with known K: the ring (8) and grid (25) mixtures of gmmgan.data.toy (fitted with 'full'
covariances), and random mixtures with D in 2..32 and K in 3..50, covariance eigenvalues in
[0.5, 2]: for D <= 8 randomly rotated and fitted with 'full' covariances, above that axis-aligned
and fitted with 'diag' ones (too few points per component for full matrices); K * D <= --max-kd
(diag) or K * D^2 <= 4/3 --max-kd (full) to bound the run time. The
separation of a mixture is Dasgupta's c: the smallest, over pairs of components, of
||mu_i - mu_j|| / sqrt(D * max(lambda_max(Sigma_i), lambda_max(Sigma_j))); random mixtures are
drawn with c log-uniform in four bins and means scaled so the closest pair has exactly that c.

Candidates are K = 1 .. ceil(1.5 K_true) + 2 for every method (the Bayesian mixtures get that
many components). A Bayesian mixture's answer is its number of components with weight above a
tenth of a uniform weight (gmmgan's n_active_components_ rule), for both libraries.

Timings are wall-clock seconds of the whole selection (initialisations included), with torch
and BLAS limited to --threads threads (default 1: the development machine is shared and
oversubscribed threads make timings meaningless). The ring and grid are timed --repeats times
(medians reported); the random mixtures once each, and their speed ratios are summarised by the
median over cases and the ratio of total times.

    python -m benchmarks.auto_k                      # the documented run (about 6-8 minutes)
    python -m benchmarks.auto_k --cases 4 --repeats 1 --json out.json   # quick look
    PYTHONPATH=src python -m benchmarks.auto_k --device cuda --json auto_k_cuda.json  # GPU row

Every method fits the ring once, untimed, before the timed runs (start-up costs). With
--device cuda the gmmgan methods fit on the GPU (data copied from numpy inside the timed call,
the device synchronised before the clock stops); scikit-learn's methods stay on the CPU.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
import warnings

import numpy as np

from benchmarks._common import machine_info, write_json

BINS = [(0.25, 0.5, "touching"), (0.5, 1.0, "close"), (1.0, 2.0, "separated"), (2.0, 4.0, "well-separated")]
D_CHOICES = [2, 3, 4, 6, 8, 12, 16, 24, 32]
K_CHOICES = [3, 4, 5, 6, 8, 10, 12, 15, 20, 30, 40, 50]
# Random mixtures with D <= FULL_MAX_D have rotated covariances and are fitted with 'full' ones;
# above it (too few points per component to estimate D(D+1)/2 entries) axis-aligned and 'diag'.
FULL_MAX_D = 8
METHODS = ["gmmgan-bic", "gmmgan-bgm", "sklearn-bgm", "sklearn-bic"]
ACTIVE_WEIGHT_FRACTION = 0.1


def c_separation(means: np.ndarray, lam_max: np.ndarray) -> float:
    """Dasgupta's c: min over pairs of ||mu_i - mu_j|| / sqrt(D max(lambda_i, lambda_j))."""
    d = means.shape[1]
    dist = np.linalg.norm(means[:, None] - means[None], axis=-1)
    scale = np.sqrt(d * np.maximum(lam_max[:, None], lam_max[None]))
    ratio = dist / scale
    np.fill_diagonal(ratio, np.inf)
    return float(ratio.min())


def random_mixture(rng, d: int, k: int, c: float, n_per: int, rotate: bool = False):
    """Samples (n, d) of a K-component Gaussian mixture with c-separation exactly c.

    Covariances have eigenvalues uniform in [0.5, 2]; axis-aligned, or with a random rotation
    per component when ``rotate``.
    """
    variances = rng.uniform(0.5, 2.0, size=(k, d))
    means = rng.normal(size=(k, d))
    means *= c / c_separation(means, variances.max(1))
    weights = rng.dirichlet(np.full(k, 20.0))
    counts = np.maximum(rng.multinomial(n_per * k, weights), n_per // 4)
    parts = []
    for m, v, n in zip(means, variances, counts):
        z = rng.standard_normal((n, d)) * np.sqrt(v)
        if rotate:
            q, r = np.linalg.qr(rng.normal(size=(d, d)))
            z = z @ (q * np.sign(np.diag(r))).T
        parts.append(m + z)
    X = np.concatenate(parts)
    return X[rng.permutation(len(X))], c_separation(means, variances.max(1))


def toy_case(name: str, n: int, seed: int):
    from gmmgan.data.toy import toy_spec

    spec = toy_spec(name)
    X = spec.sample(n, seed)[0].double().numpy()
    means = spec.means.double().numpy()
    c = c_separation(means, np.full(len(means), spec.sigma**2))
    return X, c


def candidates_for(k_true: int) -> list[int]:
    return list(range(1, math.ceil(1.5 * k_true) + 3))


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize(device)  # the device gmmgan fitted on (cuda:1 is not the current one)


def run_method(method: str, X: np.ndarray, ks: list[int], cov_type: str, seed: int, device: str = "cpu") -> tuple[int, float]:
    """(chosen K, seconds) of one method on one data set; ``device`` applies to gmmgan's methods."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _sync(device)
        t0 = time.perf_counter()
        if method == "gmmgan-bic":
            from gmmgan import select_n_components

            k = select_n_components(X, candidates=ks, covariance_type=cov_type, random_state=seed,
                                    device=device).n_components_
        elif method == "sklearn-bic":
            from sklearn.mixture import GaussianMixture

            bic = {kk: GaussianMixture(kk, covariance_type=cov_type, random_state=seed).fit(X).bic(X) for kk in ks}
            k = min(ks, key=lambda kk: (bic[kk], kk))
        else:
            if method == "gmmgan-bgm":
                from gmmgan import BayesianGaussianMixture
            else:
                from sklearn.mixture import BayesianGaussianMixture
            extra = {"device": device} if method == "gmmgan-bgm" else {}
            m = BayesianGaussianMixture(n_components=max(ks), covariance_type=cov_type, max_iter=300,
                                        random_state=seed, **extra).fit(X)
            k = int((np.asarray(m.weights_) > ACTIVE_WEIGHT_FRACTION / max(ks)).sum())
        _sync(device)
        return int(k), time.perf_counter() - t0


def make_cases(n_cases: int, seed: int, max_kd: int, n_per_min: int):
    rng = np.random.default_rng(seed)
    cases = []
    for i in range(n_cases):
        lo, hi, label = BINS[i % len(BINS)]
        while True:
            d, k = int(rng.choice(D_CHOICES)), int(rng.choice(K_CHOICES))
            # Full covariances cost K D^2 per row: bounded by max_kd * 4/3 (D = 2: K <= 160).
            if (k * d * d <= max_kd * 4 // 3) if d <= FULL_MAX_D else (k * d <= max_kd):
                break
        c = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
        full = d <= FULL_MAX_D
        X, c_real = random_mixture(rng, d, k, c, max(n_per_min, 8 * d), rotate=full)
        cases.append({"name": f"random-{i}", "X": X, "k": k, "d": d, "c": c_real, "bin": label, "cov": "full" if full else "diag", "repeats": 1})
    return cases


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", type=int, default=32, help="random mixtures (spread evenly over the 4 bins)")
    p.add_argument("--repeats", type=int, default=3, help="timing repeats on ring and grid (medians)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--max-kd", type=int, default=240, help="largest K * D of a random mixture")
    p.add_argument("--n-per", type=int, default=100, help="points per component (at least 8 D)")
    p.add_argument("--toy-n", type=int, default=4000, help="points drawn from ring and grid")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None)
    p.add_argument("--device", default="cpu", help="where gmmgan's methods fit: cpu, cuda, cuda:1, ...")
    args = p.parse_args(argv)
    methods = args.methods.split(",")

    # Everything is imported before the thread limit below, so that it applies to every OpenMP and
    # BLAS pool: an unlimited pool on a busy machine made scikit-learn up to 20x slower in a first
    # version of this script.
    import importlib

    import torch
    from threadpoolctl import threadpool_limits

    for name in ("sklearn.cluster", "sklearn.mixture", "gmmgan"):
        importlib.import_module(name)

    torch.set_num_threads(args.threads)
    limits = threadpool_limits(args.threads)
    cases = []
    for name, k in (("ring", 8), ("grid", 25)):
        X, c = toy_case(name, args.toy_n, args.seed)
        cases.append({"name": name, "X": X, "k": k, "d": 2, "c": c, "bin": "well-separated", "cov": "full", "repeats": args.repeats})
    cases += make_cases(args.cases, args.seed, args.max_kd, args.n_per)

    # One untimed fit per method first: one-time start-up costs (lazy initialisation, the
    # allocator's first large blocks, on a GPU the CUDA context and kernels) are not the
    # method's; without it the first data set's first repeats were up to 1.5x slower.
    for m in methods:
        run_method(m, cases[0]["X"], candidates_for(cases[0]["k"]), cases[0]["cov"], args.seed, args.device)
    rows, start = [], time.perf_counter()
    for case in cases:
        ks = candidates_for(case["k"])
        row = {key: case[key] for key in ("name", "k", "d", "c", "bin", "cov")}
        row["n"], row["candidates"] = len(case["X"]), [ks[0], ks[-1]]
        for m in methods:
            runs = [run_method(m, case["X"], ks, case["cov"], args.seed, args.device) for _ in range(case["repeats"])]
            row[m] = {"k": runs[0][0], "seconds": statistics.median(s for _, s in runs), "all_seconds": [s for _, s in runs]}
        rows.append(row)
        print(f"{row['name']:>10} {row['cov']:4s} D={row['d']:2d} K={row['k']:2d} c={row['c']:.2f} n={row['n']:6d} | "
              + " | ".join(f"{m} K={row[m]['k']:2d} {row[m]['seconds']:7.2f}s" for m in methods), flush=True)
    limits.unregister() if hasattr(limits, "unregister") else None
    summary = summarize(rows, methods)
    print_tables(rows, summary, methods)
    total = time.perf_counter() - start
    print(f"\nwhole run: {total:.0f} s, {args.threads} thread(s), gmmgan on {args.device}")
    result = {"args": vars(args), "machine": machine_info(threads=True, cuda=args.device.startswith("cuda")),
              "rows": rows, "summary": summary, "seconds": total}
    if args.json:
        write_json(args.json, result)
    return result


def summarize(rows, methods) -> dict:
    out = {}
    groups = {label: [r for r in rows if r["bin"] == label and r["name"].startswith("random")] for *_, label in BINS}
    groups["ring + grid"] = [r for r in rows if not r["name"].startswith("random")]
    for label, rs in groups.items():
        out[label] = {"cases": len(rs)}
        for m in methods:
            if rs:
                out[label][m] = sum(r[m]["k"] == r["k"] for r in rs) / len(rs)
    if "sklearn-bic" in methods:
        for m in methods:
            if m == "sklearn-bic":
                continue
            ratios = [r["sklearn-bic"]["seconds"] / r[m]["seconds"] for r in rows]
            out.setdefault("speedup_vs_sklearn_bic", {})[m] = {
                "median_per_case": statistics.median(ratios),
                "total_time": sum(r["sklearn-bic"]["seconds"] for r in rows) / sum(r[m]["seconds"] for r in rows),
            }
            for cov in ("full", "diag"):
                rs = [r for r in rows if r["cov"] == cov]
                if rs:
                    out["speedup_vs_sklearn_bic"][m][f"total_time_{cov}"] = (
                        sum(r["sklearn-bic"]["seconds"] for r in rs) / sum(r[m]["seconds"] for r in rs))
                    out["speedup_vs_sklearn_bic"][m][f"median_{cov}"] = statistics.median(
                        r["sklearn-bic"]["seconds"] / r[m]["seconds"] for r in rs)
    out["total_seconds"] = {m: sum(r[m]["seconds"] for r in rows) for m in methods}
    return out


def print_tables(rows, summary, methods) -> None:
    print("\nfraction of cases where the method returns the true K")
    print("| separation (Dasgupta c) | cases | " + " | ".join(methods) + " |")
    print("| --- | --- |" + " --- |" * len(methods))
    for (lo, hi, label) in BINS:
        s = summary[label]
        print(f"| {label} [{lo}, {hi}) | {s['cases']} | " + " | ".join(f"{s.get(m, float('nan')):.0%}" for m in methods) + " |")
    s = summary["ring + grid"]
    print(f"| ring (8) + grid (25) | {s['cases']} | " + " | ".join(f"{s.get(m, float('nan')):.0%}" for m in methods) + " |")
    print("\nseconds (ring and grid: median of repeats)")
    print("| data | " + " | ".join(methods) + " |")
    print("| --- |" + " --- |" * len(methods))
    for r in rows:
        if not r["name"].startswith("random"):
            print(f"| {r['name']} (n={r['n']}, K={r['k']}) | " + " | ".join(f"{r[m]['seconds']:.2f}" for m in methods) + " |")
    tot = summary["total_seconds"]
    print("| all cases, total | " + " | ".join(f"{tot[m]:.1f}" for m in methods) + " |")
    if "speedup_vs_sklearn_bic" in summary:
        print("\nspeed-up over the scikit-learn BIC sweep: median per case / ratio of total times")
        for m, v in summary["speedup_vs_sklearn_bic"].items():
            by_cov = ", ".join(f"{c}: {v[f'median_{c}']:.1f}x / {v[f'total_time_{c}']:.1f}x"
                               for c in ("full", "diag") if f"median_{c}" in v)
            print(f"  {m:12s} all: {v['median_per_case']:.1f}x / {v['total_time']:.1f}x ({by_cov})")


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
