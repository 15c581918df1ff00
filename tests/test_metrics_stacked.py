"""Stacked-MNIST modes and KL, with a fake classifier that reads the digit off the image's brightness."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from gmmgan.metrics.stacked import classify_channels, modes_from_digits, stacked_mnist_modes


class BrightnessDigit(nn.Module):
    """Digit d <-> a uniform image of brightness d / 9; logits peak at the nearest d."""

    def forward(self, x):
        assert x.shape[1:] == (1, 28, 28) and x.dtype == torch.float32
        level = x.mean(dim=(1, 2, 3)) * 9
        return -((level[:, None] - torch.arange(10.0)) ** 2)


def _images(digits: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 3, 28, 28) whose channel c encodes digits[:, c]."""
    v = (digits.float() / 9 * 255).round().to(torch.uint8)
    return v[:, :, None, None].expand(-1, -1, 28, 28).contiguous()


def test_every_triple_equally_often_gives_1000_modes_and_zero_kl():
    d = torch.cartesian_prod(torch.arange(10), torch.arange(10), torch.arange(10)).repeat(3, 1)
    r = stacked_mnist_modes(_images(d), BrightnessDigit(), batch_size=500)
    assert r.modes == 1000 and r.n_samples == 3000
    assert r.reverse_kl == pytest.approx(0.0, abs=1e-12)
    assert r.counts == [3] * 1000


def test_ten_equal_modes_gives_log_100():
    d = torch.tensor([[k, k, 9 - k] for k in range(10)]).repeat(7, 1)
    r = stacked_mnist_modes(_images(d), BrightnessDigit())
    assert r.modes == 10
    assert r.reverse_kl == pytest.approx(math.log(100), rel=1e-12)
    assert r.counts[9] == 7 and r.counts[990] == 7  # (0, 0, 9) and (9, 9, 0): channel 0 is the hundreds digit


def test_uniform_random_digits_reach_the_floor():
    g = torch.Generator().manual_seed(0)
    d = torch.randint(0, 10, (26000, 3), generator=g)
    r = modes_from_digits(d)
    assert r.modes == 1000
    assert r.kl_floor == pytest.approx(999 / 52000)
    # KL ~ chi2_999 / (2N): std sqrt(2 * 999) / (2N) = 0.00086
    assert abs(r.reverse_kl - r.kl_floor) < 4 * math.sqrt(2 * 999) / 52000
    # The floor splits into 3 x 9 / (2N) for the channels and 972 / (2N) for their dependence.
    assert all(abs(c - 9 / 52000) < 4 * math.sqrt(2 * 9) / 52000 for c in r.channel_kl)
    assert abs(r.total_correlation - 972 / 52000) < 4 * math.sqrt(2 * 972) / 52000


def test_an_uneven_channel_shows_in_its_own_kl_not_in_the_dependence():
    g = torch.Generator().manual_seed(2)
    d = torch.randint(0, 10, (26000, 3), generator=g)
    d[:, 1] = d[:, 1] % 5  # channel 1 only ever shows 0-4: log 2 above uniform
    r = modes_from_digits(d)
    assert r.channel_kl[1] == pytest.approx(math.log(2), abs=2e-3)
    assert r.channel_kl[0] < 2e-3 and r.channel_kl[2] < 2e-3
    assert r.total_correlation < 2 * 972 / 52000


def test_copied_channels_are_all_dependence():
    d = torch.arange(10).repeat_interleave(3)[:, None].expand(-1, 3)  # (a, a, a), each digit 3 times
    r = modes_from_digits(d)
    assert r.channel_kl == pytest.approx([0.0, 0.0, 0.0], abs=1e-12)
    assert r.total_correlation == pytest.approx(math.log(100), rel=1e-12)


def test_float_images_and_batching_agree_and_mode_is_restored():
    g = torch.Generator().manual_seed(1)
    d = torch.randint(0, 10, (37, 3), generator=g)
    clf = BrightnessDigit().train()
    a = classify_channels(_images(d), clf, batch_size=5)
    b = classify_channels(_images(d).float() / 255, clf, batch_size=1024)
    assert torch.equal(a, d) and torch.equal(b, d)
    assert clf.training


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(*[st.integers(0, 9)] * 3), min_size=1, max_size=300))
def test_modes_from_digits_properties(triples):
    d = torch.tensor(triples)
    r = modes_from_digits(d)
    assert r.modes == len(set(triples))
    assert sum(r.counts) == len(triples)
    assert -1e-12 <= r.reverse_kl <= math.log(1000) + 1e-12
    assert all(-1e-12 <= c <= math.log(10) + 1e-12 for c in r.channel_kl)
    assert r.total_correlation >= 0.0
    assert sum(r.channel_kl) + r.total_correlation == pytest.approx(r.reverse_kl, abs=1e-9)
    assert modes_from_digits(d.flip(0)) == r


class WrongWidth(nn.Module):
    def forward(self, x):
        return torch.zeros(x.shape[0], 7)


@pytest.mark.parametrize(
    "images, clf, match",
    [
        (torch.zeros(4, 28, 28, dtype=torch.uint8), BrightnessDigit(), r"shape \(n_samples, 3, 28, 28\)"),
        (torch.zeros(4, 1, 28, 28, dtype=torch.uint8), BrightnessDigit(), r"shape \(n_samples, 3, 28, 28\)"),
        (torch.zeros(0, 3, 28, 28, dtype=torch.uint8), BrightnessDigit(), "images is empty"),
        (torch.zeros(2, 3, 28, 28, dtype=torch.uint8), WrongWidth(), r"logits of shape \(batch, 10\)"),
        (torch.zeros(2, 3, 28, 28, dtype=torch.uint8), lambda x: x, "must be a torch.nn.Module"),
        (torch.full((2, 3, 28, 28), -1.0), BrightnessDigit(), r"\(x \+ 1\) / 2"),
    ],
)
def test_bad_inputs(images, clf, match):
    with pytest.raises(ValueError, match=match):
        stacked_mnist_modes(images, clf)


@pytest.mark.parametrize(
    "digits, match",
    [(torch.zeros(5, 2, dtype=torch.long), r"shape \(n_samples, 3\)"), (torch.zeros(0, 3, dtype=torch.long), "empty"),
     (torch.full((2, 3), 10), "0..9"), (torch.zeros(2, 3), "0..9")],
)
def test_bad_digits(digits, match):
    with pytest.raises(ValueError, match=match):
        modes_from_digits(digits)


def test_bad_batch_size():
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        classify_channels(torch.zeros(2, 3, 28, 28, dtype=torch.uint8), BrightnessDigit(), batch_size=0)
