"""`gmmgan sample` (gmmgan.commands.sample) on the session's tiny ring run: outputs, options, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _helpers import (
    PNG_MAGIC,
    assert_clean_error,
    cli,
    png_size,
    rewrite_snapshot_metadata,
)

from gmmgan.gan.training_loop import load_generator


# ----------------------------------------------------------------------------------------- outputs
def test_sample_npy_png_and_component(ring_run, tmp_path, capsys):
    rc, _, err = cli(capsys, "sample", ring_run, "-n", 123, "-o", tmp_path / "s.npy")
    assert rc == 0, err
    x = np.load(tmp_path / "s.npy")
    assert x.shape == (123, 2) and np.isfinite(x).all()
    # Same seed, same samples; a component's samples are G applied to that component's z.
    rc, _, _ = cli(capsys, "sample", ring_run, "-n", 50, "--component", 3, "-o", tmp_path / "c3.npy", "--seed", 7)
    assert rc == 0
    G, prior, _ = load_generator(ring_run)
    z = prior.sample(50, torch.Generator().manual_seed(7), component=3)
    np.testing.assert_allclose(np.load(tmp_path / "c3.npy"), G(z).numpy(), rtol=1e-5, atol=1e-6)
    rc, _, _ = cli(capsys, "sample", ring_run, "-o", tmp_path / "s.png")
    assert rc == 0 and (tmp_path / "s.png").read_bytes()[:8] == PNG_MAGIC
    rc, _, err = cli(capsys, "sample", ring_run, "-o", tmp_path / "s.npy")
    assert rc == 2 and "--force" in err
    rc, _, err = cli(capsys, "sample", ring_run, "--component", 8, "-o", tmp_path / "c8.npy")
    assert rc == 2 and "out of range" in err and "8 component" in err
    rc, _, err = cli(capsys, "sample", ring_run, "-o", tmp_path / "s.txt")
    assert rc == 2 and ".npy or .png" in err
    rc, _, err = cli(capsys, "sample", tmp_path / "no_run")
    assert rc == 2 and "does not exist" in err


def test_default_output_is_2500_points_in_samples_npy_in_the_current_folder(ring_run, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    rc, out, err = cli(capsys, "sample", ring_run)
    assert rc == 0, err
    x = np.load(tmp_path / "samples.npy")
    assert x.shape == (2500, 2) and x.dtype == np.float32 and np.isfinite(x).all()
    out = " ".join(out.split())
    assert "wrote 2500 samples from the prior" in out and "samples.npy" in out
    assert [p.name for p in tmp_path.iterdir()] == ["samples.npy"]


def test_the_seed_decides_the_samples(ring_run, tmp_path, capsys):
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        rc, _, err = cli(capsys, "sample", ring_run, "-n", 20, "--seed", seed, "-o", tmp_path / f"{name}.npy")
        assert rc == 0, err
    a, b, c = (np.load(tmp_path / f"{name}.npy") for name in "abc")
    np.testing.assert_array_equal(a, b)
    assert a.shape == c.shape == (20, 2) and not np.allclose(a, c)


def test_component_png_is_a_scatter_plot_and_says_the_component(ring_run, tmp_path, capsys):
    rc, out, err = cli(capsys, "sample", ring_run, "-n", 100, "--component", 2, "-o", tmp_path / "c2.png")
    assert rc == 0, err
    assert png_size(tmp_path / "c2.png") == (500, 500)
    assert "wrote 100 samples from component 2 of the prior" in " ".join(out.split())


def test_snapshot_file_as_run_and_new_output_folders(ring_run, tmp_path, capsys):
    out = tmp_path / "new" / "deeper" / "s.npy"
    rc, _, err = cli(capsys, "sample", ring_run / "generator.safetensors", "-n", 7, "-o", out)
    assert rc == 0, err
    assert cli(capsys, "sample", ring_run, "-n", 7, "-o", tmp_path / "same.npy")[0] == 0
    np.testing.assert_array_equal(np.load(out), np.load(tmp_path / "same.npy"))


def test_existing_output_needs_force(ring_run, tmp_path, capsys):
    out = tmp_path / "s.npy"
    np.save(out, np.zeros(3))
    rc, _, err = cli(capsys, "sample", ring_run, "-n", 10, "-o", out)
    assert_clean_error(rc, err, "s.npy' exists", "--force", "another -o")
    assert np.load(out).shape == (3,)
    rc, _, err = cli(capsys, "sample", ring_run, "-n", 10, "-o", out, "--force")
    assert rc == 0, err
    assert np.load(out).shape == (10, 2)


# --------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("argv, pieces", [
    (["-n", "0"], ["-n", "must be at least 1, got 0"]),
    (["-n", "-5"], ["-n", "must be at least 1, got -5"]),
    (["-n", "many"], ["-n", "expected a whole number, got 'many'"]),
    (["--component", "-1"], ["--component", "must be at least 0, got -1"]),
    (["--component", "8"], ["--component 8 is out of range", "8 component(s) (0..7)"]),
    (["--seed", "x"], ["--seed", "'x'"]),
    (["-o", "s.txt"], ["must end in .npy or .png"]),
])
def test_bad_options_are_usage_errors_and_write_nothing(ring_run, tmp_path, capsys, monkeypatch, argv, pieces):
    monkeypatch.chdir(tmp_path)
    rc, _, err = cli(capsys, "sample", ring_run, *argv)
    assert_clean_error(rc, err, *pieces)
    assert not list(tmp_path.iterdir())


def test_sample_wrong_run_paths(ring_run, tmp_path, capsys):
    rc, _, err = cli(capsys, "sample", tmp_path / "nope")
    assert rc == 2 and "run folder" in err and "nope' does not exist" in err and "snapshot" not in err
    rc, _, err = cli(capsys, "sample", ring_run / "config.yaml", "-o", tmp_path / "s.npy")
    assert rc == 2 and "not a generator snapshot" in err and f"run folder ('{ring_run}')" in err
    assert "corrupt" not in err
    (tmp_path / "notes.txt").write_text("x")  # not in a run folder: no folder to point at
    rc, _, err = cli(capsys, "sample", tmp_path / "notes.txt")
    assert rc == 2 and "give a run folder written by 'gmmgan train'" in err
    assert not (tmp_path / "s.npy").exists()


def test_unknown_device_is_a_usage_error(tmp_path, capsys):
    rc, _, err = cli(capsys, "sample", tmp_path / "run", "--device", "gpu")
    assert_clean_error(rc, err, "--device", "unknown device 'gpu'", "cuda:N")


def test_cuda_without_cuda_says_the_command_line_option(ring_run, tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    rc, _, err = cli(capsys, "sample", ring_run, "--device", "cuda", "-o", tmp_path / "x.npy")
    assert rc == 2 and "CUDA is not available" in err and "--device cpu" in err and "device=cpu" not in err


@pytest.mark.parametrize("metadata", ["{not json", "[1, 2]", '{"kimg": 0.3}'])
def test_snapshot_with_unreadable_metadata_is_a_clear_error(run_copy, tmp_path, capsys, metadata):
    rewrite_snapshot_metadata(run_copy / "generator.safetensors", metadata)
    out = tmp_path / "s.npy"
    rc, _, err = cli(capsys, "sample", run_copy, "-n", "50", "-o", out)
    assert_clean_error(rc, err, "generator.safetensors", "no readable metadata", "Re-run or resume training")
    assert not out.exists()
