"""Stacked MNIST and the limited-data subset (synthetic digits; real MNIST once if present)."""


import pytest
import torch

from gmmgan.data.mnist import limited_subset
from gmmgan.data.stacked import load_stacked_mnist, mode_ids, stack_digits


def _fake_digits(m=200, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(m) % 10
    # Each image encodes its own index so tests can trace which source image went where.
    images = torch.randint(0, 256, (m, 28, 28), generator=g, dtype=torch.uint8)
    images[:, 0, 0] = (torch.arange(m) % 256).to(torch.uint8)
    images[:, 0, 1] = (torch.arange(m) // 256).to(torch.uint8)
    return images, labels


def test_stack_shapes_and_consistency():
    images, labels = _fake_digits()
    x, t = stack_digits(images, labels, n=5000, seed=1)
    assert x.shape == (5000, 3, 28, 28) and x.dtype == torch.uint8
    assert t.shape == (5000, 3) and t.dtype == torch.int64
    src = x[:, :, 0, 0].long() + 256 * x[:, :, 0, 1].long()  # index of the source image of every channel
    assert torch.equal(t, labels[src])
    assert torch.equal(x, images[src])


def test_stack_deterministic_and_channels_independent():
    images, labels = _fake_digits()
    x1, t1 = stack_digits(images, labels, n=20_000, seed=7)
    x2, t2 = stack_digits(images, labels, n=20_000, seed=7)
    assert torch.equal(x1, x2) and torch.equal(t1, t2)
    assert not torch.equal(stack_digits(images, labels, n=20_000, seed=8)[1], t1)
    # Uniform, independent channels: all 1000 modes appear with about 20 each.
    counts = torch.bincount(mode_ids(t1), minlength=1000)
    assert counts.numel() == 1000 and (counts > 0).all()
    assert int(counts.max()) < 60


def test_mode_ids():
    assert mode_ids(torch.tensor([[1, 2, 3], [0, 0, 0], [9, 9, 9]])).tolist() == [123, 0, 999]
    with pytest.raises(ValueError, match=r"shape \(N, 3\)"):
        mode_ids(torch.zeros(4, 2))


def test_stack_validation():
    images, labels = _fake_digits(20)
    with pytest.raises(ValueError, match=r"images must have shape \(M, H, W\)"):
        stack_digits(images[:, None], labels)
    with pytest.raises(ValueError, match=r"labels must have shape \(20,\)"):
        stack_digits(images, labels[:5])
    with pytest.raises(ValueError, match="images is empty"):
        stack_digits(images[:0], labels[:0])
    with pytest.raises(ValueError, match="non-negative int"):
        stack_digits(images, labels, n=-3)


def test_limited_subset():
    images, labels = _fake_digits(1000)
    x, y = limited_subset(images, labels, per_class=50, seed=0)
    assert x.shape == (500, 28, 28) and y.shape == (500,)
    assert torch.bincount(y).tolist() == [50] * 10
    x2, y2 = limited_subset(images, labels, per_class=50, seed=0)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    x3, _ = limited_subset(images, labels, per_class=50, seed=1)
    assert not torch.equal(x, x3)
    # Every chosen row is a distinct row of the source.
    rows = (x[:, 0, 0].long() + 256 * x[:, 0, 1].long()).tolist()  # source index encoded in 2 pixels
    assert torch.equal(x, images[rows]) and torch.equal(y, labels[rows])
    assert len(set(rows)) == 500 and rows == sorted(rows)


def test_limited_subset_errors():
    images, labels = _fake_digits(100)
    with pytest.raises(ValueError, match="class 0 has only 10 images, fewer than per_class=50"):
        limited_subset(images, labels, per_class=50)
    with pytest.raises(ValueError, match="per_class must be a positive int"):
        limited_subset(images, labels, per_class=0)
    with pytest.raises(ValueError, match=r"labels must have shape \(100,\)"):
        limited_subset(images, labels[:3])


def test_real_stacked_mnist_small(mnist_root):
    x, t = load_stacked_mnist(mnist_root, n=1000, seed=0)
    assert x.shape == (1000, 3, 28, 28) and t.shape == (1000, 3)
    assert int(t.min()) >= 0 and int(t.max()) <= 9
