"""The benchmark scripts (``python -m benchmarks.NAME``) run on tiny data and their numbers are consistent."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the benchmarks package lives at the repository root, beside src/
    sys.path.insert(0, str(ROOT))

from benchmarks import _common, gmm_em  # noqa: E402

SCRIPTS = sorted(p.stem for p in (ROOT / "benchmarks").glob("[!_]*.py"))


def test_every_script_is_a_module_of_the_benchmarks_package():
    """``python -m benchmarks.NAME`` from the repository root: no script edits sys.path to find its parts."""
    assert {"gmm_em", "results_2d", "results_report", "train_speed"} <= set(SCRIPTS)
    before = list(sys.path)
    for name in SCRIPTS:
        module = importlib.import_module(f"benchmarks.{name}")
        assert callable(module.main), name
        assert 'if __name__ == "__main__":' in (ROOT / "benchmarks" / f"{name}.py").read_text(), name
    assert sys.path == before


def test_machine_info_and_json_writer(tmp_path):
    info = _common.machine_info()
    assert {"cpu_model", "cpu_count", "python", "numpy", "torch", "hostname"} <= set(info)
    assert "threadpools" not in info and "gpus" not in info
    path = tmp_path / "sub" / "r.json"
    _common.write_json(path, {"machine": info, "x": np.float32(1.5), "a": np.arange(3)})
    assert json.loads(path.read_text()) == {"machine": info, "x": 1.5, "a": [0, 1, 2]}
    assert path.read_text().endswith("}\n")


# One thread: fast and steady even when the test runner shares the CPUs.
TINY = ["--n-samples", "2000", "--n-test", "500", "--iters", "1,3", "--repeats", "1", "--threads", "1"]


def _pycave_available() -> bool:
    return importlib.util.find_spec("pycave") is not None or bool(os.environ.get("PYCAVE_PYTHON"))


def test_main_runs_and_logliks_agree(tmp_path):
    """gmmgan and scikit-learn (numpy, both dtypes), same start: same held-out log-likelihood."""
    import torch

    threads_before = torch.get_num_threads()
    out = tmp_path / "r.json"
    res = gmm_em.main(["--configs", "a,d", *TINY, "--impls", "gmmgan,sklearn", "--json", str(out)])
    rows = res["rows"]
    assert {(r["config"], r["impl"], r["dtype"]) for r in rows} == {
        (c, i, d) for c in "ad" for i in ("gmmgan", "sklearn") for d in ("float32", "float64")
    }
    for r in rows:
        assert "error" not in r, r
        assert r["n"] == 2000 and r["iters"] == [1, 3]
        assert np.isfinite(r["s_per_iter"]) and np.isfinite(r["heldout_loglik"])
        assert r["loglik_ok"], f"{r['impl']} {r['dtype']} gap {r['loglik_gap']:.3g}"
    # The reference is scikit-learn float64, and its gap to itself is zero.
    ref = next(r for r in rows if r["impl"] == "sklearn" and r["dtype"] == "float64")
    assert ref["loglik_gap"] == 0.0
    saved = json.loads(out.read_text())
    assert len(saved["rows"]) == len(rows) and "machine" in saved and "threadpools" in saved["machine"]
    assert saved["machine"]["torch_num_threads"] == 1  # --threads 1, restored afterwards
    assert all(p["num_threads"] == 1 for p in saved["machine"]["threadpools"]), saved["machine"]
    import torch

    assert torch.get_num_threads() == threads_before


def test_script_with_array_api_and_pycave(tmp_path):
    """As a script (fresh interpreter, so scipy sees SCIPY_ARRAY_API=1): the array-API path too."""
    impls = "gmmgan,sklearn,sklearn-array-api" + (",pycave" if _pycave_available() else "")
    out = tmp_path / "r.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.gmm_em", "--configs", "b", *TINY, "--impls", impls,
         "--dtypes", "float32", "--skip-sklearn-f32", "--json", str(out)],
        check=False, capture_output=True, text=True, timeout=120, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads(out.read_text())["rows"]
    assert [r["impl"] for r in rows] == impls.split(",")
    for r in rows:
        assert "error" not in r, r
        assert r["loglik_ok"], r
    assert "| b " in proc.stdout and "held-out loglik" in proc.stdout


def test_time_per_iteration_cancels_fixed_cost(monkeypatch):
    """With a fake clock, fit(m) costs 3 s + 0.5 s * m: the estimate is exactly 0.5 s."""
    clock = [0.0]
    monkeypatch.setattr(_common.time, "perf_counter", lambda: clock[0])
    calls = []

    def fit(m):
        calls.append(m)
        clock[0] += 3.0 + 0.5 * m
        return f"model-{m}"

    res = _common.time_per_iteration(fit, iters=(2, 6), repeats=3)
    assert res["s_per_iter"] == pytest.approx(0.5)
    assert res["s_per_iter_from_min"] == pytest.approx(0.5)
    assert res["model"] == "model-6"
    assert calls == [2, 2, 6, 2, 6, 2, 6]  # warm-up, then (m1, m2) pairs


@pytest.mark.parametrize("iters,repeats,msg", [((3, 3), 1, "m1 < m2"), ((1, 2), 0, "repeats")])
def test_time_per_iteration_rejects_bad_arguments(iters, repeats, msg):
    with pytest.raises(ValueError, match=msg):
        _common.time_per_iteration(lambda m: None, iters=iters, repeats=repeats)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), k=st.integers(1, 5), d=st.integers(1, 4),
       cov=st.sampled_from(["full", "diag"]))
def test_common_init_is_one_hard_assignment_m_step(seed, k, d, cov):
    """Weights/means/covariances equal scikit-learn's M-step on one-hot nearest-centre labels."""
    from sklearn.mixture._gaussian_mixture import _estimate_gaussian_parameters

    data = _common.make_gmm_data(300, d, k, n_test=10, seed=seed)
    init = _common.common_init(data.X_train, k, cov, reg_covar=1e-6, seed=seed, chunk=64)
    dist = ((data.X_train[:, None, :] - init.centers[None]) ** 2).sum(-1)
    resp = np.eye(k)[dist.argmin(1)]
    nk, means, covs = _estimate_gaussian_parameters(data.X_train, resp, 1e-6, cov)
    np.testing.assert_allclose(init.weights, nk / len(data.X_train), rtol=1e-12)
    np.testing.assert_allclose(init.means, means, rtol=1e-9, atol=1e-9)
    prec = np.linalg.inv(covs) if cov == "full" else 1.0 / covs
    np.testing.assert_allclose(init.precisions, prec, rtol=1e-6, atol=1e-6)
    assert init.weights.sum() == pytest.approx(1.0)


