"""What ``gmmgan fit`` prints: a progress line per EM iteration, the fit summary, the choice of K.

Kept apart from :mod:`gmmgan.commands.fit` (reading data, running the fit, writing files).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["EMProgress", "n_parameters", "print_criterion_table", "print_summary", "to_numpy"]

_MAX_TABLE_ROWS = 40  # components listed in the summary (the rest are counted)


def to_numpy(a) -> np.ndarray:
    return a.detach().cpu().numpy() if hasattr(a, "detach") else np.asarray(a)


def n_parameters(n_components: int, n_features: int, covariance_type: str) -> int:
    """Free parameters of a Gaussian mixture (as in BIC/AIC): covariances, means, weights."""
    # Imported here: this module is loaded for `gmmgan fit --help`, which must not wait for torch.
    from gmmgan.mixture._covariance import COVARIANCES

    return COVARIANCES[covariance_type].n_parameters(n_components, n_features)


class EMProgress:
    """A rich progress line per initialisation, updated by GaussianMixture's ``callback``."""

    def __init__(self, console, *, n_init: int, max_iter: int):
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.n_init, self.max_iter = n_init, max_iter
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(bar_width=24),
            TextColumn("iter {task.completed:>4.0f}/{task.total:.0f}"),
            TextColumn("lower bound {task.fields[bound]}"),
            TextColumn("change {task.fields[change]}"),
            TimeElapsedColumn(),
            console=console,
        )
        self._inits: dict = {}  # the callback's init id -> rich task id
        self._task = None

    def _start_init(self, init_id) -> None:
        if self._task is not None:  # freeze the finished line, so each init's result stays
            self._progress.update(self._task, description=self._describe(len(self._inits), True))
            self._progress.stop_task(self._task)  # and its clock
        n = len(self._inits) + 1
        self._task = self._progress.add_task(self._describe(n, False), total=self.max_iter,
                                             bound="-", change="-")
        self._inits[init_id] = self._task

    def _describe(self, n: int, done: bool) -> str:
        return f"init {n}/{self.n_init}" + (" done" if done else "")

    def callback(self, info: dict) -> None:
        init_id = info.get("init", 0)
        if init_id not in self._inits:
            if self._task is not None and not self._inits:  # the placeholder from __enter__
                self._inits[init_id] = self._task
            else:
                self._start_init(init_id)
        task = self._inits[init_id]
        change = info.get("change", float("nan"))
        self._progress.update(task, completed=info["n_iter"],
                              bound=f"{info['lower_bound']: .6f}",
                              change=f"{change:.2e}" if np.isfinite(change) else "-")

    def __enter__(self):
        self._progress.__enter__()
        self._task = self._progress.add_task(self._describe(1, False), total=self.max_iter,
                                             bound="(initialising)", change="-")
        return self

    def __exit__(self, *exc):
        if self._task is not None:
            self._progress.stop_task(self._task)
        return self._progress.__exit__(*exc)


def print_summary(console, gm, X, *, fit_seconds: float, total_seconds: float,
                   output: Path, plot: Path | None) -> None:
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    from gmmgan.plotting import full_covariances

    weights, means = to_numpy(gm.weights_), to_numpy(gm.means_)
    k, d = means.shape
    iterations = int(gm.n_iter_)
    if gm.converged_:
        status = f"[green]converged[/] after {iterations} iterations"
    else:
        status = (f"[yellow]not converged[/] after {iterations} iterations (try a larger "
                  f"--max-iter or --tol)")
    summary = Table(box=box.SIMPLE, show_header=False, title="fit summary", title_justify="left")
    summary.add_column(style="bold", no_wrap=True)
    summary.add_column()
    summary.add_row("status", status)
    # One pass over the data for all three numbers (bic()/aic() would each re-score X).
    n = X.shape[0]
    log_lik = float(gm.score(X))
    n_params = n_parameters(k, d, gm.covariance_type)
    summary.add_row("log-likelihood / sample", f"{log_lik:.6f}")
    summary.add_row("lower bound", f"{float(gm.lower_bound_):.6f}")
    summary.add_row("BIC", f"{-2.0 * log_lik * n + n_params * np.log(n):,.1f}")
    summary.add_row("AIC", f"{-2.0 * log_lik * n + 2.0 * n_params:,.1f}")
    summary.add_row("free parameters", f"{n_params:,}")
    summary.add_row("time", f"EM {fit_seconds:.2f} s, total {total_seconds:.2f} s")
    console.print(summary)

    covs = full_covariances(to_numpy(gm.covariances_), k, d, gm.covariance_type)
    rms_sd = np.sqrt(np.trace(covs, axis1=1, axis2=2) / d)
    table = Table(box=box.SIMPLE_HEAD, title="components", title_justify="left")
    table.add_column("k", justify="right")
    table.add_column("weight", justify="right")
    if d <= 4:
        table.add_column("mean")
    table.add_column("rms sd", justify="right")
    for j in range(min(k, _MAX_TABLE_ROWS)):
        row = [str(j), f"{weights[j]:.4f}"]
        if d <= 4:
            row.append("(" + ", ".join(f"{m: .4f}" for m in means[j]) + ")")
        row.append(f"{rms_sd[j]:.4g}")
        table.add_row(*row)
    if k > _MAX_TABLE_ROWS:
        table.caption = f"{k - _MAX_TABLE_ROWS} more components not shown"
    console.print(table)
    # Paths on their own unwrapped lines, so they can be copied whole.
    console.print(f"model saved to {escape(str(output))} (load it with "
                  "gmmgan.GaussianMixture.load)", soft_wrap=True)
    if plot is not None:
        console.print(f"plot saved to {escape(str(plot))}", soft_wrap=True)


def print_criterion_table(console, gm) -> None:
    """BIC and AIC of every candidate K of an n_components='auto' fit, the chosen one marked."""
    from rich import box
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD, title=f"K chosen by {gm.criterion_.upper()}: {gm.n_components_}",
                  title_justify="left")
    for name in ("K", "BIC", "AIC", f"{gm.criterion_.upper()} - chosen"):
        table.add_column(name, justify="right")
    best = gm.criterion_scores_[gm.n_components_]
    for k in sorted(gm.criterion_scores_):
        mark = "[bold green]<- chosen[/]" if k == gm.n_components_ else f"+{gm.criterion_scores_[k] - best:,.1f}"
        table.add_row(str(k), f"{gm.bic_[k]:,.1f}", f"{gm.aic_[k]:,.1f}", mark)
    console.print(table)
