"""Tests of gmmgan.gan.checkpoint: atomic writes, truncated and mistaken checkpoint files."""

from __future__ import annotations

import pytest
import torch

from gmmgan.gan.checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint


def test_truncated_checkpoint_is_an_error(tmp_path):
    path = tmp_path / CHECKPOINT_NAME
    save_checkpoint(path, {"step": 1, "w": torch.arange(1000.0)})
    assert load_checkpoint(path)["step"] == 1
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(ValueError, match="is corrupt or truncated"):
        load_checkpoint(path)


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / CHECKPOINT_NAME
    save_checkpoint(path, {"step": 1})

    def crash(obj, f):
        with open(f, "wb") as fh:
            fh.write(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"step": 2})
    assert load_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == [CHECKPOINT_NAME], "no temporary file left behind"


def test_checkpoint_path_that_is_a_folder(tmp_path):
    with pytest.raises(IsADirectoryError, match=f"is a folder; give the {CHECKPOINT_NAME} file"):
        load_checkpoint(tmp_path)
