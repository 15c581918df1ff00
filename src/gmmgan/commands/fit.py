"""``gmmgan fit``: fit a Gaussian mixture to a data file or a built-in 2-D mixture, save it, plot it.

Data files: ``.npy`` (read memory-mapped, so files larger than memory work) or ``.csv`` / ``.txt``
(numbers separated by commas or whitespace; one non-numeric header line is skipped; ``#`` starts a
comment). Built-in data: ``ring`` and ``grid`` from docs/protocols.md, section '2-D mixtures' (see ``gmmgan.data.toy``).
"""

from __future__ import annotations

import argparse
import contextlib
import time
import warnings
from pathlib import Path

import numpy as np

from gmmgan._device import resolve_device
from gmmgan.commands._args import float_type, non_negative_int, positive_int
from gmmgan.commands._fit_report import (
    EMProgress,
    n_parameters,
    print_criterion_table,
    print_summary,
    to_numpy,
)
from gmmgan.commands._outputs import check_output_path

__all__ = ["add_parser", "run", "load_data", "n_parameters"]

# Built-in data: the 2-D mixtures of gmmgan.data.toy (toy_spec); -k defaults to their number of components.
DEFAULT_DATA = "grid"
DEFAULT_OUTPUT = "gmmgan_model.safetensors"
DEFAULT_PLOT = "gmmgan_fit.png"
DEFAULT_CRITERION_PLOT = "gmmgan_criterion.png"  # -k auto: BIC and AIC against K
PLOT_MAX_POINTS = 20_000
_FINITE_CHECK_ROWS = 1 << 20  # rows per block when checking a (memory-mapped) array for NaN

_EPILOG = f"""\
data:
  DATA is a .npy file (2-D array, read memory-mapped), a .csv/.txt file (numbers separated by
  commas or whitespace, one sample per line; a first line that is not numeric is taken as a
  header and skipped; '#' starts a comment), or a built-in 2-D mixture:
    ring   8 Gaussians, means (cos 2πk/8, sin 2πk/8), k = 0..7, sigma 0.01
    grid   25 Gaussians, means {{-4,-2,0,2,4}}², sigma 0.05
  Built-in data are --n-samples points drawn with --seed. Without DATA, 'grid' is used.

outputs:
  The model is saved with GaussianMixture.save (safetensors + JSON metadata); load it in Python
  with gmmgan.GaussianMixture.load(path). For 2-D data a PNG shows the points with each
  component's mean and 1- and 2-sigma ellipses. Existing files are never overwritten without
  --force.

examples:
  gmmgan fit                                    # grid, K=25 -> {DEFAULT_OUTPUT}, {DEFAULT_PLOT}
  gmmgan fit ring                               # ring, K=8
  gmmgan fit data.npy -k 10 --covariance-type diag -o data_k10.safetensors
  gmmgan fit points.csv -k 3 --plot points_k3.png --force
  gmmgan fit big.npy -k 64 --device cuda --dtype float32 --chunk-size 200000 --no-plot
"""


