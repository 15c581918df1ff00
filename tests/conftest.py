"""Test-wide settings and shared fixtures.

Hypothesis draws the same examples on every run (CI must be deterministic); ``ring_run`` is one
tiny 2-D training run shared by the CLI tests (read it, or copy it before writing into it: the
``run_copy`` fixture). ``mnist_root`` / ``fashion_mnist_root``: the folder holding the real IDX
files (``MNIST/raw``, ``FashionMNIST/raw``), found in ``$GMMGAN_DATA``, else in
``<repo>/../shared/data``; a test that asks for one is skipped where the files are absent.
Helpers that are not fixtures are in ``_helpers.py``.
"""

import os
import shutil
from pathlib import Path

import pytest
import torch
from _helpers import TINY_RING
from hypothesis import settings

from gmmgan.cli import main

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _in_a_fresh_folder(tmp_path, monkeypatch):
    """Every test runs in its own empty current folder: none may depend on (or write into) the
    folder pytest was started from, e.g. a clone where `gmmgan fit` or `gmmgan quickstart` left files."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="session")
def ring_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    assert main(["train", "--out", str(out), *TINY_RING]) == 0
    (run,) = out.iterdir()
    return run


@pytest.fixture
def run_copy(ring_run, tmp_path):
    """The shared tiny ring run, copied into this test's tmp_path (for commands that write into it)."""
    return Path(shutil.copytree(ring_run, tmp_path / ring_run.name))


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


@pytest.fixture(scope="module")
def one_torch_thread():
    """torch on one thread for a module, restored after it: tiny nets gain nothing from threads, and on
    a busy 2-core runner their spin-waits made such modules many times slower (15x for the classifier's)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def float64():
    """The whole training in float64 (nets, data, prior), for as long as the test runs.

    Why: a GAN amplifies float rounding. In float32, two single runs that differ only in torch's
    thread count differ by 1.5% after 50 DCGAN steps with BatchNorm in D (4% after 200), and with
    spectral norm by 1e-3 after 150 MLP steps; a sweep's batched kernels (and, on a GPU, cuDNN's other
    algorithms) round differently from a single run's, so in float32 no test can ask more than that.
    In float64 the rounding is 1e-16 and a few hundred steps leave sweep and single run within 1e-8.
    """
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(before)


settings.register_profile("gmmgan", derandomize=True, print_blob=True)
settings.load_profile("gmmgan")
