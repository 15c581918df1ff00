"""The long set-up phases of training show progress bars: the prior's GMM fit, the warm start, reading an image folder.

On the console train() was given, like the training bar; nothing with quiet=True or on ranks other than 0.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from _helpers import TINY_RING
from rich.console import Console

from gmmgan.data import load_image_folder
from gmmgan.gan import training_loop as train_mod
from gmmgan.gan.config import load_config
from gmmgan.gan.training_loop import train


def tiny(*extra):
    return load_config(None, [*TINY_RING, "schedule.sample_kimg=0", "schedule.total_kimg=0.05", *extra])


def captured() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=False, width=200, highlight=False), out


def bar_line(text: str, name: str) -> str:
    (line,) = [line for line in text.splitlines() if line.startswith(name + " ")]
    return line


def test_the_prior_fit_and_the_warm_start_show_progress(tmp_path):
    console, out = captured()
    train(tiny("prior.fit_n_init=2"), run_dir=tmp_path / "run", console=console)
    text = out.getvalue()
    fit = bar_line(text, "prior fit")
    assert "40/40 EM iterations" in fit and "init 2, lower bound " in fit  # fit_max_iter 20, 2 initialisations
    assert "20/20 steps" in bar_line(text, "warm start") and "MSE" not in bar_line(text, "warm start")
    # The bars come before the summary lines of their phase.
    assert text.index("prior fit ") < text.index("prior: FittedGMMPrior fitted")
    assert text.index("warm start ") < text.index("warm start: 20 steps")


def test_a_long_warm_start_shows_its_mse(tmp_path):
    console, out = captured()
    train(tiny("prior.warm_start_steps=200"), run_dir=tmp_path / "run", console=console)
    assert "200/200 steps MSE " in bar_line(out.getvalue(), "warm start")


def test_the_prior_fit_with_k_chosen_by_bic_shows_a_bar_without_a_count(tmp_path):
    console, out = captured()
    train(tiny("prior.n_components=auto"), run_dir=tmp_path / "run", console=console)
    line = bar_line(out.getvalue(), "prior fit")
    assert "(K chosen by BIC)" in line and "/" not in line


def test_quiet_and_other_ranks_show_nothing(tmp_path, monkeypatch):
    console, out = captured()
    train(tiny(), run_dir=tmp_path / "quiet", console=console, quiet=True)
    assert out.getvalue() == ""
    monkeypatch.setattr(train_mod.distributed, "is_main", lambda: False)  # as rank 1 of a torchrun job
    train(tiny(), run_dir=tmp_path / "rank1", console=console)
    assert out.getvalue() == ""


@pytest.fixture
def image_folder(tmp_path):
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(12):
        Image.fromarray(rng.integers(0, 256, (10, 10, 3), dtype=np.uint8)).save(folder / f"{i:02d}.png")
    return folder


def test_reading_an_image_folder_reports_each_image(image_folder):
    seen = []
    x = load_image_folder(image_folder, 8, progress=lambda done, total: seen.append((done, total)))
    assert x.shape == (12, 3, 8, 8)
    assert seen == [(i, 12) for i in range(13)]


def test_an_image_folder_run_shows_the_loading_bar(image_folder, tmp_path):
    console, out = captured()
    cfg = load_config(None, ["data.name=folder", f"data.root={image_folder}", "data.resolution=8",
                             "prior.n_components=2", "prior.embed_dim=4", "prior.warm_start_steps=2",
                             "nets.g_width=4", "nets.d_width=4", "schedule.batch_size=4", "schedule.total_kimg=0.008",
                             "schedule.snapshot_kimg=0.004", "schedule.sample_kimg=0", "device=cpu"])
    train(cfg, run_dir=tmp_path / "run", console=console)
    assert "12/12 images" in bar_line(out.getvalue(), "loading images")
    console, out = captured()
    train(load_config(None, TINY_RING), run_dir=tmp_path / "ring", console=console)
    assert "loading images" not in out.getvalue()  # built-in data: no bar
