"""Picture of model selection: the information criterion against the number of components K.

Uses matplotlib's object-oriented API with the Agg canvas (no pyplot), like gmmgan.plotting, so
it works on headless machines and leaves the caller's global figure state alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gmmgan.plotting._save import save_figure

__all__ = ["plot_criterion"]


def _scores_of(model_or_scores: Any) -> tuple[dict, dict, str, int | None]:
    """(criterion scores, other criterion's scores or {}, criterion name, chosen K) of the input."""
    if isinstance(model_or_scores, dict):
        scores = model_or_scores
        name, other, chosen = "criterion", {}, None
    elif hasattr(model_or_scores, "criterion_scores_"):
        m = model_or_scores
        scores, name, chosen = m.criterion_scores_, m.criterion_, m.n_components_
        other = m.aic_ if name == "bic" else m.bic_
    else:
        raise ValueError(
            "plot_criterion needs a dict {K: score} or a model fitted with n_components='auto' / "
            f"select_n_components (which has criterion_scores_); got {type(model_or_scores).__name__}."
        )
    if not scores:
        raise ValueError("No scores to plot: the dict of {K: score} is empty.")
    try:
        scores = {int(k): float(v) for k, v in scores.items()}
    except (TypeError, ValueError):
        raise ValueError("Scores must map integer K to a number, e.g. {1: 523.1, 2: 410.7}.") from None
    return scores, {int(k): float(v) for k, v in other.items()}, name, chosen


def plot_criterion(model_or_scores: Any, path: str | Path | None = None, *, title: str | None = None, dpi: int = 120):
    """Plot BIC/AIC against K and mark the chosen K.

    Parameters
    ----------
    model_or_scores : GaussianMixture fitted with n_components='auto' (or returned by
        :func:`gmmgan.mixture.select_n_components`), or a dict {K: score}
        With a model, both BIC and AIC are drawn and the chosen K is marked.
    path : str, Path or None
        Where to write the PNG (parent folders are created); None skips writing.
    title : str, optional
    dpi : int, default=120

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    scores, other, name, chosen = _scores_of(model_or_scores)
    if chosen is None:
        chosen = min(scores, key=lambda k: (scores[k], k))
    ks = sorted(scores)
    fig = Figure(figsize=(6, 4), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot(ks, [scores[k] for k in ks], "o-", label=name.upper())
    if other:
        ko = sorted(other)
        ax.plot(ko, [other[k] for k in ko], "s--", alpha=0.6, label=("AIC" if name == "bic" else "BIC"))
    ax.axvline(chosen, color="k", lw=0.8, ls=":")
    ax.plot([chosen], [scores[chosen]], "r*", ms=14, label=f"chosen K = {chosen}")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # K is a count: no 2.5 ticks
    ax.set_xlabel("number of components K")
    ax.set_ylabel("information criterion (lower is better)")
    ax.set_title(title or f"{name.upper()} against K")
    ax.legend()
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_figure(fig, path, dpi=dpi)
    return fig
