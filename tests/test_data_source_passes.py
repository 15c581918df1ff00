"""A re-iterable of chunks must yield the same rows on every pass EM reads it.

make_source's scan is pass 1; every later pass is checked against it (row count, and a float64
checksum of a few columns), so data that changes between passes is an error that says so, not a
silently wrong fit.
"""

import numpy as np
import pytest
import torch

from gmmgan import GaussianMixture
from gmmgan.mixture._data_source import make_source

RNG = np.random.default_rng(0)
X = np.concatenate([RNG.normal(size=(150, 3)), RNG.normal(size=(150, 3)) + 6])


class Passes:
    """Yields ``make(pass_number)`` (a list of chunks) on each pass; counts the passes."""

    def __init__(self, make):
        self.make, self.count = make, 0

    def __iter__(self):  # a generator: a pass starts (and is counted) when it is read
        self.count += 1
        yield from self.make(self.count)


def _fit(chunks, **params):
    return GaussianMixture(2, random_state=0, max_iter=5, **params).fit(chunks)


def test_the_same_chunks_every_pass_fit_as_the_array():
    gm = _fit(Passes(lambda p: [X[:100], X[100:]]))
    ref = _fit(X)
    np.testing.assert_allclose(np.sort(gm.means_, 0), np.sort(ref.means_, 0), rtol=1e-10)


def test_rechunked_or_reordered_rows_are_the_same_data():
    def make(p):
        rows = X[np.random.default_rng(p).permutation(len(X))]
        cut = 50 + 7 * p
        return [rows[:cut], rows[cut:]]

    _fit(Passes(make))  # no error


def test_more_rows_on_a_later_pass():
    source = Passes(lambda p: [X] if p == 1 else [X, X[:10]])
    with pytest.raises(ValueError, match="chunks changed between passes: pass 1 had 300 rows, pass 2 has more"):
        _fit(source)


def test_fewer_rows_on_a_later_pass():
    source = Passes(lambda p: [X] if p < 3 else [X[:250]])
    with pytest.raises(ValueError, match=r"pass 1 had 300 rows, pass 3 had 250; EM reads the data on every "
                                         r"iteration, so give a re-iterable that yields the same data each time"):
        _fit(source)


def test_other_values_on_a_later_pass():
    source = Passes(lambda p: [X] if p < 4 else [X + 1e-6])
    with pytest.raises(ValueError, match="pass 4 had the 300 rows of pass 1 but other values"):
        _fit(source)


def test_torch_chunks_are_checked_too():
    t = torch.as_tensor(X)
    source = Passes(lambda p: [t[:200], t[200:]] if p < 3 else [t[:200], t[200:] * 2])
    with pytest.raises(ValueError, match="pass 3 had the 300 rows of pass 1 but other values"):
        _fit(source)


def test_inference_reads_are_checked_too():
    gm = _fit(X)
    source = Passes(lambda p: [X] if p == 1 else [X[:5]])
    with pytest.raises(ValueError, match="pass 1 had 300 rows, pass 2 had 5"):
        gm.predict(source)


def test_each_pass_reads_the_iterable_once():
    # The first pass's checksum is taken by make_source itself; a later pass adds only its own sums.
    calls = []
    source = make_source(Passes(lambda p: calls.append(p) or [X[:100], X[100:]]), device=None, dtype=None,
                         chunk_size=64, n_components=2)
    for _ in range(3):
        assert sum(b.shape[0] for b in source.chunks()) == 300
    assert calls == [1, 2, 3, 4]
