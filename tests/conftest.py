"""Test-wide settings and shared fixtures.

Hypothesis draws the same examples on every run (CI must be deterministic); ``ring_run`` is one
tiny 2-D training run shared by the CLI tests (read it, or copy it before writing into it).
``mnist_root`` / ``fashion_mnist_root``: the folder holding the real IDX files (``MNIST/raw``,
``FashionMNIST/raw``), found in ``$GMMGAN_DATA``, else in ``<repo>/../shared/data``; a test that
asks for one is skipped where the files are absent.
"""

import os
from pathlib import Path

import pytest
from hypothesis import settings

from gmmgan.cli import main

REPO = Path(__file__).resolve().parents[1]

TINY_RING = [
    "data.name=ring", "data.n=2000", "prior.n_components=8", "prior.fit_samples=500", "prior.fit_max_iter=20",
    "prior.warm_start_steps=20", "nets.g_width=16", "nets.d_width=16", "nets.g_layers=2", "nets.d_layers=2",
    "schedule.batch_size=50", "schedule.total_kimg=0.3", "schedule.snapshot_kimg=0.1", "schedule.log_kimg=0.1",
    "schedule.sample_kimg=0.15", "schedule.ema_kimg=0.1", "eval_samples=300", "device=cpu",
]


@pytest.fixture(scope="session")
def ring_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    assert main(["train", "--out", str(out), *TINY_RING]) == 0
    (run,) = out.iterdir()
    return run


def _real_data_root(folder: str) -> Path:
    """The first of $GMMGAN_DATA and <repo>/../shared/data that holds ``folder``/raw; skips the test if none does."""
    for candidate in (os.environ.get("GMMGAN_DATA"), REPO.parent / "shared" / "data"):
        if candidate and (Path(candidate) / folder / "raw").is_dir():
            return Path(candidate).resolve()
    pytest.skip(f"real {folder} IDX files not found: set GMMGAN_DATA to the folder holding {folder}/raw, "
                "or put them in <repo>/../shared/data")


@pytest.fixture(scope="session")
def mnist_root() -> Path:
    """The folder holding MNIST/raw (skips the test where there is none)."""
    return _real_data_root("MNIST")


@pytest.fixture(scope="session")
def fashion_mnist_root() -> Path:
    """The folder holding FashionMNIST/raw (skips the test where there is none)."""
    return _real_data_root("FashionMNIST")


settings.register_profile("gmmgan", derandomize=True, print_blob=True)
settings.load_profile("gmmgan")
