"""Tests of gmmgan.plotting: covariance expansion and the 2-D mixture picture."""

from __future__ import annotations

import numpy as np
import pytest
from _helpers import png_size
from hypothesis import given, settings
from hypothesis import strategies as st
from matplotlib.patches import Ellipse

from gmmgan.plotting import (
    full_covariances,
    plot_gmm_2d,
    plot_training_curves,
    read_training_log,
)


def _random_spd(rng, k, d):
    A = rng.standard_normal((k, d, d))
    return A @ A.transpose(0, 2, 1) + 0.1 * np.eye(d)


# ----------------------------------------------------------------------------- full_covariances
@settings(max_examples=40, deadline=None, derandomize=True)  # same examples every run
@given(k=st.integers(1, 6), d=st.integers(1, 5), seed=st.integers(0, 2**31 - 1))
def test_full_covariances_matches_each_type(k, d, seed):
    rng = np.random.default_rng(seed)
    full = _random_spd(rng, k, d)
    diag = rng.uniform(0.1, 3.0, size=(k, d))
    spherical = rng.uniform(0.1, 3.0, size=k)
    tied = _random_spd(rng, 1, d)[0]

    np.testing.assert_array_equal(full_covariances(full, k, d, "full"), full)
    out = full_covariances(diag, k, d, "diag")
    for j in range(k):
        np.testing.assert_array_equal(out[j], np.diag(diag[j]))
    out = full_covariances(spherical, k, d, "spherical")
    for j in range(k):
        np.testing.assert_array_equal(out[j], spherical[j] * np.eye(d))
    out = full_covariances(tied, k, d, "tied")
    assert out.shape == (k, d, d)
    for j in range(k):
        np.testing.assert_array_equal(out[j], tied)


def test_full_covariances_infers_unambiguous_type_and_copies():
    rng = np.random.default_rng(0)
    diag = rng.uniform(0.1, 1.0, size=(3, 2))
    out = full_covariances(diag, 3, 2)  # (3, 2) can only be 'diag' when K=3, D=2
    np.testing.assert_array_equal(out[1], np.diag(diag[1]))
    tied = _random_spd(rng, 1, 2)[0]
    out = full_covariances(tied, 3, 2)
    out[0, 0, 0] = 99.0  # the tied expansion must be a writable copy, not a broadcast view
    assert out[1, 0, 0] != 99.0 and tied[0, 0] != 99.0


def test_full_covariances_accepts_torch_tensors():
    torch = pytest.importorskip("torch")
    cov = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float32)
    out = full_covariances(cov, 2, 2, "diag")
    np.testing.assert_allclose(out[1], np.diag([3.0, 4.0]))


def test_full_covariances_ambiguous_shape_asks_for_type():
    # K == D: 'diag' (K, D) and 'tied' (D, D) have the same shape.
    with pytest.raises(ValueError, match="ambiguous.*covariance_type="):
        full_covariances(np.ones((2, 2)), 2, 2)


@pytest.mark.parametrize(
    "cov, ctype, match",
    [
        (np.ones((3, 2, 2)), "full", r"'full' covariances .* must have shape \(2, 2, 2\)"),
        (np.ones((2, 3)), "diag", r"'diag' covariances .* must have shape \(2, 2\)"),
        (np.ones(2), "bogus", "covariance_type must be one of full, diag, spherical, tied"),
        (np.ones((5, 5, 5, 5)), None, "match no covariance type"),
    ],
)
def test_full_covariances_bad_input(cov, ctype, match):
    with pytest.raises(ValueError, match=match):
        full_covariances(cov, 2, 2, ctype)


# ---------------------------------------------------------------------------------- plot_gmm_2d
def _toy(rng, n=600):
    means = np.array([[0.0, 0.0], [4.0, 1.0], [-3.0, 3.0]])
    X = means[rng.integers(0, 3, n)] + rng.standard_normal((n, 2)) * 0.6
    return X, means


