"""Pictures of a training run: the curves of its ``log.jsonl`` (losses, throughput, metrics).

Uses matplotlib's object-oriented API with the Agg canvas (no pyplot), so it works on headless
machines and never touches a global figure or backend that the caller may have set up.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gmmgan.plotting._arrays import as_numpy as _as_numpy
from gmmgan.plotting._save import save_figure

__all__ = ["plot_training_curves", "read_training_log"]


# ------------------------------------------------------------------------------ training curves
# Columns of log.jsonl that are counters, not curves; panels group the curves that share a scale.
_LOG_AXES = ("kimg", "step", "wall_s")
_LOG_PANELS = ((("loss_d", "loss_g"), "loss"), (("images_per_s",), "images / s"))


def read_training_log(path: str | Path) -> dict[str, np.ndarray]:
    """The numeric columns of a run's ``log.jsonl``, sorted by kimg, one row per kimg.

    ``gmmgan train`` appends one JSON object per ``log_kimg``. A resumed run logs again from its last
    snapshot, so a kimg can appear twice: the later line (the run that went on) is kept. A last line
    cut short (a run killed while writing it) is skipped; any other unreadable line is an error.

    Parameters
    ----------
    path : str or Path
        The ``log.jsonl`` file.

    Returns
    -------
    dict of str to ndarray of shape (n_rows,)
        ``'kimg'`` and every other key whose values are numbers on every row (float64; a key
        missing from some rows is NaN there).

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        A line that is not a JSON object with a numeric ``kimg``, or a file with no such line.
    """
    import json
    import math

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"training log '{path}' does not exist; 'gmmgan train' writes it in the run folder.")
    lines = path.read_text(encoding="utf-8").splitlines()
    rows: dict[float, dict] = {}
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            if i == len(lines):
                continue  # the last line of a run that was killed while writing it
            raise ValueError(f"{path}, line {i}: not valid JSON ({line[:60]!r}); each line must be one JSON object.") from None
        kimg = entry.get("kimg") if isinstance(entry, dict) else None
        if isinstance(kimg, bool) or not isinstance(kimg, (int, float)) or not math.isfinite(kimg):
            raise ValueError(f"{path}, line {i}: expected a JSON object with a numeric 'kimg', got {line[:60]!r}.")
        rows[float(kimg)] = entry  # a later line for the same kimg (a resumed run) replaces the earlier
    if not rows:
        raise ValueError(f"training log '{path}' has no entries yet (the first comes after schedule.log_kimg).")
    kimgs = sorted(rows)
    keys = [k for k in dict.fromkeys(k for r in rows.values() for k in r)
            if all(isinstance(r.get(k), (int, float)) and not isinstance(r.get(k), bool)
                   for r in rows.values() if k in r)]
    return {k: np.array([float(rows[x].get(k, np.nan)) for x in kimgs]) for k in keys}


def plot_training_curves(log: str | Path | dict, path: str | Path | None, *, title: str | None = None,
                         dpi: int = 100):
    """Plot the curves of a training log against kimg: one panel per scale.

    Panels: the losses (``loss_d`` and ``loss_g`` together), throughput (``images_per_s``), then one
    panel for each other numeric column (``step`` and ``wall_s`` are axes, not curves).

    Parameters
    ----------
    log : str, Path or dict of str to array-like
        A ``log.jsonl`` path, or :func:`read_training_log`'s output (with ``'kimg'``).
    path : str, Path or None
        Where to write the PNG (parent folders are created); None skips writing.
    title : str, optional
        Figure title (default: the log's folder name, if a path was given).
    dpi : int, default=100

    Returns
    -------
    matplotlib.figure.Figure
        One Axes per panel; every curve is a ``Line2D`` labelled with its column name.

    Raises
    ------
    ValueError
        The log has no ``kimg`` or no curve to plot.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if isinstance(log, (str, Path)):
        title = title if title is not None else Path(log).resolve().parent.name
        log = read_training_log(log)
    cols = {k: _as_numpy(v, k).ravel() for k, v in dict(log).items()}
    if "kimg" not in cols:
        raise ValueError(f"the log needs a 'kimg' column to plot against; it has {sorted(cols)}.")
    x = cols["kimg"]
    for k, v in cols.items():
        if v.shape != x.shape:
            raise ValueError(f"column {k!r} has {v.size} values but 'kimg' has {x.size}; give one value per row.")
    panels = [([c for c in names if c in cols], label) for names, label in _LOG_PANELS]
    grouped = {c for names, _ in _LOG_PANELS for c in names}
    panels += [([c], c) for c in cols if c not in grouped and c not in _LOG_AXES]
    panels = [(names, label) for names, label in panels if names]
    if not panels:
        raise ValueError(f"nothing to plot: the log has no curve besides {sorted(cols)}.")

    fig = Figure(figsize=(6.5, 2.3 * len(panels) + 0.4), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    for ax, (names, label) in zip(axes, panels):
        for name in names:
            ax.plot(x, cols[name], marker="." if x.size < 30 else None, linewidth=1.2, label=name)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        if len(names) > 1:
            ax.legend(fontsize=8, frameon=False)
    axes[-1].set_xlabel("kimg (thousands of real images shown to D)")
    if title:
        fig.suptitle(title, fontsize=10)
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_figure(fig, path, dpi=dpi, format="png")
    return fig
