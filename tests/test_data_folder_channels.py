"""Image folders with 1 or 3 channels: data.channels (1, 3, null = as the images are), through loading and training."""

import numpy as np
import pytest
import torch

PIL = pytest.importorskip("PIL.Image", reason="Pillow is needed for image folders")

from gmmgan.data import load_dataset  # noqa: E402
from gmmgan.data.folder import load_image_folder  # noqa: E402
from gmmgan.gan.config import load_config  # noqa: E402
from gmmgan.gan.training_loop import train  # noqa: E402

TINY = [
    "data.name=folder", "data.resolution=8", "prior.n_components=2", "prior.embed_dim=3", "prior.fit_samples=12",
    "prior.warm_start_steps=2", "nets.g_width=4", "nets.d_width=4", "schedule.batch_size=4",
    "schedule.total_kimg=0.008", "schedule.snapshot_kimg=0.008", "schedule.sample_kimg=0",
    "schedule.log_kimg=0.008", "device=cpu", "cpu_threads=1",
]


def _grey_folder(path, n=6):
    path.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        PIL.fromarray(np.full((10, 10), (40 * i) % 256, np.uint8), mode="L").save(path / f"g{i}.png")
    return path


def _colour_folder(path, n=6):
    path.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        a = np.zeros((10, 10, 3), np.uint8)
        a[..., i % 3] = 200
        PIL.fromarray(a).save(path / f"c{i}.png")
    return path


def _random_folder(path, n, colour):
    """n random 10x10 images, grey or colour (random pixels keep the prior's PCA and GMM well posed)."""
    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        PIL.fromarray(rng.integers(0, 256, (10, 10, 3) if colour else (10, 10), dtype=np.uint8)).save(path / f"{i}.png")
    return path


def test_none_keeps_grey_images_grey_and_colour_images_rgb(tmp_path):
    grey = load_image_folder(_grey_folder(tmp_path / "grey"), 8, channels=None)
    assert grey.shape == (6, 1, 8, 8)
    assert [int(v) for v in grey[:, 0, 0, 0]] == [0, 40, 80, 120, 160, 200]
    colour = load_image_folder(_colour_folder(tmp_path / "colour"), 8, channels=None)
    assert colour.shape == (6, 3, 8, 8)
    # One colour image among grey ones makes the whole folder RGB, grey images replicated.
    mixed = _grey_folder(tmp_path / "mixed")
    _colour_folder(mixed, n=1)
    x = load_image_folder(mixed, 8, channels=None)
    assert x.shape == (7, 3, 8, 8)
    assert torch.equal(x[1, 0], x[1, 1]) and torch.equal(x[1, 1], x[1, 2])


def test_rgb_to_grey_and_grey_to_rgb(tmp_path):
    grey3 = load_image_folder(_grey_folder(tmp_path / "grey"), 8, channels=3)
    assert grey3.shape == (6, 3, 8, 8) and torch.equal(grey3[:, 0], grey3[:, 2])
    colour1 = load_image_folder(_colour_folder(tmp_path / "colour"), 8, channels=1)
    assert colour1.shape == (6, 1, 8, 8)
    # ITU-R 601 luma of pure red, green, blue at 200: 0.299, 0.587, 0.114 of 200.
    assert [int(v) for v in colour1[:3, 0, 0, 0]] == [60, 117, 23]
    with pytest.raises(ValueError, match="channels must be 1 .*3 .*None"):
        load_image_folder(tmp_path / "grey", 8, channels=2)


def test_load_dataset_folder_channels_and_n(tmp_path):
    folder = _grey_folder(tmp_path / "grey")
    d = load_dataset("folder", folder, resolution=8, channels=None, n=4)
    assert d.shape == (1, 8, 8) and len(d) == 4 and float(d.data.min()) == -1.0


def test_config_channels_field_is_validated():
    assert load_config(None, ["data.name=folder"]).data.channels is None
    assert load_config(None, ["data.name=folder", "data.channels=1"]).data.channels == 1
    assert load_config(None, ["data.name=folder", "data.channels=null"]).data.channels is None
    with pytest.raises(ValueError, match="data.channels must be 1 .*3 .*or null"):
        load_config(None, ["data.name=folder", "data.channels=2"])
    with pytest.raises(ValueError, match="data.channels applies to image folders"):
        load_config(None, ["data.name=mnist", "data.channels=3"])


@pytest.mark.parametrize(("channels", "expected"), [("null", 1), ("3", 3), ("1", 1)])
def test_training_on_a_grey_folder_uses_data_channels(tmp_path, channels, expected):
    folder = _random_folder(tmp_path / "grey", 12, colour=False)
    cfg = load_config(None, [*TINY, f"data.root={folder}", f"data.channels={channels}"])
    result = train(cfg, run_dir=tmp_path / "run", quiet=True)
    assert result["G_ema"].channels == expected


def test_training_on_a_colour_folder_converted_to_grey(tmp_path):
    folder = _random_folder(tmp_path / "colour", 12, colour=True)
    result = train(load_config(None, [*TINY, f"data.root={folder}", "data.channels=1"]), run_dir=tmp_path / "run",
                   quiet=True)
    assert result["G_ema"].channels == 1