def _n_components(text: str) -> int | str:
    """argparse type of -k: a positive integer, or 'auto' (K chosen by BIC, see model_selection)."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        k = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"K must be a whole number of components, e.g. -k 8; got {text!r}"
        ) from None
    if k < 1:
        raise argparse.ArgumentTypeError(f"K must be at least 1, got {k}")
    return k


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "fit",
        help="fit a Gaussian mixture (EM) to data and save it",
        description=(
            "Fit a Gaussian mixture model to DATA with expectation-maximisation, show progress\n"
            "and a summary (log-likelihood, BIC, AIC, weights), save the model, and plot it\n"
            "when the data are 2-D."
        ),
        epilog=_EPILOG,
    )
    p.add_argument("data", nargs="?", default=None, metavar="DATA",
                   help="a .npy/.csv/.txt file, or a built-in mixture: ring, grid "
                        f"(default: {DEFAULT_DATA})")
    p.add_argument("-k", "--n-components", type=_n_components, default=None, metavar="K",
                   help="number of mixture components, or 'auto' to choose it by BIC over "
                        "1..min(20, n) (required for data files; default for built-ins: ring 8, "
                        "grid 25)")
    p.add_argument("--covariance-type", choices=("full", "diag", "spherical", "tied"),
                   default="full", help="shape of each component's covariance (default: full)")
    p.add_argument("--device", default="auto", metavar="DEVICE",
                   help="where EM runs: auto, cpu, cuda, cuda:N (default: auto = cuda when "
                        "available, else cpu)")
    p.add_argument("--dtype", choices=("float32", "float64"), default=None,
                   help="compute precision (default: float32 on a GPU; on the CPU the data's "
                        "float type, float64 for csv/txt, built-ins and integer data)")
    p.add_argument("--max-iter", type=positive_int, default=100, metavar="N",
                   help="EM iterations per initialisation (default: 100)")
    non_negative = float_type(0.0, inclusive=True)  # 0 is valid, as in scikit-learn
    p.add_argument("--tol", type=non_negative, default=1e-3, metavar="X",
                   help="stop when the lower bound (mean log-likelihood per sample) changes by "
                        "less than this; 0 runs all --max-iter iterations (default: 1e-3)")
    p.add_argument("--reg-covar", type=non_negative, default=1e-6, metavar="X",
                   help="added to covariance diagonals to keep them positive definite; 0 adds "
                        "nothing (a collapsed component is then an error) (default: 1e-6)")
    p.add_argument("--n-init", type=positive_int, default=1, metavar="N",
                   help="number of initialisations; the best is kept (default: 1)")
    p.add_argument("--init-params", choices=("k-means++", "kmeans", "random", "random_from_data"),
                   default="k-means++",
                   help="how EM starts: k-means++ seeding plus a few Lloyd steps, k-means to "
                        "convergence, random responsibilities, or K random data points as means "
                        "(default: k-means++)")
    p.add_argument("--seed", type=non_negative_int, default=0, metavar="N",
                   help="random seed of the initialisation and of built-in data (default: 0)")
    p.add_argument("--chunk-size", type=positive_int, default=None, metavar="ROWS",
                   help="rows per E-step block, bounds memory for large data (default: chosen "
                        "from K, D and the device)")
    p.add_argument("--n-samples", type=positive_int, default=100_000, metavar="N",
                   help="number of points drawn for built-in data (default: 100000)")
    p.add_argument("-o", "--output", default=DEFAULT_OUTPUT, metavar="FILE",
                   help=f"where the model is saved (default: ./{DEFAULT_OUTPUT})")
    plot = p.add_mutually_exclusive_group()
    plot.add_argument("--plot", default=None, metavar="FILE.png",
                      help=f"PNG of the fit for 2-D data (default: ./{DEFAULT_PLOT})")
    plot.add_argument("--no-plot", action="store_true", help="do not write the PNGs")
    p.add_argument("--criterion-plot", default=None, metavar="FILE.png",
                   help=f"with -k auto: PNG of BIC and AIC against K, any number of features "
                        f"(default: ./{DEFAULT_CRITERION_PLOT})")
    p.add_argument("--force", action="store_true",
                   help="overwrite existing output files (default: refuse)")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="print nothing but errors (no progress, no summary)")
    return p


# --------------------------------------------------------------------------------------- data
def load_data(spec: str, *, n_samples: int = 100_000, seed: int = 0) -> tuple[np.ndarray, str]:
    """Load DATA: a built-in mixture name or a .npy/.csv/.txt path.

    Returns
    -------
    X : ndarray of shape (n_samples, n_features)
        Validated: 2-D, numeric, finite, non-empty. For .npy files a read-only memory map.
    description : str
        A short human-readable description of where the data came from.
    """
    from gmmgan._files import load_npy
    from gmmgan.data.toy import TOY_NAMES, toy_spec

    if toy_spec(spec) is not None:
        return _builtin(spec, n_samples, seed)
    path = Path(spec)
    if not path.exists():
        hint = ("" if path.suffix else
                f"; built-in data are: {', '.join(TOY_NAMES)}")
        raise FileNotFoundError(f"data file '{spec}' does not exist{hint}")
    if path.is_dir():
        raise ValueError(f"'{spec}' is a folder; give a .npy, .csv or .txt file")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        X, note = load_npy(path), ""
        _check_shape(X, str(path))
    elif suffix in (".csv", ".txt"):
        X, note = _load_text(path)
    else:
        raise ValueError(
            f"cannot read '{spec}': unsupported file type '{path.suffix or '(none)'}'; use .npy, "
            f".csv or .txt, or a built-in data set ({', '.join(TOY_NAMES)})"
        )
    _check_finite(X, spec)
    return X, f"{path.name}{note}"


def _builtin(name: str, n_samples: int, seed: int) -> tuple[np.ndarray, str]:
    import torch

    from gmmgan.data.toy import toy_spec

    spec = toy_spec(name)
    X = spec.sample(n_samples, seed, dtype=torch.float64)[0].numpy()
    return X, f"built-in '{name}' ({spec.n_components} Gaussians, sigma {spec.sigma}, seed {seed})"


def _first_data_line(path: Path) -> tuple[int, str | None]:
    """Index and text of the first line that is not blank or a '#' comment.

    Text files are read as 'utf-8-sig': a byte-order mark (spreadsheet programs write one) is not
    part of the first line, which would otherwise not parse as numbers and be taken for a header.
    """
    with open(path, encoding="utf-8-sig", errors="replace") as f:
        for i, line in enumerate(f):
            text = line.split("#", 1)[0].strip()
            if text:
                return i, text
    return -1, None


def _is_numeric_row(text: str, delimiter: str | None) -> bool:
    try:
        [float(tok) for tok in text.split(delimiter)]
        return True
    except ValueError:
        return False


def _load_text(path: Path) -> tuple[np.ndarray, str]:
    index, first = _first_data_line(path)
    if first is None:
        raise ValueError(f"'{path}' contains no data rows")
    delimiter = "," if "," in first else None  # None: any whitespace
    skip, note = 0, ""
    if not _is_numeric_row(first, delimiter):
        skip, note = index + 1, " (header line skipped)"
    try:
        with open(path, encoding="utf-8-sig", errors="replace") as f, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "input contained no data": our error says it
            X = np.loadtxt(f, delimiter=delimiter, skiprows=skip, ndmin=2, dtype=np.float64,
                           comments="#")
    except ValueError as e:
        reason = str(e).split("; use `usecols`")[0].rstrip(".")  # numpy's hint does not apply
        raise ValueError(
            f"'{path}' is not a table of numbers: {reason}. Each line must hold the same number "
            f"of values separated by {'commas' if delimiter else 'whitespace'}; at most one "
            f"header line is allowed"
        ) from None
    if X.size == 0:
        header = f" after the header line {first!r}" if skip else ""
        raise ValueError(f"'{path}' contains no data rows{header}")
    _check_shape(X, str(path))
    return X, note


def _check_shape(X: np.ndarray, name: str) -> None:
    if X.ndim == 1:
        raise ValueError(
            f"'{name}' holds a 1-D array of shape {X.shape}; gmmgan needs 2-D data of shape "
            f"(n_samples, n_features) (for one feature, save X.reshape(-1, 1))"
        )
    if X.ndim != 2:
        raise ValueError(f"'{name}' must hold a 2-D array (n_samples, n_features), got shape "
                         f"{X.shape}")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"'{name}' is empty (shape {X.shape})")


def _check_finite(X: np.ndarray, name: str) -> None:
    if X.dtype.kind != "f":
        return
    # Block by block, so a memory-mapped file is never read into memory whole.
    for start in range(0, X.shape[0], _FINITE_CHECK_ROWS):
        block = np.asarray(X[start : start + _FINITE_CHECK_ROWS])
        ok = np.isfinite(block).all(axis=1)
        if not ok.all():
            row = start + int(np.argmin(ok))
            raise ValueError(
                f"'{name}' contains NaN or infinite values (first in row {row}, counting from "
                f"0); remove or impute them first"
            )


# ------------------------------------------------------------------------------------ run
def _check_writable(path: Path, force: bool, what: str, suffix: str | None = None) -> None:
    """Refuse, before the fit, an output that could not or should not be written afterwards."""
    check_output_path(path, force, what, suffix)


# The remedies of a fit too large for memory (gmmgan.mixture._memory), as options of this command.
_CLI_SPELLING = {
    "k": "-k {}", "diag": "--covariance-type diag", "chunk": "--chunk-size {}", "float32": "--dtype float32",
    "auto": "-k N instead of auto",
}


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _is_out_of_memory(e: BaseException) -> bool:
    """An allocator's out-of-memory error: numpy's MemoryError, torch's CPU or CUDA allocator."""
    text = str(e).lower()
    return isinstance(e, MemoryError) or type(e).__name__ == "OutOfMemoryError" or any(
        words in text for words in ("out of memory", "can't allocate memory", "cannot allocate memory"))