@pytest.mark.parametrize("ctype", ["full", "diag", "spherical", "tied"])
def test_plot_writes_png_with_two_ellipses_per_component(tmp_path, ctype):
    rng = np.random.default_rng(1)
    X, means = _toy(rng)
    weights = np.array([0.5, 0.3, 0.2])
    covs = {
        "full": _random_spd(rng, 3, 2),
        "diag": rng.uniform(0.2, 1.0, size=(3, 2)),
        "spherical": rng.uniform(0.2, 1.0, size=3),
        "tied": _random_spd(rng, 1, 2)[0],
    }[ctype]
    path = tmp_path / "sub" / "fit.png"  # parent folder is created
    fig = plot_gmm_2d(X, weights, means, covs, path, covariance_type=ctype, title="t")
    width, height = png_size(path)
    assert width > 300 and height > 300
    ax = fig.axes[0]
    ellipses = [p for p in ax.patches if isinstance(p, Ellipse)]
    assert len(ellipses) == 2 * 3
    # Ellipse geometry: the 1-sigma ellipse's axes are 2*sqrt(eigenvalues) of the covariance.
    full = full_covariances(covs, 3, 2, ctype)
    for j in range(3):
        one_sigma, two_sigma = ellipses[2 * j], ellipses[2 * j + 1]
        expected = 2.0 * np.sqrt(np.sort(np.linalg.eigvalsh(full[j])))
        np.testing.assert_allclose(sorted([one_sigma.width, one_sigma.height]), expected,
                                   rtol=1e-9)
        np.testing.assert_allclose(sorted([two_sigma.width, two_sigma.height]), 2 * expected,
                                   rtol=1e-9)
        np.testing.assert_allclose(one_sigma.center, means[j])
    # Heavier components get thicker lines.
    assert ellipses[0].get_linewidth() > ellipses[2].get_linewidth() > ellipses[4].get_linewidth()
    assert len(fig.axes) == 1  # ellipses are large enough: no zoom panel


def test_plot_ellipse_angle_follows_major_axis(tmp_path):
    cov = np.array([[[2.0, 1.9], [1.9, 2.0]]])  # major axis along (1, 1): 45 degrees
    fig = plot_gmm_2d(None, np.array([1.0]), np.zeros((1, 2)), cov, None)
    ellipse = fig.axes[0].patches[0]
    assert ellipse.width > ellipse.height
    assert ellipse.angle % 180 == pytest.approx(45.0)


def test_plot_zoom_panel_for_tiny_components(tmp_path):
    rng = np.random.default_rng(2)
    angles = 2 * np.pi * np.arange(8) / 8
    means = np.c_[np.cos(angles), np.sin(angles)]
    X = means[rng.integers(0, 8, 4000)] + 0.01 * rng.standard_normal((4000, 2))
    weights = np.full(8, 1 / 8)
    weights[3] = 0.2
    weights /= weights.sum()
    fig = plot_gmm_2d(X, weights, means, np.full(8, 1e-4), tmp_path / "ring.png")
    assert len(fig.axes) == 2
    zoom = fig.axes[1]
    x0, x1 = zoom.get_xlim()
    assert x0 < means[3, 0] < x1 and (x1 - x0) < 0.2  # zoomed on the heaviest component
    png_size(tmp_path / "ring.png")


def test_plot_subsamples_large_data(tmp_path):
    rng = np.random.default_rng(3)
    X = rng.standard_normal((5000, 2))
    fig = plot_gmm_2d(X, [1.0], [[0.0, 0.0]], [[[1.0, 0.0], [0.0, 1.0]]], None, max_points=700)
    scatter = fig.axes[0].collections[0]
    assert scatter.get_offsets().shape == (700, 2)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"means": np.zeros((2, 3)), "covariances": np.ones((2, 3))}, "2-D mixtures only"),
        ({"weights": np.ones(3)}, r"weights must have shape \(2,\)"),
        ({"X": np.zeros((10, 3))}, r"X must have shape \(n_samples, 2\)"),
        ({"max_points": 0}, "max_points must be >= 1"),
    ],
)
def test_plot_bad_input(kwargs, match):
    args = {"X": np.zeros((10, 2)), "weights": np.array([0.5, 0.5]), "means": np.zeros((2, 2)),
                "covariances": np.ones(2), "path": None}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        plot_gmm_2d(**args)


# ------------------------------------------------------------------------------ training curves
def _write_log(path, rows, tail=""):
    import json

    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + tail)
    return path


