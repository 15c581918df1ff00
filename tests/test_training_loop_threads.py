"""train() leaves torch's thread count as it found it (``cpu_threads`` sets it only while training)."""

from __future__ import annotations

import pytest
import torch
from _helpers import TINY_RING

from gmmgan.gan import train_step
from gmmgan.gan.config import load_config
from gmmgan.gan.training_loop import TrainingInterrupted, train


def tiny(*extra):
    return load_config(None, [*TINY_RING, "schedule.sample_kimg=0", "schedule.total_kimg=0.05", *extra])


@pytest.fixture
def three_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    yield 3
    torch.set_num_threads(before)


def test_the_thread_count_is_restored_after_a_run(tmp_path, monkeypatch, three_threads):
    seen = []
    real_call = train_step.TrainStep.__call__

    def step(self, *args):
        seen.append(torch.get_num_threads())
        return real_call(self, *args)

    monkeypatch.setattr(train_step.TrainStep, "__call__", step)
    train(tiny("cpu_threads=1"), run_dir=tmp_path / "run", quiet=True)
    assert set(seen) == {1}, "cpu_threads applies during training"
    assert torch.get_num_threads() == three_threads


@pytest.mark.parametrize("how", ["error", "ctrl-c", "bad config"])
def test_the_thread_count_is_restored_on_every_exit_path(tmp_path, monkeypatch, three_threads, how):
    def fail(*args, **kwargs):
        raise KeyboardInterrupt if how == "ctrl-c" else RuntimeError("boom")

    if how == "bad config":
        with pytest.raises(ValueError, match="multiple of nets.pack"):
            train(tiny("cpu_threads=1", "nets.pack=3"), run_dir=tmp_path / "run", quiet=True)
    else:
        monkeypatch.setattr(train_step.TrainStep, "__call__", fail)
        with pytest.raises(TrainingInterrupted if how == "ctrl-c" else RuntimeError):
            train(tiny("cpu_threads=1"), run_dir=tmp_path / "run", quiet=True)
    assert torch.get_num_threads() == three_threads


def test_cpu_threads_0_leaves_the_count_alone(tmp_path, three_threads):
    train(tiny("cpu_threads=0"), run_dir=tmp_path / "run", quiet=True)
    assert torch.get_num_threads() == three_threads