def test_make_gmm_data_is_seeded_and_split():
    a = _common.make_gmm_data(500, 3, 4, n_test=100, seed=1)
    b = _common.make_gmm_data(500, 3, 4, n_test=100, seed=1)
    np.testing.assert_array_equal(a.X_train, b.X_train)
    assert a.X_train.shape == (500, 3) and a.X_test.shape == (100, 3)
    with pytest.raises(ValueError, match="fewer components"):
        _common.make_gmm_data(3, 2, 5, n_test=1, seed=0)


def test_common_init_rejects_unsupported_covariance():
    X = np.random.default_rng(0).normal(size=(100, 2))
    with pytest.raises(ValueError, match="'full' or 'diag'"):
        _common.common_init(X, 2, "tied", reg_covar=1e-6, seed=0)


def test_relative_gap():
    assert _common.relative_gap(-101.0, -100.0) == pytest.approx(0.01)
    assert _common.relative_gap(0.3, 0.2) == pytest.approx(0.1)  # absolute below |1|


@pytest.mark.parametrize(
    "argv,msg",
    [
        (["--configs", "z"], "unknown config"),
        (["--configs", "e"], "GPU-only"),
        (["--device", "tpu"], "cpu or cuda"),
        (["--impls", "sklearn,foo"], "--impls must be"),
        (["--dtypes", "float16"], "--dtypes must be"),
        (["--iters", "5"], "two integers"),
        (["--iters", "3,2"], "1 <= m1 < m2"),
        (["--repeats", "0"], "--repeats must be >= 1"),
    ],
)
def test_bad_arguments_say_what_to_do(argv, msg, capsys):
    with pytest.raises(SystemExit) as e:
        gmm_em.main(argv)
    assert e.value.code == 2
    assert msg in capsys.readouterr().err


