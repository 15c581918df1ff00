"""Precision / recall / density / coverage against a brute-force transcription of Naeem et al.'s formulas."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gmmgan.metrics.prdc import knn_radii, prdc


def _prdc_bruteforce(real: np.ndarray, fake: np.ndarray, k: int):
    def radii(x):
        d = np.linalg.norm(x[:, None] - x[None], axis=-1)
        return np.sort(d, axis=1)[:, k]  # column 0 is the point itself
    rr, rf = radii(real), radii(fake)
    d = np.linalg.norm(real[:, None] - fake[None], axis=-1)  # (n_real, n_fake)
    precision = (d < rr[:, None]).any(axis=0).mean()
    recall = (d < rf[None, :]).any(axis=1).mean()
    density = (d < rr[:, None]).sum(axis=0).mean() / k
    coverage = (d.min(axis=1) < rr).mean()
    return precision, recall, density, coverage


def _gauss(n, d, seed, mean=0.0):
    return mean + torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_identical_sets_are_perfect():
    x = _gauss(400, 8, 0)
    r = prdc(x, x, 5)
    assert (r.precision, r.recall, r.coverage) == (1.0, 1.0, 1.0)
    # each real ball holds its centre and its k - 1 nearer neighbours (strict <): density exactly 1
    assert r.density == pytest.approx(1.0, abs=1e-12)


def test_far_apart_sets_score_zero():
    r = prdc(_gauss(100, 4, 1), _gauss(100, 4, 2, mean=100.0))
    assert (r.precision, r.recall, r.density, r.coverage) == (0.0, 0.0, 0.0, 0.0)


def test_collapsed_generator_is_precise_but_not_diverse():
    real = _gauss(500, 2, 3)
    fake = real[0] + 1e-3 * _gauss(500, 2, 4)  # every fake sits on one real point
    r = prdc(real, fake)
    assert r.precision == 1.0
    assert r.coverage < 0.05 and r.recall < 0.05


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(6, 60), m=st.integers(6, 60), d=st.integers(1, 5), k=st.integers(1, 5),
    block=st.integers(1, 70), seed=st.integers(0, 2**31 - 1), shift=st.floats(0, 2),
)
def test_matches_bruteforce(n, m, d, k, block, seed, shift):
    real, fake = _gauss(n, d, seed), _gauss(m, d, seed + 1, mean=shift)
    r = prdc(real, fake, k, block_size=block)
    p, rc, dn, c = _prdc_bruteforce(real.numpy(), fake.numpy(), k)
    assert r.precision == pytest.approx(p) and r.recall == pytest.approx(rc)
    assert r.density == pytest.approx(dn) and r.coverage == pytest.approx(c)
    assert (r.n_real, r.n_fake, r.nearest_k) == (n, m, k)


def test_knn_radii_blocks_agree():
    x = _gauss(123, 3, 5)
    assert torch.allclose(knn_radii(x, 5, block_size=7), knn_radii(x, 5, block_size=1000))


def test_numpy_input_and_as_dict():
    x = _gauss(50, 3, 6).numpy()
    assert prdc(x, x).as_dict()["precision"] == 1.0


@pytest.mark.parametrize(
    "real, fake, kw, match",
    [
        (torch.zeros(10, 3), torch.zeros(10, 4), {}, "3 columns but fake_features have 4"),
        (torch.zeros(5, 3), torch.zeros(10, 3), {}, "real_features has 5 rows; more than nearest_k=5"),
        (torch.zeros(10, 3), torch.zeros(3, 3), {"nearest_k": 3}, "fake_features has 3 rows"),
        (torch.zeros(10, 3), torch.zeros(10, 3), {"nearest_k": 0}, "nearest_k must be a positive int"),
        (torch.zeros(10, 3), torch.zeros(10, 3), {"block_size": 0}, "block_size must be >= 1"),
        (torch.zeros(0, 3), torch.zeros(10, 3), {}, "real_features is empty"),
        (torch.full((10, 3), float("inf")), torch.zeros(10, 3), {}, "NaN or infinite"),
    ],
)
def test_bad_inputs(real, fake, kw, match):
    with pytest.raises(ValueError, match=match):
        prdc(real, fake, **kw)
