"""Tests of the command line (gmmgan.cli) and `gmmgan fit`, in-process and once as a subprocess."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _helpers import PNG_MAGIC, assert_clean_error, cli

import gmmgan
from gmmgan import GaussianMixture
from gmmgan.cli import main

CENTERS = np.array([[-5.0, 0.0], [0.0, 5.0], [5.0, 0.0]])


def _sorted_rows(a) -> np.ndarray:
    a = np.asarray(a)
    return a[np.lexsort(a.T[::-1])]


@pytest.fixture(scope="module")
def blobs() -> np.ndarray:
    rng = np.random.default_rng(0)
    return CENTERS[rng.integers(0, 3, 300)] + 0.5 * rng.standard_normal((300, 2))


@pytest.fixture
def npy(tmp_path, blobs) -> Path:
    path = tmp_path / "blobs.npy"
    np.save(path, blobs)
    return path


# ------------------------------------------------------------------------------ successful fits
def test_fit_npy_saves_model_and_png(tmp_path, capsys, npy, blobs):
    model, png = tmp_path / "m.safetensors", tmp_path / "fit.png"
    rc, out, err = cli(capsys, "fit", npy, "-k", 3, "-o", model, "--plot", png)
    assert rc == 0, err
    gm = GaussianMixture.load(model)
    np.testing.assert_allclose(_sorted_rows(gm.means_), CENTERS, atol=0.2)
    assert png.read_bytes()[:8] == PNG_MAGIC
    for word in ("converged", "log-likelihood / sample", "BIC", "AIC", "weight", "init 1/1",
                 "lower bound", str(model)):
        assert word in out, f"{word!r} missing from the summary:\n{out}"
    for name, value in (("BIC", gm.bic(blobs)), ("AIC", gm.aic(blobs)),
                        ("log-likelihood / sample", gm.score(blobs))):
        shown = re.search(rf"{name}\s+(-?[\d,]+\.\d+)", out).group(1)
        assert float(shown.replace(",", "")) == pytest.approx(value, abs=0.1), name


def test_csv_with_header_and_txt_match_npy(tmp_path, capsys, npy, blobs):
    fits = {}
    csv = tmp_path / "blobs.csv"
    csv.write_text("x,y\n" + "\n".join(f"{a:.17g},{b:.17g}" for a, b in blobs) + "\n")
    txt = tmp_path / "blobs.txt"
    txt.write_text("# a comment line\n" + "\n".join(f"{a:.17g}   {b:.17g}" for a, b in blobs) + "\n")
    for path in (npy, csv, txt):
        model = tmp_path / f"{path.suffix[1:]}.safetensors"
        rc, out, err = cli(capsys, "fit", path, "-k", 3, "--covariance-type", "diag",
                           "-o", model, "--no-plot")
        assert rc == 0, err
        if path == csv:
            assert "header line skipped" in out
        fits[path.suffix] = GaussianMixture.load(model)
    # Same numbers and the same seed: the three files must give the same model.
    for suffix in (".csv", ".txt"):
        np.testing.assert_allclose(fits[suffix].means_, fits[".npy"].means_, rtol=1e-6)
        np.testing.assert_allclose(fits[suffix].covariances_, fits[".npy"].covariances_,
                                   rtol=1e-6)
    assert np.asarray(fits[".npy"].covariances_).shape == (3, 2)
    assert not list(tmp_path.glob("*.png"))  # --no-plot


def test_builtin_ring_finds_all_modes(tmp_path, capsys):
    model = tmp_path / "ring.safetensors"
    rc, out, err = cli(capsys, "fit", "ring", "--n-samples", 2000, "-o", model, "--no-plot")
    assert rc == 0, err
    gm = GaussianMixture.load(model)
    angles = 2 * np.pi * np.arange(8) / 8
    truth = np.c_[np.cos(angles), np.sin(angles)]
    dist = np.linalg.norm(truth[:, None, :] - np.asarray(gm.means_)[None], axis=-1)
    assert dist.min(axis=1).max() < 0.02, "a ring mode has no fitted mean near it"


def test_default_is_grid_and_refuses_to_overwrite(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc, out, err = cli(capsys, "fit", "--n-samples", 1000, "--max-iter", 20)
    assert rc == 0, err
    assert "grid" in out
    gm = GaussianMixture.load(tmp_path / "gmmgan_model.safetensors")
    assert np.asarray(gm.means_).shape == (25, 2)
    assert (tmp_path / "gmmgan_fit.png").read_bytes()[:8] == PNG_MAGIC
    before = (tmp_path / "gmmgan_model.safetensors").stat().st_mtime_ns

    rc, out, err = cli(capsys, "fit", "--n-samples", 1000)
    assert rc == 2
    assert "already exists" in err and "--force" in err
    assert (tmp_path / "gmmgan_model.safetensors").stat().st_mtime_ns == before

    rc, out, err = cli(capsys, "fit", "--n-samples", 1000, "--max-iter", 2, "--no-plot",
                       "--force", "-q")
    assert rc == 0, err
    assert out == ""  # --quiet
    assert (tmp_path / "gmmgan_model.safetensors").stat().st_mtime_ns != before


@pytest.mark.parametrize("covariance_type", ["full", "diag", "spherical", "tied"])
def test_summary_bic_aic_match_the_model(covariance_type, blobs):
    from gmmgan.commands.fit import n_parameters

    X = np.c_[blobs, blobs[:, :1] * 0.5 + 0.1 * blobs[:, 1:]]  # 3 features
    gm = GaussianMixture(3, covariance_type=covariance_type, random_state=0).fit(X)
    p = n_parameters(3, 3, covariance_type)
    n, ll = X.shape[0], gm.score(X)
    assert -2 * ll * n + p * np.log(n) == pytest.approx(gm.bic(X), rel=1e-12)
    assert -2 * ll * n + 2 * p == pytest.approx(gm.aic(X), rel=1e-12)


def test_n_init_shows_one_line_per_init(tmp_path, capsys, npy):
    rc, out, err = cli(capsys, "fit", npy, "-k", 3, "--n-init", 2, "-o",
                       tmp_path / "m.safetensors", "--no-plot")
    assert rc == 0, err
    assert "init 1/2" in out and "init 2/2" in out


def test_higher_dimensional_data_is_not_plotted(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(1)
    np.save("x3.npy", rng.standard_normal((200, 3)).astype(np.float32))
    rc, out, err = cli(capsys, "fit", "x3.npy", "-k", 2, "--max-iter", 20)
    assert rc == 0, err
    assert not (tmp_path / "gmmgan_fit.png").exists()
    rc, out, err = cli(capsys, "fit", "x3.npy", "-k", 2, "--plot", "p.png", "-o", "b.safetensors")
    assert rc == 2 and "--plot needs 2-D data" in err


# ---------------------------------------------------------------------------------- bad inputs
def _write(tmp_path: Path, name: str, content) -> Path:
    path = tmp_path / name
    if isinstance(content, np.ndarray):
        np.save(path, content, allow_pickle=True)
    elif isinstance(content, str):
        path.write_text(content)
    else:
        path.mkdir()
    return path


_NAN = np.ones((10, 2))
_NAN[3, 1] = np.nan

BAD_INPUTS = [
    # (id, file name, file content or None, extra args, message pieces)
    ("missing-file", "nope.npy", None, ["-k", "2"], ["nope.npy", "does not exist"]),
    ("unknown-name", "rnig", None, ["-k", "2"], ["does not exist", "built-in data are: ring, grid"]),
    ("unknown-extension", "x.json", "[[1, 2]]", ["-k", "2"], ["unsupported file type '.json'"]),
    ("folder", "folder.npy", ..., ["-k", "2"], ["is a folder"]),
    ("non-numeric-csv", "x.csv", "1,2\n3,abc\n", ["-k", "1"], ["not a table of numbers", "abc"]),
    ("ragged-csv", "x.csv", "1,2\n3,4,5\n", ["-k", "1"], ["not a table of numbers"]),
    ("empty-csv", "x.csv", "# nothing\n\n", ["-k", "1"], ["contains no data rows"]),
    ("nan-npy", "x.npy", _NAN, ["-k", "2"], ["NaN", "row 3"]),
    ("nan-csv", "x.txt", "1 2\n3 nan\n5 6\n", ["-k", "2"], ["NaN", "row 1"]),
    ("not-npy", "x.npy", "garbage", ["-k", "2"], ["not a .npy file", "no .npy header"]),
    ("header-only", "x.csv", "a,b\n", ["-k", "1"], ["contains no data rows", "'a,b'"]),
    ("1-d", "x.npy", np.arange(10.0), ["-k", "2"], ["1-D array", "reshape(-1, 1)"]),
    ("3-d", "x.npy", np.ones((2, 3, 4)), ["-k", "2"], ["2-D array", "(2, 3, 4)"]),
    ("strings", "x.npy", np.array([["a", "b"]]), ["-k", "1"], ["must hold numbers"]),
    ("pickled-objects", "x.npy", np.array([[1, None]], dtype=object), ["-k", "1"],
     ["must hold numbers", "Python objects"]),
    ("k-zero", "ok.npy", np.ones((10, 2)), ["-k", "0"], ["K must be at least 1"]),
    ("k-negative", "ok.npy", np.ones((10, 2)), ["-k", "-3"], ["K must be at least 1"]),
    ("k-too-large", "ok.npy", np.ones((10, 2)), ["-k", "11"], ["-k 11 is more than the 10"]),
    ("k-not-integer", "ok.npy", np.ones((10, 2)), ["-k", "2.5"], ["whole number", "'2.5'"]),
    ("k-missing", "ok.npy", np.ones((10, 2)), [], ["-k/--n-components is required"]),
    ("covariance-type", "ok.npy", np.ones((10, 2)), ["-k", "2", "--covariance-type", "bogus"],
     ["invalid choice: 'bogus'"]),
    ("device", "ok.npy", np.ones((10, 2)), ["-k", "2", "--device", "gpu0"], ["unknown --device"]),
    ("tol", "ok.npy", np.ones((10, 2)), ["-k", "2", "--tol", "-1"], ["--tol", "at least 0"]),
    ("reg-covar", "ok.npy", np.ones((10, 2)), ["-k", "2", "--reg-covar", "x"], ["expected a number"]),
    ("max-iter", "ok.npy", np.ones((10, 2)), ["-k", "2", "--max-iter", "0"], ["must be at least 1"]),
]


@pytest.mark.parametrize("name, content, extra, pieces",
                         [case[1:] for case in BAD_INPUTS], ids=[case[0] for case in BAD_INPUTS])
def test_bad_input_is_one_clear_error_line(tmp_path, capsys, name, content, extra, pieces):
    data = _write(tmp_path, name, content) if content is not None else tmp_path / name
    model = tmp_path / "never.safetensors"
    rc, out, err = cli(capsys, "fit", data, *extra, "-o", model, "--no-plot")
    assert rc == 2
    assert err.startswith("error: ") and err.strip().count("\n") == 0, err
    for piece in pieces:
        assert piece in err, f"{piece!r} not in {err!r}"
    assert not model.exists()


def test_cuda_requested_without_cuda(tmp_path, capsys, npy):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    rc, out, err = cli(capsys, "fit", npy, "-k", 2, "--device", "cuda", "-o",
                       tmp_path / "m.safetensors")
    assert rc == 2 and "CUDA is not available" in err and "--device cpu" in err


def test_debug_shows_the_exception(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # an existing default output must not hide the data error
    (tmp_path / "gmmgan_model.safetensors").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        main(["--debug", "fit", str(tmp_path / "nope.npy"), "-k", "2"])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        main(["fit", str(tmp_path / "nope.npy"), "-k", "2", "--debug"])


def test_fit_help_describes_every_option(capsys):
    rc, out, _ = cli(capsys, "fit", "--help")
    assert rc == 0
    options = ["DATA", "--n-components", "--covariance-type", "--device", "--dtype", "--max-iter",
               "--tol", "--reg-covar", "--n-init", "--init-params", "--seed", "--chunk-size",
               "--n-samples", "--output", "--plot", "--no-plot", "--force", "--quiet", "--debug"]
    for option in options:
        assert option in out, option
    text = " ".join(out.split())
    for default in ("(default: 100)", "(default: 1e-3)", "(default: 1e-6)", "(default: full)",
                    "(default: k-means++)", "(default: 100000)", "gmmgan_model.safetensors",
                    "gmmgan_fit.png", "ring", "grid", "examples:"):
        assert default in text, default


# ------------------------------------------------------------------------------------ subprocess
def test_python_dash_m_gmmgan(tmp_path, npy):
    env = dict(os.environ)
    src = str(Path(gmmgan.__file__).resolve().parents[1])  # works installed or not
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    model = tmp_path / "m.safetensors"
    ok = subprocess.run([sys.executable, "-m", "gmmgan", "fit", str(npy), "-k", "3",
                         "-o", str(model), "--no-plot"],  # plots are tested in-process
                        capture_output=True, text=True, env=env, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert "converged" in ok.stdout and "model saved to" in ok.stdout
    assert GaussianMixture.load(model).n_components == 3


def test_tol_and_reg_covar_zero_as_in_scikit_learn(npy, tmp_path, capsys):
    # tol=0 runs every --max-iter iteration; both 0s are valid values, as in scikit-learn.
    out = tmp_path / "m.safetensors"
    rc, _, err = cli(capsys, "fit", npy, "-k", 3, "--tol", 0, "--reg-covar", 0, "--max-iter", 4, "-o", out,
                     "--no-plot", "-q")
    assert rc == 0, err
    assert GaussianMixture.load(out).n_iter_ == 4


def test_plot_paths_must_be_png_and_are_checked_before_the_fit(npy, tmp_path, capsys):
    # matplotlib would write a PNG into 'fit.txt'; refused up front, with nothing written.
    out = tmp_path / "m.safetensors"
    rc, _, err = cli(capsys, "fit", npy, "-k", 3, "-o", out, "--plot", tmp_path / "fit.txt")
    assert rc == 2 and "ending in .png" in err and not out.exists()
    rc, _, err = cli(capsys, "fit", npy, "-k", "auto", "-o", out, "--criterion-plot", tmp_path / "bic.jpg")
    assert rc == 2 and "ending in .png" in err and not out.exists()


# ---------------------------------------------------------------- numbers, failed fits, plot paths
@pytest.mark.parametrize("argv, pieces", [
    (["--seed", "-1"], ["--seed", "must be at least 0"]),
    (["--reg-covar", "inf"], ["--reg-covar", "finite"]),
    (["--tol", "nan"], ["--tol", "finite"]),
])
def test_fit_bad_numbers_are_usage_errors(tmp_path, capsys, argv, pieces):
    rc, _, err = cli(capsys, "fit", "ring", "-k", "2", "-o", tmp_path / "m.safetensors", *argv)
    assert_clean_error(rc, err, *pieces)
    assert not list(tmp_path.iterdir())


def test_failed_fit_with_force_keeps_the_saved_model(tmp_path, capsys):
    model = tmp_path / "m.safetensors"
    assert cli(capsys, "fit", "ring", "-k", "2", "--n-samples", "200", "--no-plot", "-q", "-o", model)[0] == 0
    before = model.read_bytes()
    bad = np.ones((20, 2))
    bad[3, 1] = np.nan
    np.save(tmp_path / "bad.npy", bad)
    rc, _, err = cli(capsys, "fit", tmp_path / "bad.npy", "-k", "2", "--no-plot", "--force", "-o", model)
    assert_clean_error(rc, err, "NaN", "row 3")
    assert model.read_bytes() == before


def test_fit_plot_and_model_with_the_same_name(tmp_path, capsys):
    path = tmp_path / "same.png"
    rc, _, err = cli(capsys, "fit", "ring", "-k", "2", "--n-samples", "200", "-q", "-o", path, "--plot", path)
    assert_clean_error(rc, err, "--plot and -o are both", "another name")
    assert not path.exists()
