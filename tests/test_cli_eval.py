"""gmmgan eval on a tiny 2-D run: metrics printed and written; bad targets are clear errors."""

import json
import shutil
from pathlib import Path

import pytest

from gmmgan.cli import main


@pytest.fixture
def run_copy(ring_run, tmp_path):
    """The shared tiny ring run, copied: eval writes into the run folder."""
    return Path(shutil.copytree(ring_run, tmp_path / ring_run.name))


def test_eval_2d_run_writes_metrics_over_seeds(run_copy, capsys):
    training_metrics = (run_copy / "metrics.json").read_text()
    assert main(["eval", str(run_copy), "--seeds", "0,1,2", "-n", "500"]) == 0
    out = capsys.readouterr().out
    assert "modes_captured" in out and "reverse_kl" in out
    assert (run_copy / "metrics.json").read_text() == training_metrics  # training's file is kept
    report = json.loads((run_copy / "eval.json").read_text())
    assert report["data"] == "ring" and report["seeds"] == [0, 1, 2]
    per_seed = report["modes_captured"]["per_seed"]
    assert len(per_seed) == 3 and all(0 <= m <= 8 for m in per_seed)
    assert 0.0 <= report["hq_fraction"]["mean"] <= 1.0
    assert report["reverse_kl"]["se"] >= 0.0


def test_eval_same_seed_is_deterministic(ring_run, tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    assert main(["eval", str(ring_run), "-n", "300", "-o", str(a)]) == 0
    assert main(["eval", str(ring_run), "-n", "300", "-o", str(b)]) == 0
    assert json.loads(a.read_text())["reverse_kl"] == json.loads(b.read_text())["reverse_kl"]


def test_eval_missing_run_and_bad_seeds(tmp_path, capsys):
    assert main(["eval", str(tmp_path / "nope")]) == 2
    assert "nope" in capsys.readouterr().err
    assert main(["eval", str(tmp_path), "--seeds", "a,b"]) == 2
    assert "comma-separated integers" in capsys.readouterr().err
