"""Pictures of fitted 2-D Gaussian mixtures: the data, and each component's 1- and 2-sigma ellipse.

Uses matplotlib's object-oriented API with the Agg canvas (no pyplot), so it works on headless
machines and never touches a global figure or backend that the caller may have set up.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from gmmgan.plotting._arrays import as_numpy as _as_numpy
from gmmgan.plotting._save import save_figure

__all__ = ["full_covariances", "plot_gmm_2d"]

_COVARIANCE_TYPES = ("full", "diag", "spherical", "tied")


def _covariance_table():
    # The mixture library's table knows each type's shape and expansion. Imported on first use
    # so that importing this numpy-only module does not import torch.
    from gmmgan.mixture._covariance import COVARIANCES

    return COVARIANCES


def _infer_covariance_type(covariances: np.ndarray, n_components: int, n_features: int) -> str:
    shape = covariances.shape
    table = _covariance_table()
    matches = [name for name in _COVARIANCE_TYPES if table[name].shape(n_components, n_features) == shape]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise ValueError(
            f"covariances of shape {shape} match no covariance type for {n_components} components "
            f"in {n_features} dimensions; expected (K, D, D) full, (K, D) diag, (K,) spherical or "
            f"(D, D) tied"
        )
    raise ValueError(
        f"covariances of shape {shape} are ambiguous ({' or '.join(matches)}); "
        f"pass covariance_type= explicitly"
    )


def full_covariances(
    covariances: Any,
    n_components: int,
    n_features: int,
    covariance_type: str | None = None,
) -> np.ndarray:
    """Expand covariances of any covariance type to full matrices.

    Parameters
    ----------
    covariances : array-like
        Shape (K, D, D) for 'full', (K, D) for 'diag', (K,) for 'spherical', (D, D) for 'tied',
        as in scikit-learn's ``GaussianMixture.covariances_``.
    n_components : int
        Number of components K.
    n_features : int
        Number of features D.
    covariance_type : {'full', 'diag', 'spherical', 'tied'} or None, default=None
        Inferred from the shape when None; give it when the shape is ambiguous
        (e.g. K == D, where 'diag' (K, D) and 'tied' (D, D) look alike).

    Returns
    -------
    ndarray of shape (K, D, D)
        A new float64 array of full covariance matrices.
    """
    cov = _as_numpy(covariances, "covariances")
    if covariance_type is None:
        covariance_type = _infer_covariance_type(cov, n_components, n_features)
    if covariance_type not in _COVARIANCE_TYPES:
        raise ValueError(
            f"covariance_type must be one of {', '.join(_COVARIANCE_TYPES)}, got {covariance_type!r}"
        )
    layout = _covariance_table()[covariance_type]
    expected = layout.shape(n_components, n_features)
    if cov.shape != expected:
        raise ValueError(
            f"{covariance_type!r} covariances for {n_components} components in {n_features} "
            f"dimensions must have shape {expected}, got {cov.shape}"
        )
    # A copy: the table may hand back ``cov`` itself or a read-only view of it.
    return np.array(layout.full_covariances(cov, n_components, n_features))


def _ellipse_geometry(cov: np.ndarray, n_std: float) -> tuple[float, float, float]:
    """Width, height and angle (degrees) of the n_std-sigma ellipse of a 2x2 covariance."""
    eigvals, eigvecs = np.linalg.eigh(cov)
    eigvals = np.clip(eigvals, 0.0, None)  # tiny negative values from round-off
    # eigh sorts ascending; the major axis is the last eigenvector.
    major = eigvecs[:, 1]
    angle = float(np.degrees(np.arctan2(major[1], major[0])))
    width = 2.0 * n_std * float(np.sqrt(eigvals[1]))
    height = 2.0 * n_std * float(np.sqrt(eigvals[0]))
    return width, height, angle


def _component_colors(n_components: int) -> list:
    import matplotlib

    if n_components <= 10:
        cmap = matplotlib.colormaps["tab10"]
        return [cmap(k) for k in range(n_components)]
    cmap = matplotlib.colormaps["hsv"]
    return [cmap(k / n_components) for k in range(n_components)]


def _draw_component(ax, mean, cov, color, linewidth: float, label: str | None) -> None:
    from matplotlib.patches import Ellipse

    for n_std, style in ((1.0, "-"), (2.0, "--")):
        width, height, angle = _ellipse_geometry(cov, n_std)
        ax.add_patch(Ellipse(mean, width, height, angle=angle, fill=False,
                             edgecolor=color, linewidth=linewidth, linestyle=style))
    ax.plot(mean[0], mean[1], marker="x", color=color, markersize=6, markeredgewidth=1.5,
            linestyle="none", label=label)


def _ellipses_are_tiny(X, means: np.ndarray, covs: np.ndarray) -> bool:
    """True when the widest 2-sigma ellipse is under 5% of the plotted extent.

    Mixtures like the ring (sigma 0.01 on a unit circle) draw ellipses thinner than their line
    width; a zoom panel then shows the fitted shape of one component at a readable scale.
    """
    if len(means) == 0:
        return False
    pts = means if X is None else np.concatenate([means, X])
    span = float(np.max(pts.max(axis=0) - pts.min(axis=0)))
    sd_max = float(np.sqrt(np.clip(np.linalg.eigvalsh(covs)[:, -1], 0.0, None)).max())
    return span > 0 and 4.0 * sd_max < 0.05 * span


def plot_gmm_2d(
    X: Any,
    weights: Any,
    means: Any,
    covariances: Any,
    path: str | Path | None,
    *,
    covariance_type: str | None = None,
    title: str | None = None,
    max_points: int = 20_000,
    seed: int = 0,
    dpi: int = 120,
):
    """Plot 2-D data with each mixture component's mean and 1- and 2-sigma ellipses.

    Line width (and, for up to 10 components, the legend) shows each component's weight.
    Every component gets two ``matplotlib.patches.Ellipse`` patches (1 sigma solid, 2 sigma dashed).

    Parameters
    ----------
    X : array-like of shape (n_samples, 2) or None
        The data; a random subset of at most ``max_points`` rows is drawn (small alpha).
        None plots the mixture alone.
    weights : array-like of shape (K,)
        Mixture weights.
    means : array-like of shape (K, 2)
        Component means.
    covariances : array-like
        Covariances in any covariance type's layout (see :func:`full_covariances`).
    path : str, Path or None
        Where to write the PNG; parent folders are created. None skips writing.
    covariance_type : {'full', 'diag', 'spherical', 'tied'} or None, default=None
        Layout of ``covariances``; inferred from the shape when None.
    title : str or None, default=None
        Figure title.
    max_points : int, default=20000
        Largest number of data points drawn, to keep plotting fast on big data.
    seed : int, default=0
        Seed of the subsample.
    dpi : int, default=120
        Resolution of the PNG.

    Returns
    -------
    matplotlib.figure.Figure
        The figure, for further editing or display in a notebook. Its first Axes is the full
        view; when the ellipses are too small to see there (e.g. the ring, sigma 0.01), a second
        Axes zooms on the heaviest component.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    means = _as_numpy(means, "means")
    weights = _as_numpy(weights, "weights")
    if means.ndim != 2 or means.shape[1] != 2:
        raise ValueError(
            f"plot_gmm_2d draws 2-D mixtures only; means must have shape (K, 2), got {means.shape}"
        )
    n_components = means.shape[0]
    if weights.shape != (n_components,):
        raise ValueError(f"weights must have shape ({n_components},), got {weights.shape}")
    covs = full_covariances(covariances, n_components, 2, covariance_type)
    if max_points < 1:
        raise ValueError(f"max_points must be >= 1, got {max_points}")

    if X is not None:
        X = _as_numpy(X, "X")
        if X.ndim != 2 or X.shape[1] != 2:
            raise ValueError(f"X must have shape (n_samples, 2), got {X.shape}")
        if X.shape[0] > max_points:
            rng = np.random.default_rng(seed)
            X = X[np.sort(rng.choice(X.shape[0], size=max_points, replace=False))]

    zoom = _ellipses_are_tiny(X, means, covs)
    fig = Figure(figsize=(10.5, 7.5) if zoom else (7, 7.5), layout="constrained")
    FigureCanvasAgg(fig)
    if zoom:
        ax, zoom_ax = fig.subplots(1, 2, width_ratios=[7, 3.5])
    else:
        ax, zoom_ax = fig.add_subplot(), None

    if X is not None:
        # Alpha falls with the number of points so dense regions do not saturate to a blob.
        alpha = float(np.clip(2000.0 / max(len(X), 1), 0.1, 0.6))
        ax.scatter(X[:, 0], X[:, 1], s=2, c="0.35", alpha=alpha, linewidths=0,
                   rasterized=True, label=f"data ({len(X):,} points shown)")

    colors = _component_colors(n_components)
    w_max = float(weights.max()) if n_components else 1.0
    for k in range(n_components):
        lw = 0.6 + 2.4 * float(weights[k]) / w_max if w_max > 0 else 1.0
        label = f"{k}: w={weights[k]:.3f}" if n_components <= 10 else None
        _draw_component(ax, means[k], covs[k], colors[k], lw, label)

    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xlabel("x1")
    ax.set_ylabel("x2")
    ax.set_title(title or f"Gaussian mixture, K={n_components}")
    note = "ellipses: 1σ (solid), 2σ (dashed); line width ∝ weight"
    ax.text(0.01, 0.01, note, transform=ax.transAxes, fontsize=8, color="0.3",
            va="bottom", ha="left")
    if n_components <= 10 or X is not None:
        # Below the axes, so it never hides a component.
        n_entries = len(ax.get_legend_handles_labels()[1])
        legend = ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.08), fontsize=8,
                           markerscale=1.5, ncol=min(4, n_entries), frameon=False)
        for handle in legend.legend_handles:
            handle.set_alpha(1.0)

    if zoom_ax is not None:
        k = int(np.argmax(weights))
        half = 4.0 * float(np.sqrt(max(np.linalg.eigvalsh(covs[k])[-1], 1e-24)))
        if X is not None:
            near = np.all(np.abs(X - means[k]) < half, axis=1)
            zoom_ax.scatter(X[near, 0], X[near, 1], s=3, c="0.35", alpha=0.4, linewidths=0,
                            rasterized=True)
        _draw_component(zoom_ax, means[k], covs[k], colors[k], 1.5, None)
        zoom_ax.set_xlim(means[k, 0] - half, means[k, 0] + half)
        zoom_ax.set_ylim(means[k, 1] - half, means[k, 1] + half)
        zoom_ax.set_aspect("equal")
        zoom_ax.tick_params(labelsize=7)
        zoom_ax.set_title(f"zoom on component {k} (w={weights[k]:.3f}),\n"
                          f"ellipses too small to see at full scale", fontsize=9)

    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_figure(fig, path, dpi=dpi, format="png")
    return fig
