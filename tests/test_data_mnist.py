"""IDX parsing and the MNIST / Fashion-MNIST loader (synthetic files + the real ones if present)."""

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from gmmgan.data.idx import IDXFormatError, md5sum, read_idx, write_idx
from gmmgan.data.mnist import find_raw_files, load_mnist


@pytest.fixture(scope="module")
def mnist_train(mnist_root):
    return load_mnist(mnist_root, "train")  # read once per module: ~0.3 s with md5


# ---------------------------------------------------------------- IDX format


@settings(max_examples=30, deadline=None)
@given(
    arr=hnp.arrays(
        dtype=st.sampled_from([np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]),
        shape=hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=5),
        elements={"allow_nan": False},
    ),
    gz=st.booleans(),
)
def test_idx_roundtrip(tmp_path_factory, arr, gz):
    path = tmp_path_factory.mktemp("idx") / ("a.idx.gz" if gz else "a.idx")
    write_idx(path, arr)
    out = read_idx(path)
    assert out.dtype == arr.dtype and out.shape == arr.shape
    np.testing.assert_array_equal(out, arr)
    assert out.flags.writeable


def test_idx_gzip_detected_by_content_not_name(tmp_path):
    arr = np.arange(12, dtype=np.uint8).reshape(3, 4)
    p = write_idx(tmp_path / "plain_name", arr, compress=True)
    assert p.read_bytes()[:2] == b"\x1f\x8b"
    np.testing.assert_array_equal(read_idx(p), arr)


def test_idx_bad_magic(tmp_path):
    p = tmp_path / "bad"
    p.write_bytes(b"\x01\x02\x08\x01" + b"\x00" * 10)
    with pytest.raises(IDXFormatError, match="bad IDX magic number 0x01020801"):
        read_idx(p)


def test_idx_unknown_dtype_code(tmp_path):
    p = tmp_path / "bad"
    p.write_bytes(b"\x00\x00\x07\x01" + b"\x00\x00\x00\x01" + b"\x00")
    with pytest.raises(IDXFormatError, match="magic"):
        read_idx(p)


def test_idx_truncated_data(tmp_path):
    p = write_idx(tmp_path / "t.idx", np.zeros((4, 5), np.uint8))
    p.write_bytes(p.read_bytes()[:-3])
    with pytest.raises(IDXFormatError, match=r"shape \(4, 5\).*truncated or corrupt"):
        read_idx(p)


def test_idx_truncated_header(tmp_path):
    p = tmp_path / "h"
    p.write_bytes(b"\x00\x00\x08\x03\x00\x00")
    with pytest.raises(IDXFormatError, match="truncated header"):
        read_idx(p)
    p.write_bytes(b"\x00")
    with pytest.raises(IDXFormatError, match="too short"):
        read_idx(p)


def test_idx_corrupt_gzip(tmp_path):
    p = write_idx(tmp_path / "c.gz", np.zeros((100, 28, 28), np.uint8))
    p.write_bytes(p.read_bytes()[:40])
    with pytest.raises(IDXFormatError, match="gzip data is corrupt"):
        read_idx(p)


def test_write_idx_rejects_unsupported_dtype(tmp_path):
    with pytest.raises(ValueError, match="cannot store dtype int64"):
        write_idx(tmp_path / "x", np.zeros(3, np.int64))


# ---------------------------------------------------------------- loader on synthetic files


def _fake_mnist(root: Path, folder="MNIST", n_train=6, n_test=4, gz=True, seed=0):
    """Write tiny train/test IDX files and patch nothing: md5 will not match the published table."""
    rng = np.random.default_rng(seed)
    raw = root / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    out = {}
    for stem_img, stem_lbl, n in [
        ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", n_train),
        ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", n_test),
    ]:
        imgs = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        lbls = rng.integers(0, 10, size=n, dtype=np.uint8)
        sfx = ".gz" if gz else ""
        write_idx(raw / (stem_img + sfx), imgs)
        write_idx(raw / (stem_lbl + sfx), lbls)
        out[stem_img] = (imgs, lbls)
    return out


@pytest.mark.parametrize("gz", [True, False])
def test_load_synthetic_without_verify(tmp_path, gz):
    ref = _fake_mnist(tmp_path, gz=gz)
    x, y = load_mnist(tmp_path, "train", verify=False)
    imgs, lbls = ref["train-images-idx3-ubyte"]
    assert x.dtype == torch.uint8 and x.shape == (6, 28, 28)
    assert y.dtype == torch.int64 and y.shape == (6,)
    np.testing.assert_array_equal(x.numpy(), imgs)
    np.testing.assert_array_equal(y.numpy(), lbls)
    xa, ya = load_mnist(tmp_path, "all", verify=False)
    assert xa.shape == (10, 28, 28) and ya.shape == (10,)
    np.testing.assert_array_equal(xa[6:].numpy(), ref["t10k-images-idx3-ubyte"][0])


