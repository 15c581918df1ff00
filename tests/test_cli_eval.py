"""gmmgan eval on a tiny 2-D run: metrics printed and written; bad targets are clear errors."""

import json

import pytest

from gmmgan.cli import main

TINY = [
    "data.name=ring", "data.n=2000", "prior.n_components=8", "prior.fit_samples=500", "prior.fit_max_iter=20",
    "prior.warm_start_steps=20", "nets.g_width=16", "nets.d_width=16", "nets.g_layers=2", "nets.d_layers=2",
    "schedule.batch_size=50", "schedule.total_kimg=0.1", "schedule.snapshot_kimg=0.1", "schedule.log_kimg=0.1",
    "schedule.sample_kimg=0.1", "schedule.ema_kimg=0.1", "eval_samples=300", "device=cpu", "-q",
]


@pytest.fixture(scope="module")
def ring_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    assert main(["train", "--out", str(out), *TINY]) == 0
    (run,) = out.iterdir()
    return run


def test_eval_2d_run_writes_metrics_over_seeds(ring_run, capsys):
    assert main(["eval", str(ring_run), "--seeds", "0,1,2", "-n", "500"]) == 0
    out = capsys.readouterr().out
    assert "modes_captured" in out and "reverse_kl" in out
    report = json.loads((ring_run / "metrics.json").read_text())
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
