"""gmmgan._files: atomic writes, and the files gmmgan saves get the umask's mode (not mkstemp's 0600)."""

import os
import stat
from pathlib import Path

import numpy as np
import pytest

from gmmgan._files import atomic_write
from gmmgan.metrics import ClassifierConfig, FeatureClassifier
from gmmgan.metrics.classifier import save_classifier
from gmmgan.mixture import GaussianMixture


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    yield 0o640  # what open() gives under this umask
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_saved_files_get_the_umask_mode_not_0600(tmp_path, umask_027):
    assert _mode(atomic_write(tmp_path / "a.bin", lambda tmp: Path(tmp).write_bytes(b"x"))) == umask_027
    X = np.random.default_rng(0).normal(size=(60, 2))
    model = GaussianMixture(n_components=2, random_state=0).fit(X)
    assert _mode(model.save(tmp_path / "m.safetensors")) == umask_027
    save_classifier(FeatureClassifier(ClassifierConfig(width=2, feature_dim=4)), "mnist", tmp_path / "c")
    assert _mode(tmp_path / "c" / "mnist.safetensors") == _mode(tmp_path / "c" / "mnist.json") == umask_027
    assert not [p for p in tmp_path.rglob("*.tmp")]  # no temporary files left behind
