"""Shared pieces of the benchmark scripts: data, a common EM start, timing, machine facts, JSON.

Kept free of scikit-learn and gmmgan imports at module level so that a worker running in
another interpreter (pycave needs torch < 2 and numpy < 2) can import it too.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Sequence

import numpy as np


@dataclass(frozen=True)
class GMMData:
    """A seeded sample of a random Gaussian mixture, split into training and held-out rows."""

    X_train: np.ndarray  # (n_samples, n_features), float64
    X_test: np.ndarray  # (n_test, n_features), float64


def make_gmm_data(
    n_samples: int, n_features: int, n_components: int, *, n_test: int, seed: int
) -> GMMData:
    """Sample ``n_samples + n_test`` rows from a random full-covariance GMM.

    Component means are spread so that neighbours overlap a little (EM has work to do for
    many iterations); covariances are 0.5 (A A^T + I) with A a D x D Gaussian matrix / sqrt(D).
    """
    if n_samples < n_components:
        raise ValueError(
            f"n_samples={n_samples} is smaller than n_components={n_components}; "
            "use more samples or fewer components."
        )
    rng = np.random.default_rng(seed)
    n_total = n_samples + n_test
    weights = rng.dirichlet(np.full(n_components, 5.0))
    # Centres ~5 (unit-ish) standard deviations apart whatever the dimension, so components
    # overlap a little: EM keeps moving for many iterations, as on real data (well-separated
    # high-dimensional clusters converge exactly in a few steps, and timing m steps needs m).
    means = rng.normal(scale=5.0 / np.sqrt(2 * n_features), size=(n_components, n_features))
    labels = rng.choice(n_components, size=n_total, p=weights)
    X = np.empty((n_total, n_features), dtype=np.float64)
    for k in range(n_components):
        idx = np.flatnonzero(labels == k)
        a = rng.normal(size=(n_features, n_features)) / np.sqrt(n_features)
        cov = 0.5 * (a @ a.T) + 0.5 * np.eye(n_features)
        chol = np.linalg.cholesky(cov)
        X[idx] = means[k] + rng.standard_normal((idx.size, n_features)) @ chol.T
    # Shuffle so that training and held-out rows come from the same distribution.
    perm = rng.permutation(n_total)
    X = X[perm]
    return GMMData(X_train=X[:n_samples], X_test=X[n_samples:])


@dataclass(frozen=True)
class InitParams:
    """Starting parameters handed to every implementation (float64 numpy)."""

    centers: np.ndarray  # (K, D) k-means++ centres (what pycave is given)
    weights: np.ndarray  # (K,)
    means: np.ndarray  # (K, D)
    precisions: np.ndarray  # (K, D, D) for 'full', (K, D) for 'diag'


def common_init(
    X: np.ndarray,
    n_components: int,
    covariance_type: str,
    *,
    reg_covar: float,
    seed: int,
    n_subsample: int = 20_000,
    chunk: int = 65_536,
) -> InitParams:
    """k-means++ centres on a subsample, then one hard-assignment M-step over all of ``X``.

    This is exactly what pycave does when given ``init_means`` (nearest centre, then weights,
    means and covariances of each cell plus ``reg_covar`` on the diagonal), so every
    implementation starts EM from the same parameters.
    """
    from sklearn.cluster import kmeans_plusplus

    if covariance_type not in ("full", "diag"):
        raise ValueError(f"covariance_type must be 'full' or 'diag', got {covariance_type!r}.")
    rng = np.random.default_rng(seed)
    sub = X[rng.choice(X.shape[0], size=min(n_subsample, X.shape[0]), replace=False)]
    centers, _ = kmeans_plusplus(sub, n_components, random_state=seed)
    n, d = X.shape
    labels = np.empty(n, dtype=np.int64)
    c_sq = (centers**2).sum(1)
    for start in range(0, n, chunk):
        xb = X[start : start + chunk]
        labels[start : start + chunk] = np.argmin(c_sq - 2.0 * xb @ centers.T, axis=1)
    counts = np.bincount(labels, minlength=n_components).astype(np.float64)
    for _ in range(10):  # many centres in many dimensions: move a centre whose cell is (nearly) empty
        bad = np.flatnonzero(counts < 2)
        if bad.size == 0:
            break
        centers[bad] = X[rng.choice(n, size=bad.size, replace=False)]
        c_sq = (centers**2).sum(1)
        for start in range(0, n, chunk):
            xb = X[start : start + chunk]
            labels[start : start + chunk] = np.argmin(c_sq - 2.0 * xb @ centers.T, axis=1)
        counts = np.bincount(labels, minlength=n_components).astype(np.float64)
    if np.any(counts < 2):
        raise ValueError(
            "A k-means++ centre got fewer than 2 points; use more samples or fewer components."
        )
    weights = counts / n
    # Rows grouped by label once (np.add.at over a million rows takes tens of seconds).
    order = np.argsort(labels, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts[:-1]).astype(np.int64)])
    Xs = X[order]
    means = np.add.reduceat(Xs, starts, axis=0) / counts[:, None]
    if covariance_type == "full":
        precisions = np.empty((n_components, d, d))
        for k in range(n_components):
            diff = Xs[starts[k] : starts[k] + int(counts[k])] - means[k]
            cov = diff.T @ diff / counts[k] + reg_covar * np.eye(d)
            precisions[k] = np.linalg.inv(cov)
            precisions[k] = 0.5 * (precisions[k] + precisions[k].T)
    else:
        var = np.add.reduceat((Xs - means[labels[order]]) ** 2, starts, axis=0) / counts[:, None] + reg_covar
        precisions = 1.0 / var
    return InitParams(centers=centers, weights=weights, means=means, precisions=precisions)


def time_per_iteration(
    fit: Callable[[int], Any],
    *,
    iters: tuple[int, int],
    repeats: int,
    sync: Callable[[], None] = lambda: None,
    warmup: bool = True,
) -> Dict[str, Any]:
    """Seconds per EM iteration as ``(t(fit m2) - t(fit m1)) / (m2 - m1)``.

    The difference cancels what every fit does once (validation, the initial M-step, the final
    E-step, host-device copies), so all implementations are measured the same way. ``fit(m)``
    must run exactly ``m`` EM iterations and return the fitted model. Returns the median over
    ``repeats`` paired differences, all the raw timings and the model fitted with ``m2``.
    """
    m1, m2 = iters
    if not 0 <= m1 < m2:
        raise ValueError(f"iters must satisfy 0 <= m1 < m2, got {iters}.")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}.")
    if warmup:
        fit(max(m1, 1))
        sync()
    t1: List[float] = []
    t2: List[float] = []
    c1: List[float] = []
    c2: List[float] = []
    model = None
    for _ in range(repeats):
        sync()
        start, cpu = time.perf_counter(), time.process_time()
        fit(m1)
        sync()
        t1.append(time.perf_counter() - start)
        c1.append(time.process_time() - cpu)
        start, cpu = time.perf_counter(), time.process_time()
        model = fit(m2)
        sync()
        t2.append(time.perf_counter() - start)
        c2.append(time.process_time() - cpu)
    per_iter = [(b - a) / (m2 - m1) for a, b in zip(t1, t2)]
    return {
        "s_per_iter": statistics.median(per_iter),
        # Least disturbed by other processes: each fit's fastest run.
        "s_per_iter_from_min": (min(t2) - min(t1)) / (m2 - m1),
        # CPU seconds of all this process's threads per iteration: with one thread, a measure of
        # work that time-slicing by other processes barely changes (spinning threads inflate it).
        "cpu_s_per_iter": statistics.median([(b - a) / (m2 - m1) for a, b in zip(c1, c2)]),
        "s_per_iter_all": per_iter,
        "fit_seconds_m1": t1,
        "fit_seconds_m2": t2,
        "iters": [m1, m2],
        "model": model,
    }


def _lscpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return platform.processor() or "unknown"
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def _torch_version() -> str:
    """torch's version without importing it (a slow import), unless its package metadata is missing."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("torch")
    except PackageNotFoundError:  # a torch built without package metadata
        import torch

        return torch.__version__


