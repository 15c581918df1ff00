"""Test-wide settings and shared fixtures.

Hypothesis draws the same examples on every run (CI must be deterministic); ``ring_run`` is one
tiny 2-D training run shared by the CLI tests (read it, or copy it before writing into it: the
``run_copy`` fixture). Helpers that are not fixtures are in ``_helpers.py``.
"""

import shutil
from pathlib import Path

import pytest
from _helpers import TINY_RING
from hypothesis import settings

from gmmgan.cli import main


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


settings.register_profile("gmmgan", derandomize=True, print_blob=True)
settings.load_profile("gmmgan")
