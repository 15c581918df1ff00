"""The sample pictures of training go to TensorBoard too (images at each sample tick), when TensorBoard imports."""

from __future__ import annotations

import numpy as np
import pytest
from _helpers import TINY_RING

from gmmgan.gan import run_folder
from gmmgan.gan.config import load_config
from gmmgan.gan.training_loop import train


class _Writer:
    """What TrainingLog asks of torch.utils.tensorboard.SummaryWriter, recorded."""

    def __init__(self):
        self.scalars, self.images, self.closed = [], [], False

    def add_scalar(self, tag, value, step):
        self.scalars.append((tag, step))

    def add_image(self, tag, picture, step, dataformats="CHW"):
        self.images.append((tag, step, picture, dataformats))

    def close(self):
        self.closed = True


def test_sample_pictures_are_logged_as_tensorboard_images(tmp_path, monkeypatch):
    writer = _Writer()
    monkeypatch.setattr(run_folder, "_tensorboard", lambda run_dir: writer)
    train(load_config(None, TINY_RING), run_dir=tmp_path / "run", quiet=True)  # samples at 0.15 and 0.3 kimg
    assert [(tag, step) for tag, step, _, _ in writer.images] == [("samples", 150), ("samples", 300)]
    for _, _, picture, dataformats in writer.images:
        assert dataformats == "HWC" and picture.dtype == np.uint8 and picture.ndim == 3 and picture.shape[2] == 3
        assert picture.std() > 0  # a plot, not a blank
    assert ("loss_d", 100) in writer.scalars and writer.closed


def test_with_tensorboard_installed_the_events_hold_the_images(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    train(load_config(None, TINY_RING), run_dir=run, quiet=True)
    events = EventAccumulator(str(run), size_guidance={"images": 0})
    events.Reload()
    assert [e.step for e in events.Images("samples")] == [150, 300]