def run(args: argparse.Namespace) -> int:
    t_start = time.perf_counter()
    from rich.console import Console
    from rich.markup import escape

    from gmmgan import GaussianMixture
    from gmmgan.cli import console
    from gmmgan.data.toy import toy_spec
    from gmmgan.mixture import ConvergenceWarning, _memory

    out = Console(quiet=True) if args.quiet else console
    data = args.data if args.data is not None else DEFAULT_DATA
    builtin = toy_spec(data)
    k = args.n_components
    if k is None:
        if builtin is None:
            raise ValueError("-k/--n-components is required for a data file: give the number of "
                             "mixture components, e.g. -k 8")
        k = builtin.n_components
    device = resolve_device(args.device)
    dtype = args.dtype or ("float32" if device.type == "cuda" else None)

    X, description = load_data(data, n_samples=args.n_samples, seed=args.seed)
    output = Path(args.output)
    _check_writable(output, args.force, "model")
    n, d = X.shape
    if k != "auto" and k > n:
        raise ValueError(f"-k {k} is more than the {n} data points; use at most one component "
                         "per point (far fewer in practice)")
    plot_path = None
    if not args.no_plot and (d == 2 or args.plot is not None):
        if d != 2:
            raise ValueError(f"--plot needs 2-D data, but the data have {d} features; "
                             "drop --plot")
        plot_path = Path(args.plot if args.plot is not None else DEFAULT_PLOT)
        _check_writable(plot_path, args.force, "plot", ".png")
        if plot_path.resolve() == output.resolve():  # the plot would replace the model just saved
            raise ValueError(f"--plot and -o are both '{output}'; give the plot another name (e.g. fit.png)")
    criterion_path = None
    if k == "auto" and not args.no_plot:
        criterion_path = Path(args.criterion_plot or DEFAULT_CRITERION_PLOT)
        _check_writable(criterion_path, args.force, "criterion plot", ".png")
        if criterion_path.resolve() in {output.resolve(), plot_path.resolve() if plot_path else None}:
            raise ValueError(f"--criterion-plot '{criterion_path}' is also the model or the fit plot; give it "
                             "another name")
    elif args.criterion_plot is not None:
        raise ValueError("--criterion-plot draws the choice of K: it needs -k auto (or drop it)")
    if args.n_samples != 100_000 and builtin is None:
        out.print(f"[yellow]note:[/] --n-samples applies to built-in data only; all {n} rows of "
                  f"the file are used")

    what = f"a {k}-component GMM"
    if k == "auto":
        from gmmgan.mixture.model_selection import default_candidates

        ks = default_candidates(n)
        what = f"GMMs with K = {ks[0]}..{ks[-1]} together (K chosen by BIC)"
    out.print(f"Fitting {what} ({args.covariance_type} covariances) to "
              f"{description}: {n:,} × {d} on {device}", soft_wrap=True)
    progress = EMProgress(out, n_init=args.n_init, max_iter=args.max_iter)
    if k == "auto":
        progress = contextlib.nullcontext()  # the batched fit reports no per-iteration progress
    gm = GaussianMixture(
        n_components=k, covariance_type=args.covariance_type, tol=args.tol,
        reg_covar=args.reg_covar, max_iter=args.max_iter, n_init=args.n_init,
        init_params=args.init_params, random_state=args.seed, device=device, dtype=dtype,
        chunk_size=args.chunk_size,
        callback=None if args.quiet or k == "auto" else progress.callback,
    )
    t_fit = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught, progress, _memory.spelled_as(_CLI_SPELLING):
        warnings.simplefilter("always")
        # torch warns once per process on read-only arrays (our memory map); EM never writes.
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        try:  # the fit checks its estimated memory first (one line naming these options)
            gm.fit(X)
        except (MemoryError, RuntimeError) as e:
            if isinstance(e, MemoryError) and str(e).startswith("Not enough memory"):
                raise
            if not _is_out_of_memory(e):
                raise
            raise MemoryError(
                f"ran out of memory during the fit ({_first_line(e)}); try a smaller -k, --covariance-type "
                "diag, a smaller --chunk-size or --dtype float32") from None
    fit_seconds = time.perf_counter() - t_fit
    for w in caught:  # non-convergence is in the summary; others (e.g. re-seeded components) here
        if not issubclass(w.category, ConvergenceWarning):
            out.print(f"[yellow]warning:[/] {escape(str(w.message))}", soft_wrap=True)

    output.parent.mkdir(parents=True, exist_ok=True)
    gm.save(output)
    if plot_path is not None:
        _plot(gm, X, plot_path, args.covariance_type, description, args.seed)
    if criterion_path is not None:
        from gmmgan.plotting import plot_criterion

        plot_criterion(gm, criterion_path, title=f"{description}\nchoosing K, {args.covariance_type} covariances")
    if k == "auto":
        print_criterion_table(out, gm)
        if criterion_path is not None:
            out.print(f"criterion plot saved to {escape(str(criterion_path))}", soft_wrap=True)
    print_summary(out, gm, X, fit_seconds=fit_seconds,
                  total_seconds=time.perf_counter() - t_start, output=output, plot=plot_path)
    return 0


def _plot(gm, X: np.ndarray, path: Path, covariance_type: str, description: str,
          seed: int) -> None:
    from gmmgan.plotting import plot_gmm_2d

    if X.shape[0] > PLOT_MAX_POINTS:  # subsample here so a memory map is not read whole
        rng = np.random.default_rng(seed)
        X = X[np.sort(rng.choice(X.shape[0], size=PLOT_MAX_POINTS, replace=False))]
    k = to_numpy(gm.means_).shape[0]  # n_components may be "auto"; the fitted K is here
    title = f"{description}\nGMM K={k}, {covariance_type} covariances"
    plot_gmm_2d(np.asarray(X), to_numpy(gm.weights_), to_numpy(gm.means_),
                to_numpy(gm.covariances_), path, covariance_type=covariance_type, title=title,
                max_points=PLOT_MAX_POINTS, seed=seed)
