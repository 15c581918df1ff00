"""Image-folder loader: resize/crop, grayscale/RGB, clear errors."""

import numpy as np
import pytest
import torch

PIL = pytest.importorskip("PIL.Image", reason="Pillow is needed for image folders")

from gmmgan.data.folder import load_image_folder  # noqa: E402


def _save(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    PIL.fromarray(arr).save(path)


def test_load_resize_crop_and_order(tmp_path):
    # A 20x10 (w x h) image: left half red, right half blue -> after resize to 8 (shorter side)
    # and center crop, the middle column boundary stays at the center.
    a = np.zeros((10, 20, 3), np.uint8)
    a[:, :10, 0] = 255
    a[:, 10:, 2] = 255
    _save(tmp_path / "b.png", a)
    _save(tmp_path / "sub" / "a.jpg", np.full((8, 8, 3), 100, np.uint8))
    (tmp_path / "notes.txt").write_text("not an image")
    x = load_image_folder(tmp_path, 8)
    assert x.shape == (2, 3, 8, 8) and x.dtype == torch.uint8
    # Sorted by relative path: "b.png" < "sub/a.jpg".
    assert int(x[0, 0, :, 0].min()) > 200 and int(x[0, 2, :, -1].min()) > 200
    assert abs(int(x[1].float().mean()) - 100) <= 2
    assert load_image_folder(tmp_path, 8, recursive=False).shape == (1, 3, 8, 8)
    assert load_image_folder(tmp_path, 8, max_images=1).shape == (1, 3, 8, 8)


def test_grayscale(tmp_path):
    _save(tmp_path / "g.png", np.full((30, 30, 3), 200, np.uint8))
    x = load_image_folder(tmp_path, 28, channels=1)
    assert x.shape == (1, 1, 28, 28)
    assert int(x.min()) == int(x.max()) == 200


def test_missing_and_empty_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_image_folder(tmp_path / "nope", 28)
    f = tmp_path / "file.png"
    f.write_bytes(b"x")
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        load_image_folder(f, 28)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="No image files .* found in"):
        load_image_folder(tmp_path / "empty", 28)


def test_corrupt_image_and_bad_args(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"definitely not a png")
    with pytest.raises(ValueError, match=r"Cannot read image .*bad\.png"):
        load_image_folder(tmp_path, 28)
    with pytest.raises(ValueError, match="channels must be 1"):
        load_image_folder(tmp_path, 28, channels=4)
    with pytest.raises(ValueError, match="resolution must be a positive int"):
        load_image_folder(tmp_path, 0)
