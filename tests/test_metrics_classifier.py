"""The feature classifier: training reduces the loss, save/load round-trips exactly, clear errors."""

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gmmgan.metrics.classifier import (
    ClassifierConfig,
    FeatureClassifier,
    _shift,
    default_cache_dir,
    load_classifier,
    prepare_images,
    train_classifier,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


TINY = ClassifierConfig(width=4, feature_dim=16, batch_size=16, lr=1e-2)


def _toy_digits(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 (n, 28, 28) images whose class k is a bright 6x6 square at a class-specific place."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 10, (n,), generator=g)
    x = (torch.rand(n, 28, 28, generator=g) * 60).to(torch.uint8)
    for i, k in enumerate(y.tolist()):
        r, c = 3 + 6 * (k // 4), 3 + 6 * (k % 4)
        x[i, r : r + 6, c : c + 6] = 255
    return x, y


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # see one_thread
    out = tmp_path_factory.mktemp("clf")
    train, test = _toy_digits(256, 0), _toy_digits(200, 1)
    model, info = train_classifier(
        "mnist", out_dir=out, epochs=1, seed=0, config=TINY, train_data=train, test_data=test, log=None
    )
    torch.set_num_threads(n)
    return model, info, out, train, test


def test_training_reduces_the_loss(trained):
    model, info, _, (x, y), _ = trained
    torch.manual_seed(0)
    untrained = FeatureClassifier(ClassifierConfig(**info["config"])).eval()
    before = F.cross_entropy(untrained.logits(x), y).item()
    after = F.cross_entropy(model.logits(x), y).item()
    assert after < 0.75 * before
    assert info["test_accuracy"] > 0.5  # 10 classes: chance is 0.1


def test_save_load_round_trip_gives_identical_outputs(trained):
    model, info, out, _, (xt, _) = trained
    loaded = load_classifier("mnist", out)
    assert torch.equal(model.features(xt), loaded.features(xt))
    assert torch.equal(model.logits(xt), loaded.logits(xt))
    assert torch.equal(model.predict(xt), loaded.predict(xt))
    meta = json.loads((out / "mnist.json").read_text())
    assert meta["dataset"] == "mnist" and meta["test_accuracy"] == info["test_accuracy"]
    assert meta["config"]["epochs"] == 1 and meta["config"]["feature_dim"] == 16
    assert loaded.info["sha256"] == meta["sha256"]


def test_features_shape_and_batching_do_not_change_results(trained):
    model, _, _, _, (xt, _) = trained
    f = model.features(xt)
    assert f.shape == (200, 16) and f.dtype == torch.float32
    assert torch.allclose(model.features(xt, batch_size=7), f, atol=1e-5)
    # uint8 (N, 28, 28), float (N, 1, 28, 28) in [0, 1] and numpy all mean the same images
    assert torch.allclose(model.features(xt.float().div(255).unsqueeze(1)), f, atol=1e-5)
    assert torch.allclose(model.features(xt.numpy()), f, atol=1e-5)
    assert model.training is False


def test_training_is_reproducible(tmp_path):
    train, test = _toy_digits(48, 2), _toy_digits(8, 3)
    kw = {"epochs": 1, "seed": 5, "config": TINY, "train_data": train, "test_data": test, "log": None}
    torch.manual_seed(11)
    state = torch.get_rng_state()
    _, a = train_classifier("mnist", out_dir=tmp_path / "a", **kw)
    assert torch.equal(torch.get_rng_state(), state)  # the caller's random state is untouched
    _, b = train_classifier("mnist", out_dir=tmp_path / "b", **kw)
    assert a["epoch_losses"] == b["epoch_losses"] and a["sha256"] == b["sha256"]


def test_missing_classifier_says_how_to_train(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"gmmgan eval train-classifier --dataset fashion-mnist"):
        load_classifier("fashion-mnist", tmp_path)


def test_modified_weights_are_rejected(trained, tmp_path):
    _, _, out, _, _ = trained
    for name in ("mnist.safetensors", "mnist.json"):
        (tmp_path / name).write_bytes((out / name).read_bytes())
    meta = json.loads((tmp_path / "mnist.json").read_text())
    meta["sha256"] = "0" * 64
    (tmp_path / "mnist.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="does not match the sha256"):
        load_classifier("mnist", tmp_path)


def test_cache_dir_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("GMMGAN_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path  # the same folder --cache-dir names
    monkeypatch.delenv("GMMGAN_CACHE")
    assert default_cache_dir().parts[-3:] == (".cache", "gmmgan", "classifiers")


def test_shift_moves_content_without_losing_it():
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(50, 1, 28, 28)
    x[:, :, 10:18, 10:18] = 1.0
    y = _shift(x, 2, g)
    assert y.shape == x.shape
    assert torch.equal(y.sum(dim=(1, 2, 3)), x.sum(dim=(1, 2, 3)))
    assert not torch.equal(y, x)
    assert torch.equal(_shift(x, 0, g), x)


@pytest.mark.parametrize(
    "images, match",
    [
        (torch.zeros(4, 3, 28, 28), r"shape \(N, 28, 28\) or \(N, 1, 28, 28\)"),
        (torch.zeros(4, 32, 32), r"shape \(N, 28, 28\)"),
        (torch.zeros(0, 28, 28, dtype=torch.uint8), "images is empty"),
        (torch.full((2, 28, 28), -1.0), r"generator outputs in \[-1, 1\]"),
        (torch.full((2, 28, 28), 255.0), r"float images must lie in \[0, 1\]"),
        (torch.full((2, 28, 28), math.nan), "NaN"),
        (np.zeros((2, 28, 28), dtype=np.int32), "must be uint8"),
    ],
)
def test_bad_images(images, match):
    with pytest.raises(ValueError, match=match):
        prepare_images(images)


def test_bad_arguments(tmp_path, monkeypatch):
    monkeypatch.delenv("GMMGAN_DATA_ROOT", raising=False)
    monkeypatch.delenv("GMMGAN_DATA", raising=False)
    monkeypatch.chdir(tmp_path)  # no root and no $GMMGAN_DATA: ./data, which has no IDX files here
    with pytest.raises(FileNotFoundError, match=r"MNIST file train-images-idx3-ubyte\[\.gz\] not found"):
        train_classifier("mnist", out_dir=tmp_path)
    with pytest.raises(ValueError, match="Unknown dataset"):
        load_classifier("cifar10", tmp_path)
    with pytest.raises(ValueError, match="epochs must be >= 1"):
        train_classifier("mnist", out_dir=tmp_path, epochs=0, train_data=_toy_digits(8, 0), test_data=_toy_digits(8, 1))


def test_missing_classifier_names_the_cache_dir_option(tmp_path):
    with pytest.raises(FileNotFoundError, match="--cache-dir DIR .command line. / cache_dir .Python."):
        load_classifier("mnist", tmp_path)


@pytest.mark.parametrize("json_text, weights", [
    ("{bad json", b"x" * 10),
    ("{}", b"x" * 10),
    ("[1, 2]", b"x" * 10),
    ('{"config": {}}', b"x" * 10),
])
def test_corrupt_classifier_cache_is_a_value_error(tmp_path, json_text, weights):
    from gmmgan.metrics import load_classifier

    (tmp_path / "mnist.json").write_text(json_text)
    (tmp_path / "mnist.safetensors").write_bytes(weights)
    with pytest.raises(ValueError, match="corrupt.*Retrain with `gmmgan eval train-classifier --dataset mnist`"):
        load_classifier("mnist", tmp_path)