def test_pycave_without_interpreter_says_how(monkeypatch):
    """No pycave here and no --pycave-python: a clear message, not a crash of the whole run."""
    if importlib.util.find_spec("pycave") is not None:
        pytest.skip("pycave is importable in this interpreter")
    data = _common.make_gmm_data(200, 2, 2, n_test=10, seed=0)
    init = _common.common_init(data.X_train, 2, "full", reg_covar=1e-6, seed=0)
    with pytest.raises(RuntimeError, match="--pycave-python"):
        gmm_em._run_pycave(gmm_em.CONFIGS["a"], data, init, 1e-6, (1, 2), 1, False, None)


# ------------------------------------------- results tables (docs/protocols.md, section 'Targets')
TINY_2D = ["--data", "ring", "--priors", "fitted_gmm", "--seeds", "0,1", "--jobs", "2", "--kimg", "0.2"] + [
    a for kv in ("data.n=2000", "nets.g_width=16", "nets.d_width=16", "nets.g_layers=2", "nets.d_layers=2",
                 "schedule.batch_size=50", "schedule.sample_kimg=0", "prior.fit_samples=500",
                 "prior.fit_max_iter=20", "prior.warm_start_steps=20", "eval_samples=300")
    for a in ("--set", kv)
]


def _results_2d(out: Path, runs: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "benchmarks.results_2d", "--out", str(out), "--runs-dir", str(runs),
                           *TINY_2D, *args],
                          check=False, capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "src")})


def _ring_results(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((out / "json" / "ring").glob("ring_*.json"))]


def test_results_2d_table_end_to_end(tmp_path):
    """Two tiny ring seeds as one sweep (one process), one JSON per seed, rendered as a table that
    says the budget was shortened; a second invocation skips the finished seeds and sweeps the rest."""
    from benchmarks import results_report

    out, runs = tmp_path / "out", tmp_path / "runs"
    proc = _results_2d(out, runs)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.count("start ring/") == 1 and "start ring/ring_fitted_gmm-seeds0-1 (2 seeds" in proc.stdout
    assert sorted(p.name for p in (out / "files" / "ring" / "ring_fitted_gmm-s1").iterdir()) == [
        "config.yaml", "final.png", "log.jsonl", "metrics.json", "train.log"]  # checkpoints stay in --runs-dir
    assert sorted(p.name for p in (out / "files" / "ring" / "ring_fitted_gmm-seeds0-1").iterdir()) == [
        "config.yaml", "summary.json", "summary.md", "train.log"]
    [sweep_dir] = (runs / "ring" / "ring_fitted_gmm-seeds0-1").glob("0*")
    assert sorted(p.parent.name for p in sweep_dir.glob("*/checkpoint.pt")) == ["seed-0000", "seed-0001"]
    assert not list(out.rglob("checkpoint.pt"))
    results = _ring_results(out)
    assert [(r["prior"], r["seed"], r["status"]) for r in results] == [("fitted_gmm", 0, "ok"), ("fitted_gmm", 1, "ok")]
    summary = json.loads((sweep_dir / "summary.json").read_text())
    for r in results:
        assert r["metrics"]["n_modes"] == 8 and r["metrics"]["n_samples"] == 300
        assert 0 <= r["metrics"]["modes"] <= 8 and 0 <= r["metrics"]["hq"] <= 1
        assert r["metrics"]["kl"] == summary["per_seed"][str(r["seed"])]["kl"]  # the seed's own metrics.json
        assert r["commands"] == [results[0]["commands"][0]]  # one training command for both: the sweep
        assert r["commands"][0].startswith("gmmgan train --config configs/ring_fitted_gmm.yaml --seeds 0-1 ")
        assert "cpu_threads=1" in r["commands"][0] and r["budget_kimg"] == 0.2 and r["protocol_kimg"] == 500
        assert r["run_dir"] == str(sweep_dir / f"seed-{r['seed']:04d}")
        assert r["sweep"]["seeds"] == [0, 1] and r["wall_s"]["train"] == pytest.approx(r["sweep"]["train_wall_s"] / 2,
                                                                                        abs=0.01)
    [inv] = json.loads((out / "json" / "ring" / "_invocations.json").read_text())
    assert inv["runs"] == 2 and inv["failed"] == 0 and inv["sweeps"] == ["ring_fitted_gmm-seeds0-1"]
    md = results_report.render(out)
    assert "### Ring: 8 Gaussians" in md and "| fitted_gmm | 2 |" in md
    assert "shortened: the protocol is 500 kimg" in md and "PacGAN2 (published)" in md
    assert "python -m benchmarks.results_2d --out" in md and "`data.n=2000`" in md
    again = _results_2d(out, runs, "--seeds", "0-2")  # after TINY_2D's --seeds 0,1: this one counts
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert again.stdout.count("skip ring/") == 2 and again.stdout.count("start ring/") == 1
    assert "start ring/ring_fitted_gmm-seeds2 (1 seed: ring_fitted_gmm-s2)" in again.stdout
    assert (runs / "ring" / "ring_fitted_gmm-seeds0-1").is_dir()  # the first sweep's folders stay
    third = _ring_results(out)[2]
    assert third["seed"] == 2 and third["status"] == "ok" and " --seeds 2 " in third["commands"][0]
    assert "| fitted_gmm | 3 |" in results_report.render(out)


