"""`gmmgan eval` checks before the long part: too few samples for the mode metrics, and an -o that cannot be written."""

import json
import os

import pytest

from gmmgan.cli import main
from gmmgan.commands import _outputs
from gmmgan.gan import training_loop


def _cli(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture
def no_evaluation(monkeypatch):
    """Fail the test if eval gets as far as loading the generator."""
    def fail(*args, **kwargs):
        raise AssertionError("eval started before checking its output path")

    monkeypatch.setattr(training_loop, "load_generator", fail)
    return monkeypatch


# -------------------------------------------------------------------------- too few samples
@pytest.mark.parametrize("n, pieces", [
    (5, ["-n 5 is fewer than the 8 modes of ring", "at most 5 modes can be captured", "use -n 2500"]),
    (20, ["-n 20 is only 2.5 samples per mode of ring", "mostly sampling noise"]),
])
def test_too_few_samples_for_the_mode_metrics_is_one_warning_line(ring_run, tmp_path, capsys, n, pieces):
    report = tmp_path / "e.json"
    rc, out, err = _cli(capsys, "eval", ring_run, "-n", n, "-o", report, "--no-plots")
    assert rc == 0, err
    lines = [line for line in out.splitlines() if line.startswith("warning:")]
    assert len(lines) == 1, out
    for piece in pieces:
        assert piece in lines[0], lines[0]
    assert json.loads(report.read_text())["warnings"] == [lines[0].removeprefix("warning: ")]


def test_enough_samples_no_warning(ring_run, tmp_path, capsys):
    report = tmp_path / "e.json"
    rc, out, err = _cli(capsys, "eval", ring_run, "-n", 400, "-o", report, "--no-plots")
    assert rc == 0, err
    assert "warning:" not in out and "warnings" not in json.loads(report.read_text())


# ------------------------------------------------------------------------- unwritable output
def _one_clean_line(rc, err, *pieces):
    assert rc == 2 and err.startswith("error: ") and err.strip().count("\n") == 0 and "Traceback" not in err, err
    for piece in pieces:
        assert piece in err, err


def test_output_under_a_regular_file_fails_before_the_evaluation(ring_run, tmp_path, capsys, no_evaluation):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("a file, not a folder")
    rc, _, err = _cli(capsys, "eval", ring_run, "-o", blocker / "sub" / "eval.json")
    _one_clean_line(rc, err, "is a file, not a folder", "choose another path")


def test_output_in_a_folder_that_is_not_writable_fails_first(ring_run, tmp_path, capsys, no_evaluation):
    # Simulated: tests may run as root, for whom a chmod'ed folder is still writable.
    no_evaluation.setattr(_outputs.os, "access", lambda path, mode: False)
    rc, _, err = _cli(capsys, "eval", ring_run, "-o", tmp_path / "reports" / "eval.json")
    _one_clean_line(rc, err, "for the evaluation report", "is not writable")


def test_output_in_a_read_only_folder_fails_first(ring_run, tmp_path, capsys, no_evaluation):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        if os.access(folder, os.W_OK):
            pytest.skip("the folder is still writable (running as root)")
        rc, _, err = _cli(capsys, "eval", ring_run, "-o", folder / "eval.json")
        _one_clean_line(rc, err, "is not writable")
    finally:
        folder.chmod(0o755)


def test_fit_output_under_a_regular_file_fails_before_the_fit(tmp_path, capsys):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("a file")
    rc, _, err = _cli(capsys, "fit", "ring", "-o", blocker / "model.safetensors", "--no-plot")
    _one_clean_line(rc, err, "cannot use", "for the model", "is a file, not a folder")
