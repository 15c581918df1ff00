"""gmmgan eval end to end: 2-D, Stacked-MNIST and image runs (tiny runs, tiny classifiers), bad input.

The image tests train their own tiny feature classifiers (a few seconds, on a slice of the real
data) into a temporary cache, so they never depend on ~/.cache; they skip when the MNIST /
Fashion-MNIST IDX files are absent (the ``mnist_root`` / ``fashion_mnist_root`` fixtures of conftest).
"""

import json
import shutil
from pathlib import Path

import pytest
import torch
from _helpers import PNG_MAGIC, assert_clean_error, cli, rewrite_snapshot_metadata

import gmmgan.metrics
from gmmgan.cli import main
from gmmgan.data.mnist import load_mnist
from gmmgan.gan.config import load_config
from gmmgan.gan.training_loop import train
from gmmgan.metrics import ClassifierConfig, load_classifier, train_classifier

# A tiny DCGAN run on 28x28 images: a few hundred images shown, under two seconds on a CPU.
TINY_IMAGES = [
    "nets.g_width=4", "nets.d_width=4", "schedule.batch_size=8", "schedule.total_kimg=0.016",
    "schedule.snapshot_kimg=0.008", "schedule.sample_kimg=0", "schedule.log_kimg=0.008", "prior.fit_samples=300",
    "prior.embed_dim=4", "prior.warm_start_steps=2", "device=cpu", "cpu_threads=1",
]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _tiny_run(out: Path, data: str, root: Path, *overrides: str) -> Path:
    cfg = load_config(None, [f"data.name={data}", f"data.root={root}", *TINY_IMAGES, *overrides])
    return Path(train(cfg, run_dir=out / data, quiet=True)["run_dir"])


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A classifier cache for the module; mnist_cache / fashion_cache train their tiny classifier into it."""
    return tmp_path_factory.mktemp("classifiers")


def _tiny_classifier(folder: Path, dataset: str, root: Path) -> Path:
    """A tiny ``dataset`` classifier in ``folder``, trained on 2,000 real images (seconds)."""
    tiny = ClassifierConfig(width=4, feature_dim=16, batch_size=64, lr=1e-2)
    x, y = load_mnist(root, "train", dataset)
    xt, yt = load_mnist(root, "test", dataset)
    train_classifier(dataset, out_dir=folder, epochs=1, config=tiny, train_data=(x[:2000], y[:2000]),
                     test_data=(xt[:500], yt[:500]), log=None)
    return folder


@pytest.fixture(scope="module")
def mnist_cache(cache, mnist_root):
    return _tiny_classifier(cache, "mnist", mnist_root)


@pytest.fixture(scope="module")
def fashion_cache(cache, fashion_mnist_root):
    return _tiny_classifier(cache, "fashion-mnist", fashion_mnist_root)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, mnist_root):
    """Tiny MNIST and Stacked-MNIST runs, trained once for the module (each in about a second)."""
    out = tmp_path_factory.mktemp("image_runs")
    return {
        "mnist-limited": _tiny_run(out, "mnist-limited", mnist_root, "data.per_class=4", "prior.n_components=3",
                                   "prior.noise_dim=2"),
        "mnist": _tiny_run(out, "mnist", mnist_root, "prior.kind=fixed_gmm", "prior.n_components=2", "prior.z_dim=6"),
        "stacked-mnist": _tiny_run(out, "stacked-mnist", mnist_root, "data.n=64", "prior.kind=gaussian",
                                   "prior.z_dim=8"),
    }


@pytest.fixture(scope="module")
def fashion_run(tmp_path_factory, fashion_mnist_root):
    out = tmp_path_factory.mktemp("fashion_runs")
    return _tiny_run(out, "fashion-mnist", fashion_mnist_root, "prior.kind=gaussian", "prior.z_dim=8")


def _copy(run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run, tmp_path / run.name))


# ------------------------------------------------------------------------------------ 2-D runs
def test_eval_2d_run_writes_metrics_over_seeds_and_curves(run_copy, capsys):
    training_metrics = (run_copy / "metrics.json").read_text()
    rc, out, err = cli(capsys, "eval", run_copy, "--seeds", "0,1,2", "-n", "500")
    assert rc == 0, err
    assert "modes_captured" in out and "reverse_kl" in out
    assert (run_copy / "metrics.json").read_text() == training_metrics  # training's file is kept
    report = json.loads((run_copy / "eval.json").read_text())
    assert report["data"] == "ring" and report["seeds"] == [0, 1, 2] and report["n_samples"] == 500
    per_seed = report["modes_captured"]["per_seed"]
    assert len(per_seed) == 3 and all(0 <= m <= 8 for m in per_seed)
    assert report["modes_captured"]["mean"] == pytest.approx(sum(per_seed) / 3)
    assert 0.0 <= report["hq_fraction"]["mean"] <= 1.0
    assert report["reverse_kl"]["se"] >= 0.0
    assert report["kl_floor"] == pytest.approx(7 / 1000)  # (K - 1) / (2 N)
    assert (run_copy / "eval_curves.png").read_bytes()[:8] == PNG_MAGIC


def test_eval_quiet_prints_nothing_and_writes_the_same_report(ring_run, tmp_path, capsys):
    loud, quiet = tmp_path / "loud.json", tmp_path / "quiet.json"
    rc, out, err = cli(capsys, "eval", ring_run, "-n", 300, "-o", loud, "--no-plots")
    assert rc == 0 and "reverse_kl" in out, err
    rc, out, err = cli(capsys, "eval", ring_run, "-n", 300, "-o", quiet, "--no-plots", "-q")
    assert rc == 0, err
    assert out.strip() == ""
    strip = lambda r: {k: v for k, v in json.loads(r.read_text()).items() if k != "run"}  # noqa: E731
    assert strip(quiet) == strip(loud)


def test_eval_same_seed_is_deterministic_and_one_seed_has_no_se(ring_run, tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    assert main(["eval", str(ring_run), "-n", "300", "-o", str(a), "--no-plots"]) == 0
    assert main(["eval", str(ring_run), "-n", "300", "-o", str(b), "--no-plots"]) == 0
    ra = json.loads(a.read_text())
    assert ra["reverse_kl"] == json.loads(b.read_text())["reverse_kl"]
    assert ra["reverse_kl"]["se"] is None  # one seed: no standard error (and no NaN in the JSON)
    assert not list(tmp_path.glob("*.png"))  # --no-plots


def test_eval_output_folder_and_curves_named_after_the_json(ring_run, tmp_path):
    assert main(["eval", str(ring_run), "-n", "200", "-o", str(tmp_path)]) == 0
    assert (tmp_path / "eval.json").is_file() and (tmp_path / "eval_curves.png").is_file()
    assert main(["eval", str(ring_run / "generator.safetensors"), "-n", "200", "-o", str(tmp_path / "r.json")]) == 0
    assert (tmp_path / "r_curves.png").read_bytes()[:8] == PNG_MAGIC  # a snapshot file finds its run's log


# ------------------------------------------------------------------------------------ image runs
def test_eval_mnist_limited_fid_kid_prdc_and_clustering(runs, mnist_cache, tmp_path, capsys):
    run = _copy(runs["mnist-limited"], tmp_path)
    rc, out, err = cli(capsys, "eval", run, "-n", 200, "--seeds", "0,1", "--cache-dir", mnist_cache)
    assert rc == 0, err
    assert "real-vs-real" in out and "clustering accuracy" in out
    r = json.loads((run / "eval.json").read_text())
    assert r["data"] == "mnist-limited" and r["metric_names"] == ["fid", "kid", "prdc", "clustering"]
    m = r["metrics"]
    assert m["feature_network"]["dataset"] == "mnist" and len(m["feature_network"]["sha256"]) == 64
    model, ref, per_seed = m["model"], m["reference"], m["model_per_seed"]
    fields = {"fid", "kid_mean", "kid_std", "precision", "recall", "density", "coverage"}
    assert set(model) == set(ref) == fields | {"n_real", "n_fake", "n_prdc"}
    assert set(per_seed) == set(m["model_se"]) == fields
    assert model["n_real"] == ref["n_real"] == 60_000 and model["n_fake"] == ref["n_fake"] == 200
    for f in fields:
        assert len(per_seed[f]) == 2 and model[f] == pytest.approx(sum(per_seed[f]) / 2) and m["model_se"][f] >= 0
    for f in ("precision", "recall", "coverage"):
        assert 0.0 <= ref[f] <= 1.0 and all(0.0 <= v <= 1.0 for v in per_seed[f])
    # Real test images are far closer to the train set than a 16-image generator's output.
    assert ref["fid"] < model["fid"] and ref["coverage"] > model["coverage"]
    c = r["clustering"]
    assert c["n_per_component"] == 67  # ceil(200 / 3)
    assert all(0.0 < a <= 1.0 for a in c["accuracy"]["per_seed"]) and 0.0 <= c["nmi"]["mean"] <= 1.0
    assert (run / "eval_curves.png").read_bytes()[:8] == PNG_MAGIC


def test_eval_mnist_metric_subset(runs, mnist_cache, tmp_path, capsys):
    out = tmp_path / "e.json"
    rc, _, err = cli(capsys, "eval", runs["mnist"], "-n", 150, "--metrics", "fid,clustering", "--cache-dir", mnist_cache,
                     "-o", out, "--no-plots")
    assert rc == 0, err
    r = json.loads(out.read_text())
    assert set(r["metrics"]["model_se"]) == {"fid"} and "precision" not in r["metrics"]["reference"]
    assert r["clustering"]["n_per_component"] == 75  # fixed_gmm with 2 components
    assert r["metrics"]["reference"]["fid"] < r["metrics"]["model"]["fid"]


def test_eval_fashion_mnist_uses_the_fashion_classifier(fashion_run, fashion_cache, tmp_path, capsys):
    out = tmp_path / "e.json"
    rc, stdout, err = cli(capsys, "eval", fashion_run, "-n", 120, "--cache-dir", fashion_cache, "-o", out)
    assert rc == 0, err
    r = json.loads(out.read_text())
    assert r["metrics"]["feature_network"]["dataset"] == "fashion-mnist"
    assert r["metric_names"] == ["fid", "kid", "prdc"] and "clustering" not in r  # a Gaussian prior: no components
    assert "no clustering" in stdout
    assert r["metrics"]["reference"]["fid"] < r["metrics"]["model"]["fid"]
    # Asking for clustering explicitly is an error that says why.
    rc, _, err = cli(capsys, "eval", fashion_run, "--metrics", "clustering", "--cache-dir", fashion_cache)
    assert rc == 2 and "no components" in err


def test_eval_stacked_mnist_modes_and_kl(runs, mnist_cache, tmp_path, capsys):
    out = tmp_path / "s.json"
    rc, stdout, err = cli(capsys, "eval", runs["stacked-mnist"], "-n", 500, "--seeds", "3,4", "--cache-dir", mnist_cache,
                          "-o", out)
    assert rc == 0, err
    r = json.loads(out.read_text())
    assert r["data"] == "stacked-mnist" and r["feature_network"]["dataset"] == "mnist"
    assert all(1 <= m <= 500 for m in r["modes"]["per_seed"])  # at most one mode per sample
    assert 0.0 <= r["reverse_kl"]["mean"] <= 6.91  # log(1000): all samples in one mode
    assert r["kl_floor"] == pytest.approx(999 / 1000)
    for i in range(2):  # per sampling seed, the KL is exactly its channels' KLs plus their total correlation
        parts = sum(c["per_seed"][i] for c in r["channel_kl"]) + r["total_correlation"]["per_seed"][i]
        assert parts == pytest.approx(r["reverse_kl"]["per_seed"][i], abs=1e-9)
    assert "of 1,000 modes" in stdout and "total correlation" in stdout


# ------------------------------------------------------------------------------------ bad input
def test_eval_missing_run_bad_seeds_and_bad_n(tmp_path, capsys):
    rc, _, err = cli(capsys, "eval", tmp_path / "nope")
    assert rc == 2 and "nope" in err and "does not exist" in err
    rc, _, err = cli(capsys, "eval", tmp_path, "--seeds", "a,b")
    assert rc == 2 and "'a' is not a seed or a range" in err
    rc, _, err = cli(capsys, "eval", tmp_path, "--seeds", "1,1")
    assert rc == 2 and "repeat" in err
    for bad in ("0", "-5", "x"):
        rc, _, err = cli(capsys, "eval", tmp_path, "-n", bad)
        assert rc == 2 and "-n" in err


def test_eval_run_without_snapshot(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    rc, _, err = cli(capsys, "eval", tmp_path / "run")
    assert rc == 2 and "generator.safetensors" in err and "gmmgan train" in err


def test_eval_unknown_and_inapplicable_metrics(ring_run, tmp_path, capsys):
    rc, _, err = cli(capsys, "eval", ring_run, "--metrics", "fid,bogus")
    assert rc == 2 and "unknown metric 'bogus'" in err and "clustering" in err  # lists the valid names
    rc, _, err = cli(capsys, "eval", ring_run, "--metrics", "fid", "-o", tmp_path / "e.json")
    assert rc == 2 and "does not apply to a ring run" in err and "modes" in err
    assert not (tmp_path / "e.json").exists()


def test_eval_bad_training_log_is_an_error_before_evaluating(run_copy, capsys):
    lines = (run_copy / "log.jsonl").read_text().splitlines()
    (run_copy / "log.jsonl").write_text("\n".join([lines[0], "{not json", *lines[1:]]) + "\n")
    rc, _, err = cli(capsys, "eval", run_copy, "-n", 100)
    assert rc == 2 and "line 2" in err and "log.jsonl" in err
    assert not (run_copy / "eval.json").exists()
    rc, _, err = cli(capsys, "eval", run_copy, "-n", 100, "--no-plots")  # the log is not needed then
    assert rc == 0, err


def test_eval_unavailable_device(ring_run, capsys):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    rc, _, err = cli(capsys, "eval", ring_run, "--device", "cuda")
    assert rc == 2 and "CUDA is not available" in err


def test_eval_missing_classifier_says_how_to_train_it(runs, tmp_path, capsys):
    empty = tmp_path / "empty_cache"
    rc, _, err = cli(capsys, "eval", runs["mnist-limited"], "-n", 50, "--cache-dir", empty, "-o", tmp_path / "e.json")
    assert rc == 2 and "No mnist classifier" in err
    assert "gmmgan eval train-classifier --dataset mnist" in err and f"--cache-dir {empty}" in err
    rc, _, err = cli(capsys, "eval", runs["stacked-mnist"], "-n", 50, "--cache-dir", empty)
    assert rc == 2 and "train-classifier" in err


def test_eval_images_bad_n_and_missing_data(runs, mnist_cache, tmp_path, capsys):
    rc, _, err = cli(capsys, "eval", runs["mnist-limited"], "-n", 5, "--cache-dir", mnist_cache, "-o", tmp_path / "e.json")
    assert rc == 2 and "too few" in err
    rc, _, err = cli(capsys, "eval", runs["mnist-limited"], "-n", 50, "--cache-dir", mnist_cache,
                     "--data-root", tmp_path / "no_data", "-o", tmp_path / "e.json")
    assert rc == 2 and "train-images-idx3-ubyte" in err and "no_data" in err


def test_train_classifier_bad_input(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("GMMGAN_DATA", raising=False)
    monkeypatch.delenv("GMMGAN_DATA_ROOT", raising=False)
    rc, _, err = cli(capsys, "eval", "train-classifier", "--cache-dir", tmp_path)
    assert rc == 2 and "--data-root" in err
    rc, _, err = cli(capsys, "eval", "train-classifier", "--epochs", 0, "--data-root", tmp_path)
    assert rc == 2 and "--epochs" in err
    rc, _, err = cli(capsys, "eval", "train-classifier", "--data-root", tmp_path / "none", "--cache-dir", tmp_path)
    assert rc == 2 and "not found" in err
    rc, _, err = cli(capsys, "eval", "train-classifier", "--dataset", "cifar10")
    assert rc == 2 and "invalid choice" in err


def test_eval_images_not_28_pixels_is_a_clear_error(tmp_path, mnist_root, mnist_cache, capsys):
    run = _tiny_run(tmp_path, "mnist-limited", mnist_root, "data.per_class=2", "data.resolution=32", "prior.n_components=2")
    rc, _, err = cli(capsys, "eval", run, "-n", 50, "--cache-dir", mnist_cache)
    assert rc == 2 and "1x32x32" in err and "28-pixel" in err


# ------------------------------------------------------------ paths, devices and damaged snapshots
def test_unknown_device_is_a_usage_error(tmp_path, capsys):
    rc, _, err = cli(capsys, "eval", tmp_path / "run", "--device", "gpu")
    assert_clean_error(rc, err, "--device", "unknown device 'gpu'", "cuda:N")


def test_cuda_without_cuda_says_the_command_line_option(ring_run, tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    rc, _, err = cli(capsys, "eval", ring_run, "--device", "cuda", "-o", tmp_path / "x.npy")
    assert rc == 2 and "CUDA is not available" in err and "--device cpu" in err and "device=cpu" not in err


def test_eval_of_a_checkpoint_says_it_is_not_a_snapshot(ring_run, tmp_path, capsys):
    rc, _, err = cli(capsys, "eval", ring_run / "checkpoint.pt", "-o", tmp_path / "e.json")
    assert rc == 2 and "not a generator snapshot" in err


@pytest.mark.parametrize("metadata", ["{not json", "[1, 2]", '{"kimg": 0.3}'])
def test_snapshot_with_unreadable_metadata_is_a_clear_error(run_copy, tmp_path, capsys, metadata):
    rewrite_snapshot_metadata(run_copy / "generator.safetensors", metadata)
    out = tmp_path / "e.json"
    rc, _, err = cli(capsys, "eval", run_copy, "-n", "50", "-o", out)
    assert_clean_error(rc, err, "generator.safetensors", "no readable metadata", "Re-run or resume training")
    assert not out.exists()


# ---------------------------------------------------------------------------- no silent overwrites
def test_eval_refuses_to_overwrite_eval_json(run_copy, capsys):
    args = ("eval", run_copy, "-n", 100, "--no-plots")
    assert cli(capsys, *args)[0] == 0
    (run_copy / "eval.json").write_text("earlier")
    rc, _, err = cli(capsys, *args)
    assert rc == 2 and "eval.json' exists" in err and "--force" in err and "-o" in err
    assert (run_copy / "eval.json").read_text() == "earlier"
    rc, _, err = cli(capsys, *args, "--force")
    assert rc == 0, err
    assert json.loads((run_copy / "eval.json").read_text())["n_samples"] == 100


@pytest.mark.parametrize("name", ["metrics.json", "config.yaml", "generator.safetensors", "checkpoint.pt", "log.jsonl"])
def test_eval_never_writes_over_the_runs_own_files(run_copy, capsys, name):
    before = (run_copy / name).read_bytes()
    rc, _, err = cli(capsys, "eval", run_copy, "-n", "50", "-o", run_copy / name)
    assert_clean_error(rc, err, f"would overwrite the run's own {name}", "choose another file")
    assert (run_copy / name).read_bytes() == before


@pytest.fixture
def tiny_training(monkeypatch):
    """train-classifier trains a tiny net on 64 random images (seconds), whatever --data-root says."""
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (64, 28, 28), dtype=torch.uint8, generator=g)
    labels = torch.arange(64) % 10

    def tiny(dataset, root=None, out_dir=None, epochs=None, device="cpu", seed=0, log=print):
        return train_classifier(dataset, out_dir=out_dir, epochs=1, device=device, seed=seed, log=log,
                                     config=ClassifierConfig(width=2, feature_dim=4, batch_size=32),
                                     train_data=(images, labels), test_data=(images[:16], labels[:16]))

    monkeypatch.setattr(gmmgan.metrics, "train_classifier", tiny)


def test_train_classifier_refuses_to_replace_a_cached_classifier(tmp_path, capsys, tiny_training):
    cache = tmp_path / "cache"
    rc, out, err = cli(capsys, "eval", "train-classifier", "--data-root", tmp_path, "--cache-dir", cache)
    assert rc == 0, err
    weights = cache / "mnist.safetensors"
    # A start line (data set, data root, epochs, where it saves) and a last line naming the saved file.
    first, last = out.strip().splitlines()[0], out.strip().splitlines()[-1]
    assert "mnist" in first and str(tmp_path) in first and "epochs" in first and str(weights) in first
    assert last.startswith("saved") and str(weights) in last
    before = {p.name: p.read_bytes() for p in cache.iterdir()}

    rc, _, err = cli(capsys, "eval", "train-classifier", "--data-root", tmp_path, "--cache-dir", cache, "--seeds", "1")
    assert rc == 2 and "already cached" in err and "--force" in err and "--cache-dir OTHER" in err
    assert {p.name: p.read_bytes() for p in cache.iterdir()} == before

    rc, _, err = cli(capsys, "eval", "train-classifier", "--data-root", tmp_path, "--cache-dir", cache, "--seeds", "1",
                     "--force")
    assert rc == 0, err
    assert weights.read_bytes() != before["mnist.safetensors"]  # another seed: another classifier
    assert load_classifier("mnist", cache).info["config"]["seed"] == 1  # and its JSON matches it


# ---------------------------------------------------------- options that do not apply, hints, help
@pytest.mark.parametrize("option, value", [("--seeds", "0,,1"), ("--seeds", ","), ("--metrics", "fid,,kid")])
def test_empty_list_items_are_errors(ring_run, capsys, option, value):
    rc, _, err = cli(capsys, "eval", ring_run, option, value)
    assert rc == 2 and "empty item" in err and option in err


@pytest.mark.parametrize("argv, pieces", [
    (["--dataset", "mnist"], ["--dataset", "only appl", "train-classifier"]),
    (["--epochs", "2"], ["--epochs", "only appl", "train-classifier"]),
])
def test_train_classifier_options_on_a_run_are_errors(ring_run, tmp_path, capsys, argv, pieces):
    rc, _, err = cli(capsys, "eval", ring_run, "-o", tmp_path / "e.json", *argv)
    assert rc == 2 and all(p in err for p in pieces)
    assert not (tmp_path / "e.json").exists()


def test_run_options_on_train_classifier_are_errors(tmp_path, capsys):
    rc, _, err = cli(capsys, "eval", "train-classifier", "--data-root", tmp_path, "--cache-dir", tmp_path,
                     "-o", tmp_path / "e.json")
    assert rc == 2 and "-o only applies to evaluating a run" in err
    assert not list(tmp_path.iterdir())


def test_misspelt_train_classifier_gets_a_hint(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc, _, err = cli(capsys, "eval", "train-clasifier")
    assert rc == 2 and "did you mean train-classifier?" in err
    rc, _, err = cli(capsys, "eval", "runs/00000-ring")
    assert rc == 2 and "does not exist" in err and "did you mean" not in err


def test_help_uses_placeholders(capsys):
    rc, out, _ = cli(capsys, "eval", "--help")
    assert rc == 0
    assert "../shared" not in out and "--data-root DIR" in out and "--force" in out


def test_eval_seeds_take_ranges_as_train_does(ring_run, tmp_path, capsys):
    rc, out, err = cli(capsys, "eval", ring_run, "--seeds", "0-2", "-n", "200", "--no-plots", "-o",
                       tmp_path / "range.json")
    assert rc == 0, err
    assert json.loads((tmp_path / "range.json").read_text())["seeds"] == [0, 1, 2]