def test_results_2d_no_sweep_trains_each_seed_in_its_own_process(tmp_path, capsys):
    """--no-sweep: the old way, ``gmmgan train ... seed=S`` per seed, same JSON and files; --dry-run
    prints exactly the commands of either way."""
    from benchmarks import results_2d

    out, runs = tmp_path / "out", tmp_path / "runs"
    proc = _results_2d(out, runs, "--seeds", "1", "--no-sweep")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    [r] = _ring_results(out)
    assert r["job"] == "ring_fitted_gmm-s1" and r["status"] == "ok" and "sweep" not in r
    assert r["commands"][0].startswith("gmmgan train --config configs/ring_fitted_gmm.yaml seed=1 device=cpu ")
    assert r["metrics"]["n_modes"] == 8 and r["run_dir"].startswith(str(runs / "ring" / "ring_fitted_gmm-s1" / "0"))
    assert sorted(p.name for p in (out / "files" / "ring" / "ring_fitted_gmm-s1").iterdir()) == [
        "config.yaml", "final.png", "log.jsonl", "metrics.json", "train.log"]
    assert json.loads((out / "json" / "ring" / "_invocations.json").read_text())[0]["sweeps"] is None

    dry = ["--out", str(out), "--data", "ring", "--priors", "gaussian,fitted_gmm", "--seeds", "0-2,5", "--dry-run"]
    assert results_2d.main(dry) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "# ring/ring_gaussian-seeds0-2_5: ring_gaussian-s0, ring_gaussian-s1, ring_gaussian-s2, ring_gaussian-s5"
    assert lines[1] == (f"gmmgan train --config configs/ring_gaussian.yaml --seeds 0-2,5 device=cpu cpu_threads=1 "
                        f"--out {out}/runs/ring/ring_gaussian-seeds0-2_5 -q")
    assert len(lines) == 4 and lines[3].startswith("gmmgan train --config configs/ring_fitted_gmm.yaml --seeds 0-2,5 ")
    assert results_2d.main([*dry, "--sweep-size", "3"]) == 0
    assert [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("#")][:2] == [
        "# ring/ring_gaussian-seeds0-2: ring_gaussian-s0, ring_gaussian-s1, ring_gaussian-s2",
        "# ring/ring_gaussian-seeds5: ring_gaussian-s5"]
    assert results_2d.main([*dry, "--no-sweep"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 16 and lines[:2] == [
        "# ring/ring_gaussian-s0",
        f"gmmgan train --config configs/ring_gaussian.yaml seed=0 device=cpu cpu_threads=1 --out {out}/runs/ring/"
        "ring_gaussian-s0 -q"]
    assert not (out / "runs").exists()


def _fake_sweep(monkeypatch, tmp_path, outcome: str):
    """A sweep of seeds 0-2 of a fake table whose training step is faked: 'diverged' (seed 1 diverged,
    exit 1, the others finished), 'timeout' (killed, no folder) or 'crash' (exit 1, no summary)."""
    from benchmarks import _results as R

    def fake_step(argv, env, log, timeout):
        log.write_text("$ " + R.display_command(argv) + "\nsomething went wrong\n")
        if argv[3] != "train":  # an evaluation: writes the file collect reads
            Path(argv[4], "eval.json").write_text(json.dumps({"score": int(argv[4][-1])}))
            return "ok", 1.0
        assert argv[argv.index("--seeds") + 1] == "0-2" and timeout == 30
        if outcome == "timeout":
            return "timeout", 30.0
        root = Path(argv[argv.index("--out") + 1]) / "00000-ring-fitted_gmm-seeds0-2"
        for s in range(3):
            (root / f"seed-{s:04d}").mkdir(parents=True)
        if outcome == "diverged":
            (root / "seed-0001" / "diverged.txt").write_text("loss became NaN at 0.1 kimg\n")
            (root / "summary.json").write_text(json.dumps({
                "seeds": [0, 1, 2], "finished": [0, 2], "diverged": {"1": "loss became NaN at 0.1 kimg"},
                "run_dirs": {"0": "seed-0000", "2": "seed-0002"}}))
        return "failed", 12.0

    monkeypatch.setattr(R, "_run_step", fake_step)
    jobs = [R.Job(table="fake", name=f"row-s{s}", group="row", config=R.CONFIGS / "ring_fitted_gmm.yaml", seed=s,
                  overrides=["device=cpu"], evals=lambda run_dir: [[sys.executable, "-m", "gmmgan", "eval", str(run_dir)]],
                  collect=lambda run_dir: R.read_json(run_dir / "eval.json"), info={"seed": s})
            for s in range(3)]
    lines: list[str] = []
    results = R.run_all(jobs, tmp_path / "out", [("cpu0", {})], timeout=10, runs_dir=tmp_path / "runs", log=lines.append)
    return sorted(results, key=lambda r: r["seed"]), lines


def test_a_seed_that_diverged_in_a_sweep_fails_alone(tmp_path, monkeypatch):
    results, lines = _fake_sweep(monkeypatch, tmp_path, "diverged")
    assert [r["status"] for r in results] == ["ok", "failed", "ok"]
    assert [r.get("metrics") for r in results] == [{"score": 0}, None, {"score": 2}]
    assert "seed 1 diverged in the sweep" in results[1]["error"] and "NaN" in results[1]["error"]
    assert results[0]["commands"][1] == f"gmmgan eval {results[0]['run_dir']}" and len(results[1]["commands"]) == 1
    assert results[0]["wall_s"] == {"train": 4.0, "eval0": 1.0, "total": 5.0}
    assert results[0]["sweep"]["train_status"] == "failed" and results[0]["sweep"]["train_wall_s"] == 12.0
    assert sorted(p.name for p in (tmp_path / "out" / "files" / "fake" / "row-s0").iterdir()) == [
        "eval.json", "eval0.log", "train.log"]
    assert sorted(p.name for p in (tmp_path / "out" / "json" / "fake").iterdir()) == ["row-s0.json", "row-s1.json",
                                                                                     "row-s2.json"]
    assert any(ln.startswith("failed fake/row-s1: seed 1 diverged") for ln in lines)


@pytest.mark.parametrize("outcome", ["timeout", "crash"])
def test_a_sweep_that_fails_fails_every_seed_with_its_log(tmp_path, monkeypatch, outcome):
    results, _ = _fake_sweep(monkeypatch, tmp_path, outcome)
    status = "timeout" if outcome == "timeout" else "failed"
    assert [r["status"] for r in results] == [status] * 3
    for r in results:
        assert r["error"].startswith(f"{status}; last lines of train.log") and "something went wrong" in r["error"]
        assert "metrics" not in r and len(r["commands"]) == 1


def test_results_scripts_reject_bad_input(tmp_path, capsys):
    from benchmarks import _results, results_2d, results_report

    with pytest.raises(ValueError, match="runs backwards"):
        _results.parse_seeds("3-1")
    assert _results.parse_seeds("0-2,5") == [0, 1, 2, 5]
    with pytest.raises(SystemExit):
        results_2d.main(["--priors", "fitted_gmm,wgan"])
    assert "subset of fitted_gmm" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="drop it with --no-sweep"):
        results_2d.main(["--no-sweep", "--sweep-size", "2", "--dry-run"])
    with pytest.raises(SystemExit, match="--sweep-size must be >= 1"):
        results_2d.main(["--sweep-size", "0", "--dry-run"])
    assert _results.seeds_text([0, 1, 2, 5, 7, 8]) == "0-2,5,7-8" and _results.seeds_text([3, 1]) == "3,1"
    with pytest.raises(FileNotFoundError, match="no json/ folder"):
        results_report.render(tmp_path)


@pytest.mark.parametrize("argv,msg", [
    (["--tables", "stacked,fulll"], "subset of stacked,mnist500,full,cluster"),
    (["--seeds", "2-1"], "runs backwards"),
    (["--kimg", "0"], "must be positive"),
    (["--tables", "stacked"], "MNIST/raw"),  # checked before anything trains: no data here
    (["--device", "cuda", "--gpus", ","], "names no GPU"),
    (["--sweep-size", "0"], "--sweep-size must be >= 1"),
])
def test_results_images_rejects_bad_input_before_training(tmp_path, capsys, argv, msg):
    from benchmarks import results_images

    with pytest.raises(SystemExit) as e:
        results_images.main(["--device", "cpu", "--data-root", str(tmp_path), "--out", str(tmp_path), *argv])
    assert e.value.code == 2 and msg in capsys.readouterr().err
    assert not (tmp_path / "json").exists()


def test_sweep_speed_compares_a_sweep_with_single_runs(tmp_path, capsys):
    from _helpers import TINY_TRAIN

    from benchmarks import sweep_speed

    out = tmp_path / "sweep_speed.json"
    assert sweep_speed.main(["--config", str(ROOT / "configs" / "ring_fitted_gmm.yaml"), "--seeds", "0,1",
                             "--set", *TINY_TRAIN, "--json", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["seeds"] == [0, 1] and record["speedup"] > 0
    # Seed s of the sweep is the single run with seed s: the same final metrics.
    for single, swept in zip(record["single_metrics"], record["sweep_metrics"]):
        assert single["modes"] == swept["modes"]
        assert abs(single["kl"] - swept["kl"]) < 1e-3
    assert "2 single runs" in capsys.readouterr().out


def test_embedding_clustering_scores_each_embedding_on_real_test_images(mnist_root, tmp_path, capsys):
    from benchmarks import embedding_clustering

    out = tmp_path / "embed.json"
    assert embedding_clustering.main(["--datasets", "mnist", "--embeds", "pca,autoencoder", "--seeds", "100",
                                      "--device", "cpu", "--data-root", str(mnist_root), "--set", "fit_samples=300",
                                      "embed_epochs=1", "embed_width=4", "fit_max_iter=5", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [(r["dataset"], r["embed"], r["seed"]) for r in rows] == [("mnist", "pca", 100), ("mnist", "autoencoder", 100)]
    assert all(0.1 <= r["test_accuracy"] <= 1 and 0 <= r["test_nmi"] <= 1 and r["embed_seconds"] > 0 for r in rows)
    assert "autoencoder  test accuracy" in capsys.readouterr().out


def test_embedding_clustering_on_a_cpu_subset_scores_the_test_images_only(mnist_root, tmp_path, capsys):
    from benchmarks import embedding_clustering

    out = tmp_path / "embed.json"
    assert embedding_clustering.main(["--embeds", "contrastive", "--n", "300", "--epochs", "1", "--threads", "1",
                                      "--no-train-score", "--seeds", "0", "--device", "cpu", "--data-root",
                                      str(mnist_root), "--set", "embed_width=4", "fit_max_iter=5",
                                      "--json", str(out)]) == 0
    (row,) = json.loads(out.read_text())["rows"]
    assert row["prior"]["fit_samples"] == 300 and row["prior"]["embed_epochs"] == 1
    assert row["train_accuracy"] is None and 0.1 <= row["test_accuracy"] <= 1
    text = capsys.readouterr().out
    assert "seed 0: test accuracy" in text and "contrastive  test accuracy" in text and "train acc" not in text


def test_manifold_clustering_runs_on_a_few_images(mnist_root, capsys):
    from benchmarks import manifold_clustering

    assert manifold_clustering.main(["--n", "300", "--n-test", "100", "--data-root", str(mnist_root),
                                     "--pca-dim", "12", "--n-epochs", "20"]) == 0
    out = capsys.readouterr().out
    assert "GMM on PCA codes" in out and "train acc" in out and "ManifoldMap fit" in out


def test_results_2d_runs_the_discriminator_side_rows_only_when_asked(tmp_path):
    from benchmarks import results_2d

    args = results_2d.build_parser().parse_args(["--priors", "md_gaussian,em_density_fitted_gmm", "--data", "grid"])
    assert args.priors == ["md_gaussian", "em_density_fitted_gmm"]
    assert not set(results_2d.D_SIDE) & set(results_2d.build_parser().parse_args([]).priors)
    for row in results_2d.D_SIDE:  # every row has its config for both data sets
        for data in results_2d.DATASETS:
            assert (ROOT / "configs" / f"{data}_{row}.yaml").is_file(), (data, row)


def test_sweep_step_probe_times_a_single_run_and_a_sweep(tmp_path):
    """The probe trains through the real loop, stops after its warm steps and reports each engine's step."""
    from benchmarks import sweep_step_probe

    out = tmp_path / "probe.json"
    assert sweep_step_probe.main(["--config", str(ROOT / "configs/grid_fitted_gmm.yaml"), "--device", "cpu",
                                  "--seeds", "1,2",
                                  "--warm-steps", "3", "--reps", "2", "--set", "cpu_threads=1",
                                  "prior.warm_start_steps=5", "--json", str(out)]) == 0
    results = json.loads(out.read_text())["results"]
    assert [(r["seeds"], r["mode"]) for r in results] == [(1, "single"), (2, "stacked")]
    for r in results:
        assert 0 < r["draw_ms"] < r["draw_and_step_ms"] and r["step_ms"] > 0


def test_stacked_real_reference_scores_real_triples(mnist_root):
    """The real-data reference of the Stacked-MNIST table: true digits give the triples' own histogram."""
    import torch

    from benchmarks.stacked_real_reference import reference
    from gmmgan.data import load_stacked_mnist
    from gmmgan.metrics import modes_from_digits

    class AlwaysSeven(torch.nn.Module):  # a stand-in classifier: every channel reads 7, one mode
        def forward(self, x):
            return torch.nn.functional.one_hot(torch.full((x.shape[0],), 7), 10).float()

    out = reference(mnist_root, [3, 4], AlwaysSeven(), n_train=500, n_eval=300)
    _, triples = load_stacked_mnist(mnist_root, 500, 3)
    pick = torch.randperm(500, generator=torch.Generator().manual_seed(3))[:300]
    assert out["per_seed"][0]["true_digits"]["reverse_kl"] == pytest.approx(modes_from_digits(triples[pick]).reverse_kl)
    assert out["per_seed"][0]["classifier"]["modes"] == 1
    assert out["summary"]["classifier"]["reverse_kl"]["mean"] == pytest.approx(np.log(1000))
    assert out["kl_floor"] == pytest.approx(999 / 600)
    assert len(out["summary"]["true_digits"]["channel_kl"]) == 3
