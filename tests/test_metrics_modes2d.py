"""2-D mode coverage (HQ fraction, modes captured, reverse KL) against cases with known answers."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gmmgan.data.toy import GRID, RING
from gmmgan.metrics import kl_floor, kl_to_uniform, mode_coverage

# P(|eps| < 3 sigma) for a 2-D isotropic Gaussian: chi-square with 2 dof, 1 - exp(-9/2).
HQ_2D = 1.0 - math.exp(-4.5)


@pytest.mark.parametrize("spec, k", [(RING, 8), (GRID, 25)])
def test_perfect_sampler_covers_all_modes(spec, k):
    x, _ = spec.sample(2500, seed=1)
    r = mode_coverage(x, spec.means, spec.sigma)
    assert (r.modes_captured, r.n_modes, r.n_samples) == (k, k, 2500)
    assert abs(r.hq_fraction - HQ_2D) < 0.01
    assert sum(r.counts) == 2500 and sum(r.hq_counts) == round(r.hq_fraction * 2500)
    # one draw: KL ~ chi2_{K-1} / (2N), std sqrt(2(K-1)) / (2N); allow 4 std above the floor
    assert r.kl_floor == pytest.approx((k - 1) / 5000)
    assert 0 < r.reverse_kl < r.kl_floor + 4 * math.sqrt(2 * (k - 1)) / 5000


@pytest.mark.parametrize("spec, floor", [(RING, 0.0014), (GRID, 0.0048)])
def test_perfect_sampler_mean_kl_matches_quoted_floor(spec, floor):
    kls = [mode_coverage(spec.sample(2500, seed=s)[0], spec).reverse_kl for s in range(40)]
    k = spec.n_components
    se = math.sqrt(2 * (k - 1)) / 5000 / math.sqrt(len(kls))
    assert abs(np.mean(kls) - floor) < 4 * se + 5e-5


def test_three_of_eight_modes_equal_counts_gives_log_8_over_3():
    mu = RING.means
    x = mu[[0, 1, 2]].repeat(100, 1) + 0.001 * torch.randn(300, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    r = mode_coverage(x, mu, 0.01)
    assert r.modes_captured == 3
    assert r.hq_fraction == 1.0
    assert r.counts == [100, 100, 100, 0, 0, 0, 0, 0]
    assert r.reverse_kl == pytest.approx(math.log(8 / 3), rel=1e-12)


def test_far_away_samples_are_not_high_quality():
    x = torch.full((500, 2), 10.0)
    r = mode_coverage(x, RING)
    assert r.hq_fraction == 0.0 and r.modes_captured == 0 and sum(r.hq_counts) == 0
    # all samples share one nearest mode: KL is the maximum, log K
    assert r.reverse_kl == pytest.approx(math.log(8))


def test_threshold_is_three_sigma():
    mu = torch.zeros(1, 2, dtype=torch.float64)
    x = torch.tensor([[0.029, 0.0], [0.0, -0.0299], [0.031, 0.0], [0.0, 0.05]])
    r = mode_coverage(x, mu, sigma=0.01)
    assert r.hq_fraction == 0.5
    assert mode_coverage(x, mu, sigma=0.01, threshold=6.0).hq_fraction == 1.0


def test_spec_numpy_and_torch_inputs_agree():
    x, _ = GRID.sample(1000, seed=3)
    a = mode_coverage(x, GRID)
    b = mode_coverage(x.numpy(), GRID.means.numpy(), GRID.sigma)
    c = mode_coverage(x.tolist(), GRID.means, 0.05)
    assert a == b == c


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 200),
    k=st.integers(1, 12),
    seed=st.integers(0, 2**31 - 1),
    scale=st.floats(0.01, 5.0),
)
def test_properties(n, k, seed, scale):
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(k, 2, generator=g, dtype=torch.float64)
    x = scale * torch.randn(n, 2, generator=g, dtype=torch.float64)
    r = mode_coverage(x, mu, 0.1)
    assert 0 <= r.modes_captured <= min(n, k)
    assert 0.0 <= r.hq_fraction <= 1.0
    assert -1e-12 <= r.reverse_kl <= math.log(k) + 1e-12
    assert sum(r.counts) == n and all(h <= c for h, c in zip(r.hq_counts, r.counts))
    perm = torch.randperm(n, generator=g)
    assert mode_coverage(x[perm], mu, 0.1) == r  # order of samples does not matter


def test_kl_to_uniform_and_floor():
    assert kl_to_uniform(torch.tensor([5, 5, 5, 5])) == 0.0
    assert kl_to_uniform(torch.tensor([7, 0, 0, 0])) == pytest.approx(math.log(4))
    assert kl_floor(26000, 1000) == pytest.approx(999 / 52000)
    with pytest.raises(ValueError, match="histogram is empty"):
        kl_to_uniform(torch.zeros(3))
    with pytest.raises(ValueError, match="must be >= 1"):
        kl_floor(0, 8)


@pytest.mark.parametrize(
    "samples, means, sigma, match",
    [
        (torch.zeros(10), RING.means, 0.01, r"samples must be 2-D"),
        (torch.zeros(0, 2), RING.means, 0.01, r"samples is empty"),
        (torch.zeros(10, 3), RING.means, 0.01, r"samples have 3 features but means have 2"),
        (torch.full((4, 2), float("nan")), RING.means, 0.01, r"NaN or infinite"),
        (torch.zeros(10, 2), RING.means, 0.0, r"sigma must be > 0"),
        (torch.zeros(10, 2), RING.means, None, r"sigma is required"),
        (torch.zeros(10, 2), torch.zeros(0, 2), 0.01, r"means is empty"),
        (torch.zeros(10, 2), "ring", 0.01, r"means must be a numeric array"),
    ],
)
def test_bad_inputs(samples, means, sigma, match):
    with pytest.raises(ValueError, match=match):
        mode_coverage(samples, means, sigma)


def test_bad_threshold():
    with pytest.raises(ValueError, match="threshold must be > 0"):
        mode_coverage(torch.zeros(3, 2), RING, threshold=0.0)
