"""load_dataset: names, scaling to [-1, 1], shapes; real MNIST read once per module."""


import numpy as np
import pytest
import torch

from gmmgan.data import DATASET_NAMES, from_unit_range, load_dataset, to_unit_range
from gmmgan.data.idx import write_idx
from gmmgan.data.toy import GRID, RING


@pytest.fixture
def fake_root(tmp_path):
    rng = np.random.default_rng(0)
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for stem, n in [("train", 300), ("t10k", 40)]:
        write_idx(raw / f"{stem}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(raw / f"{stem}-labels-idx1-ubyte.gz", (np.arange(n) % 10).astype(np.uint8))
    return tmp_path


def test_toy():
    d = load_dataset("ring", n=1000, seed=2)
    assert d.data.shape == (1000, 2) and d.labels.shape == (1000,) and len(d) == 1000
    assert d.info["spec"] is RING and d.info["sigma"] == 0.01
    assert torch.equal(d.data, load_dataset("ring", n=1000, seed=2).data)
    assert not torch.equal(d.data, load_dataset("ring", split="test", n=1000, seed=2).data)
    g = load_dataset("GRID", n=10)
    assert torch.equal(g.info["means"], GRID.means) and len(load_dataset("grid")) == 100_000


def test_mnist_like_scaling_and_shapes(fake_root):
    d = load_dataset("mnist", fake_root, verify=False)
    assert d.data.shape == (300, 1, 28, 28) and d.shape == (1, 28, 28) and d.data.dtype == torch.float32
    assert float(d.data.min()) >= -1 and float(d.data.max()) <= 1
    assert float(d.data.min()) == -1.0 or float(d.data.max()) == 1.0
    x, y = d[3]
    assert x.shape == (1, 28, 28) and y.dtype == torch.int64
    d32 = load_dataset("mnist", fake_root, "test", resolution=32, verify=False)
    assert d32.data.shape == (40, 1, 32, 32) and float(d32.data.abs().max()) <= 1
    lim = load_dataset("mnist-limited", fake_root, per_class=5, seed=1, verify=False)
    assert lim.data.shape == (50, 1, 28, 28) and torch.bincount(lim.labels).tolist() == [5] * 10
    st = load_dataset("stacked-mnist", fake_root, n=64, verify=False)
    assert st.data.shape == (64, 3, 28, 28) and st.labels.shape == (64, 3)
    b = st.batcher(16, 0, with_labels=True)
    xb, yb = b.next()
    assert xb.shape == (16, 3, 28, 28) and yb.shape == (16, 3)


def test_unit_range_roundtrip():
    u = torch.arange(256, dtype=torch.uint8)
    f = to_unit_range(u)
    assert float(f[0]) == -1.0 and float(f[-1]) == 1.0
    assert torch.equal(from_unit_range(f), u)


def test_folder(tmp_path):
    from PIL import Image

    Image.fromarray(np.full((40, 40, 3), 255, np.uint8)).save(tmp_path / "w.png")
    d = load_dataset("folder", tmp_path, resolution=16, channels=1)
    assert d.data.shape == (1, 1, 16, 16) and float(d.data.min()) == 1.0 and d.labels is None
    with pytest.raises(ValueError, match="has no labels"):
        d.batcher(1, with_labels=True)
    with pytest.raises(ValueError, match="needs resolution="):
        load_dataset("folder", tmp_path)


def test_errors(tmp_path):
    with pytest.raises(ValueError, match="Unknown dataset 'cifar10'"):
        load_dataset("cifar10")
    with pytest.raises(ValueError, match="split must be 'train' or 'test'"):
        load_dataset("ring", split="val")
    with pytest.raises(ValueError, match="needs root="):
        load_dataset("mnist")
    with pytest.raises(FileNotFoundError, match="gmmgan data download"):
        load_dataset("fashion-mnist", tmp_path)
    assert "stacked-mnist" in DATASET_NAMES


def test_real_mnist_limited(mnist_root):
    d = load_dataset("mnist-limited", mnist_root)
    assert d.data.shape == (500, 1, 28, 28) and torch.bincount(d.labels).tolist() == [50] * 10