def machine_info(*, threads: bool = False, cuda: bool = False, gpu_ids: Sequence[int] | None = None) -> Dict[str, Any]:
    """Where a benchmark ran, for its JSON: the one machine description every script records.

    Always: CPU model and count, platform, hostname, Python, numpy and torch versions (torch is not
    imported for that). ``threads``: torch's thread count, the thread pools (torch and numpy's BLAS),
    the thread-related environment variables and scikit-learn's version, which CPU timings depend
    on. ``cuda``: the name and count of the CUDA devices torch sees, and whether float32 matmuls may
    use TF32 (imports torch and initialises CUDA). ``gpu_ids``: the GPUs a script hands to its worker
    processes, named by ``nvidia-smi`` (CUDA is not initialised here).
    """
    info: Dict[str, Any] = {
        "cpu_model": _lscpu_model(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "hostname": platform.node(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": _torch_version(),
    }
    if threads:
        import torch

        info["torch_num_threads"] = torch.get_num_threads()
        info["env"] = {
            k: os.environ[k]
            for k in sorted(os.environ)
            if k.startswith(("OPENBLAS", "OMP_", "MKL_", "SCIPY_ARRAY_API", "CUDA_VISIBLE"))
        }
        try:
            import sklearn

            info["sklearn"] = sklearn.__version__
        except ImportError:
            info["sklearn"] = None
        try:
            from threadpoolctl import threadpool_info

            info["threadpools"] = [
                {
                    k: p.get(k)
                    for k in ("user_api", "internal_api", "num_threads", "version", "architecture")
                    if p.get(k) is not None
                }
                | {"file": os.path.basename(p.get("filepath", ""))}
                for p in threadpool_info()
            ]
        except ImportError:
            info["threadpools"] = "threadpoolctl not installed"
    if cuda:
        import torch

        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
            info["gpu_count"] = torch.cuda.device_count()
            info["tf32_matmul"] = torch.backends.cuda.matmul.allow_tf32
    if gpu_ids:
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=index,name,memory.total", "--format=csv,noheader"],
                                 check=False, capture_output=True, text=True, timeout=30).stdout
            info["gpus"] = [line.strip() for line in out.splitlines() if line.strip()]
        except (OSError, subprocess.SubprocessError):
            info["gpus"] = ["nvidia-smi not available"]
        info["gpu_ids_used"] = list(gpu_ids)
    return info


def relative_gap(value: float, reference: float) -> float:
    """|value - reference| / max(|reference|, 1): relative for large log-likelihoods, absolute
    near zero (a mean log-likelihood can cross zero, where a pure ratio is meaningless)."""
    return abs(value - reference) / max(abs(reference), 1.0)


def format_table(rows: Sequence[Dict[str, Any]], columns: Sequence[tuple[str, str]]) -> str:
    """A plain fixed-width text table (markdown-compatible pipes)."""
    header = [title for _, title in columns]
    body = [[_fmt(r.get(key)) for key, _ in columns] for r in rows]
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(header)]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |"]
    lines.append("| " + " | ".join("-" * w for w in widths) + " |")
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(b, widths)) + " |" for b in body]
    return "\n".join(lines)


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if v != v:
            return "nan"
        if abs(v) >= 100:
            return f"{v:.1f}"
        if abs(v) >= 1:
            return f"{v:.3f}"
        return f"{v:.4g}"
    return str(v)


def write_json(path: str | os.PathLike, payload: Any) -> None:
    """``payload`` as indented JSON (numpy scalars and arrays as numbers and lists), parent folders made."""
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps(payload, indent=2, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)