def test_md5_mismatch_is_clear_error(tmp_path):
    _fake_mnist(tmp_path)
    with pytest.raises(ValueError, match=r"md5 mismatch for .*train-images-idx3-ubyte\.gz.*expected f68b3c2d"):
        load_mnist(tmp_path, "train")


def test_md5_mismatch_uncompressed_uses_raw_table(tmp_path):
    _fake_mnist(tmp_path, folder="FashionMNIST", gz=False)
    with pytest.raises(ValueError, match=r"md5 mismatch.*expected f4a8712d"):
        load_mnist(tmp_path, "train", dataset="fashion-mnist")


def test_missing_files_lists_every_path(tmp_path):
    with pytest.raises(FileNotFoundError) as ei:
        load_mnist(tmp_path, "test", dataset="fashion-mnist")
    msg = str(ei.value)
    for p in [
        tmp_path / "FashionMNIST" / "raw" / "t10k-images-idx3-ubyte.gz",
        tmp_path / "FashionMNIST" / "raw" / "t10k-images-idx3-ubyte",
        tmp_path / "t10k-images-idx3-ubyte.gz",
        tmp_path / "t10k-images-idx3-ubyte",
    ]:
        assert str(p) in msg
    assert "gmmgan data download fashion-mnist" in msg and "copy the raw IDX files" in msg


def test_root_may_be_the_raw_folder(tmp_path):
    _fake_mnist(tmp_path)
    x, _ = load_mnist(tmp_path / "MNIST" / "raw", "test", verify=False)
    assert x.shape == (4, 28, 28)


def test_mismatched_label_count(tmp_path):
    _fake_mnist(tmp_path)
    write_idx(tmp_path / "MNIST" / "raw" / "train-labels-idx1-ubyte.gz", np.zeros(5, np.uint8))
    with pytest.raises(ValueError, match="expected 6 uint8 labels"):
        load_mnist(tmp_path, "train", verify=False)


def test_wrong_image_shape(tmp_path):
    _fake_mnist(tmp_path)
    write_idx(tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte.gz", np.zeros((6, 32, 32), np.uint8))
    with pytest.raises(ValueError, match=r"expected uint8 images of shape \(N, 28, 28\)"):
        load_mnist(tmp_path, "train", verify=False)


def test_label_out_of_range(tmp_path):
    _fake_mnist(tmp_path)
    write_idx(tmp_path / "MNIST" / "raw" / "train-labels-idx1-ubyte.gz", np.full(6, 11, np.uint8))
    with pytest.raises(ValueError, match="labels must be in 0..9"):
        load_mnist(tmp_path, "train", verify=False)


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="Unknown dataset 'cifar'"):
        load_mnist(tmp_path, dataset="cifar")
    with pytest.raises(ValueError, match="Unknown split 'val'"):
        load_mnist(tmp_path, split="val")


def test_md5sum_matches_hashlib(tmp_path):
    import hashlib

    p = tmp_path / "b"
    data = bytes(range(256)) * 5000
    p.write_bytes(data)
    assert md5sum(p, chunk_size=1000) == hashlib.md5(data).hexdigest()


# ---------------------------------------------------------------- real files


def test_real_mnist_train(mnist_train):
    x, y = mnist_train
    assert x.shape == (60000, 28, 28) and x.dtype == torch.uint8
    assert y.shape == (60000,) and y.dtype == torch.int64
    # Known class counts of the MNIST training set (LeCun et al.).
    counts = torch.bincount(y, minlength=10).tolist()
    assert counts == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert int(x.max()) == 255 and int(x.min()) == 0


def test_real_splits_and_fashion(mnist_root):
    x, y = load_mnist(mnist_root, "test")
    assert x.shape == (10000, 28, 28) and y.shape == (10000,)
    if (mnist_root / "FashionMNIST" / "raw").is_dir():
        xf, yf = load_mnist(mnist_root, "test", dataset="fashion_mnist")
        assert torch.bincount(yf).tolist() == [1000] * 10  # Fashion-MNIST test is balanced
        assert not torch.equal(xf, x)


def test_real_uncompressed_copy(mnist_root, tmp_path):
    imgs, lbls = find_raw_files(mnist_root, "test")
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for p in (imgs, lbls):
        (raw / p.name.removesuffix(".gz")).write_bytes(gzip.decompress(p.read_bytes()))
    x, y = load_mnist(tmp_path, "test")  # md5 of decompressed files checked against the raw table
    x_ref, y_ref = load_mnist(mnist_root, "test")
    assert torch.equal(x, x_ref) and torch.equal(y, y_ref)
