"""gmmgan eval on an image-folder run: FID/KID/PRDC in the feature space of an autoencoder trained on the folder.

The folder is ~40 small PNGs written here; the run is tiny, and the encoder trains for its minimum of
steps on 8-pixel images (a few seconds), into a temporary cache.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

PIL = pytest.importorskip("PIL.Image", reason="Pillow is needed for image folders")

from gmmgan.cli import main  # noqa: E402
from gmmgan.gan.config import load_config  # noqa: E402
from gmmgan.gan.training_loop import train  # noqa: E402
from gmmgan.metrics.folder_features import EncoderConfig, load_or_train_folder_encoder  # noqa: E402

TINY = [
    "data.name=folder", "data.resolution=8", "prior.n_components=2", "prior.embed_dim=4", "prior.fit_samples=40",
    "prior.warm_start_steps=5", "nets.g_width=4", "nets.d_width=4", "schedule.batch_size=8",
    "schedule.total_kimg=0.016", "schedule.snapshot_kimg=0.016", "schedule.sample_kimg=0",
    "schedule.log_kimg=0.008", "device=cpu", "cpu_threads=1",
]


def cli(capsys, *argv):
    rc = main([str(a) for a in argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """40 colour PNGs of 12x12 pixels: a bright square of one of three colours at one of several places."""
    path = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for i in range(40):
        a = rng.integers(0, 30, (12, 12, 3), dtype=np.uint8)
        y, x = rng.integers(0, 6, 2)
        a[y : y + 6, x : x + 6, i % 3] = 230
        PIL.fromarray(a).save(path / f"{i:02d}.png")
    return path


@pytest.fixture(scope="module")
def run(tmp_path_factory, folder):
    cfg = load_config(None, [*TINY, f"data.root={folder}"])
    return Path(train(cfg, run_dir=tmp_path_factory.mktemp("runs") / "folder", quiet=True)["run_dir"])


def test_eval_folder_run_prints_metrics_beside_the_half_folder_reference(run, folder, tmp_path, capsys):
    cache = tmp_path / "cache"
    out = tmp_path / "eval.json"
    rc, text, err = cli(capsys, "eval", run, "--cache-dir", cache, "-o", out, "--seeds", "0,1", "--no-plots")
    assert rc == 0, err
    assert "autoencoder trained on this folder (40 images, 3x8x8)" in text
    assert "trained it in" in text and "cached for the next evaluation" in text
    assert "real-vs-real" in text and "fid" in text and "coverage" in text
    assert "20 of the 20 held-out folder images" in text and "other 20 images" in text
    assert "not with Inception FIDs" in text
    report = json.loads(out.read_text())
    assert report["data"] == "folder" and report["n_samples"] == 20
    m = report["metrics"]
    assert set(m["model"]) >= {"fid", "kid_mean", "precision", "recall", "density", "coverage"}
    assert m["model"]["n_fake"] == 20 and m["reference"]["n_fake"] == 20 and m["reference"]["n_real"] == 20
    assert len(m["model_per_seed"]["fid"]) == 2 and m["model_se"]["fid"] is not None
    fn = m["feature_network"]
    assert fn["kind"] == "folder-autoencoder" and fn["n_images"] == 40 and fn["channels"] == 3
    assert len(list(cache.glob("folder-*.safetensors"))) == 1

    # The second evaluation reuses the cached encoder: the same features, the same numbers.
    out2 = tmp_path / "eval2.json"
    rc, text, err = cli(capsys, "eval", run, "--cache-dir", cache, "-o", out2, "--seeds", "0,1", "--no-plots")
    assert rc == 0, err
    assert "trained it in" not in text
    again = json.loads(out2.read_text())["metrics"]
    assert again["model"]["fid"] == pytest.approx(m["model"]["fid"])
    assert again["feature_network"]["sha256"] == fn["sha256"]


def test_eval_folder_n_metrics_and_errors(run, folder, tmp_path, capsys):
    cache = tmp_path / "cache"
    rc, text, err = cli(capsys, "eval", run, "--cache-dir", cache, "-o", tmp_path / "a.json", "-n", 30,
                        "--metrics", "fid", "--no-plots")
    assert rc == 0, err
    assert "n: 30 generated" in text and "not comparable" in text and "kid_mean" not in text
    rc, _, err = cli(capsys, "eval", run, "--cache-dir", cache, "-o", tmp_path / "b.json", "--metrics", "clustering")
    assert rc == 2 and "does not apply to a folder run" in err
    rc, _, err = cli(capsys, "eval", run, "--cache-dir", cache, "-o", tmp_path / "c.json",
                     "--data-root", tmp_path / "gone")
    assert rc == 2 and "does not exist" in err


def test_eval_folder_too_few_images_is_a_clear_error(tmp_path, capsys):
    small = tmp_path / "small"
    small.mkdir()
    rng = np.random.default_rng(1)
    for i in range(8):
        PIL.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(small / f"{i}.png")
    cfg = load_config(None, [*TINY, f"data.root={small}", "prior.fit_samples=8", "prior.embed_dim=2"])
    r = Path(train(cfg, run_dir=tmp_path / "run", quiet=True)["run_dir"])
    rc, _, err = cli(capsys, "eval", r, "--cache-dir", tmp_path / "cache")
    assert rc == 2 and "has 8 images" in err and "at least 12" in err


def test_cached_encoder_that_does_not_match_is_trained_again(tmp_path):
    images = torch.randint(0, 256, (12, 1, 8, 8), dtype=torch.uint8)
    cfg = EncoderConfig(min_steps=5, max_steps=5)
    _, info, trained = load_or_train_folder_encoder(images, tmp_path, config=cfg)
    assert trained and info["steps"] == 5
    _, _, trained = load_or_train_folder_encoder(images, tmp_path, config=cfg)
    assert not trained
    (weights,) = tmp_path.glob("folder-*.safetensors")
    weights.write_bytes(b"broken")
    said = []
    _, _, trained = load_or_train_folder_encoder(images, tmp_path, config=cfg, log=said.append)
    assert trained and any("corrupt" in s for s in said)
    # Other images, or other settings, are another encoder.
    _, _, trained = load_or_train_folder_encoder(images.flip(0), tmp_path, config=cfg)
    assert trained and len(list(tmp_path.glob("folder-*.json"))) == 2