def _log_rows(kimgs, offset=0.0):
    return [{"kimg": k, "step": int(k * 100), "loss_d": 1.0 + offset + k, "loss_g": 2.0 - k,
             "images_per_s": 500.0 + k, "wall_s": 3.0 * k} for k in kimgs]


def test_read_training_log_sorts_keeps_resumed_lines_and_skips_a_cut_last_line(tmp_path):
    # A run logged 0.1..0.3, was killed, resumed from its 0.2 snapshot and logged 0.3, 0.4 again.
    rows = _log_rows([0.1, 0.2, 0.3]) + _log_rows([0.3, 0.4], offset=10.0)
    log = read_training_log(_write_log(tmp_path / "log.jsonl", rows, tail='{"kimg": 0.5, "lo'))
    np.testing.assert_allclose(log["kimg"], [0.1, 0.2, 0.3, 0.4])
    np.testing.assert_allclose(log["loss_d"], [1.1, 1.2, 11.3, 11.4])  # the resumed run's 0.3 wins
    assert {"step", "loss_g", "images_per_s", "wall_s"} <= set(log)


def test_read_training_log_non_numeric_and_missing_columns(tmp_path):
    rows = [{"kimg": 0.1, "note": "a", "loss_d": 1.0}, {"kimg": 0.2, "note": "b"}]
    log = read_training_log(_write_log(tmp_path / "log.jsonl", rows))
    assert "note" not in log  # text columns are not curves
    np.testing.assert_array_equal(np.isnan(log["loss_d"]), [False, True])


@pytest.mark.parametrize(
    "text, match",
    [
        ('{"kimg": 0.1}\n{oops\n{"kimg": 0.2}\n', "line 2: not valid JSON"),
        ('{"kimg": 0.1}\n[1, 2]\n', "line 2: expected a JSON object with a numeric 'kimg'"),
        ('{"step": 3}\n', "line 1: expected .* numeric 'kimg'"),
        ("\n", "no entries yet"),
    ],
)
def test_read_training_log_bad_input(tmp_path, text, match):
    (tmp_path / "log.jsonl").write_text(text)
    with pytest.raises(ValueError, match=match):
        read_training_log(tmp_path / "log.jsonl")


def test_read_training_log_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_training_log(tmp_path / "log.jsonl")


def test_plot_training_curves_panels_and_png(tmp_path):
    (tmp_path / "run").mkdir()
    path = _write_log(tmp_path / "run" / "log.jsonl", _log_rows([0.1, 0.2, 0.3]))
    fig = plot_training_curves(path, tmp_path / "out" / "curves.png")
    width, height = png_size(tmp_path / "out" / "curves.png")
    assert width > 300 and height > 300
    assert len(fig.axes) == 2  # losses together; images/s; step and wall_s are not curves
    losses, speed = fig.axes
    assert [line.get_label() for line in losses.lines] == ["loss_d", "loss_g"]
    np.testing.assert_allclose(losses.lines[1].get_xdata(), [0.1, 0.2, 0.3])
    np.testing.assert_allclose(losses.lines[1].get_ydata(), [1.9, 1.8, 1.7])
    np.testing.assert_allclose(speed.lines[0].get_ydata(), [500.1, 500.2, 500.3])
    assert fig._suptitle.get_text() == "run"


def test_plot_training_curves_other_columns_get_their_own_panel():
    fig = plot_training_curves({"kimg": [1, 2], "loss_d": [0.5, 0.4], "fid": [30.0, 20.0]}, None)
    assert [ax.get_ylabel() for ax in fig.axes] == ["loss", "fid"]
    assert [line.get_label() for line in fig.axes[0].lines] == ["loss_d"]


@pytest.mark.parametrize(
    "log, match",
    [
        ({"loss_d": [1.0]}, "needs a 'kimg' column"),
        ({"kimg": [1.0, 2.0], "loss_d": [1.0]}, "'loss_d' has 1 values but 'kimg' has 2"),
        ({"kimg": [1.0], "step": [3]}, "nothing to plot"),
    ],
)
def test_plot_training_curves_bad_input(log, match):
    with pytest.raises(ValueError, match=match):
        plot_training_curves(log, None)
