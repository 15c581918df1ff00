"""TensorBatcher: coverage of an epoch, determinism, exact resume, errors."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gmmgan.data.batcher import TensorBatcher


def test_epoch_is_a_permutation():
    x = torch.arange(100)
    b = TensorBatcher(x, 10, generator=0)
    assert len(b) == 10
    batches = list(b)
    assert all(t.shape == (10,) for t in batches)
    assert sorted(torch.cat(batches).tolist()) == list(range(100))
    assert torch.cat(batches).tolist() != list(range(100))  # shuffled
    second = torch.cat(list(b))
    assert b.epoch == 1 and not torch.equal(second, torch.cat(batches))


def test_drop_last_and_keep_last():
    x = torch.arange(10)
    assert [t.numel() for t in TensorBatcher(x, 4, 0)] == [4, 4]
    kept = list(TensorBatcher(x, 4, 0, drop_last=False))
    assert [t.numel() for t in kept] == [4, 4, 2] and sorted(torch.cat(kept).tolist()) == list(range(10))


def test_multiple_tensors_stay_aligned_and_no_shuffle():
    x = torch.arange(12.0)[:, None].repeat(1, 3)
    y = torch.arange(12)
    for xb, yb in TensorBatcher((x, y), 5, 1):
        assert torch.equal(xb[:, 0].long(), yb)
    plain = [t.tolist() for t in TensorBatcher(y, 4, shuffle=False)]
    assert plain == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]


def test_same_seed_same_stream_generator_object_accepted():
    x = torch.arange(50)
    a = [TensorBatcher(x, 7, torch.Generator().manual_seed(5)).next() for _ in range(2)]
    assert torch.equal(a[0], a[1])


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(1, 40), bs=st.integers(1, 12), steps=st.integers(0, 30), drop=st.booleans(), seed=st.integers(0, 1000)
)
def test_resume_is_exact(n, bs, steps, drop, seed):
    if drop and bs > n:
        return
    x = torch.arange(n)
    ref = TensorBatcher(x, bs, seed, drop_last=drop)
    for _ in range(steps):
        ref.next()
    state = ref.state_dict()
    expected = [ref.next() for _ in range(15)]
    resumed = TensorBatcher(x, bs, 12345, drop_last=drop)  # different seed: the state must override it
    resumed.load_state_dict(state)
    got = [resumed.next() for _ in range(15)]
    assert all(torch.equal(e, g) for e, g in zip(expected, got, strict=True))
    assert resumed.epoch == ref.epoch


def test_resume_mid_epoch_with_iteration():
    x = torch.arange(30)
    b = TensorBatcher(x, 4, 3)
    it = iter(b)
    seen = [next(it) for _ in range(3)]
    state = b.state_dict()
    rest = list(it)
    b2 = TensorBatcher(x, 4, 0)
    b2.load_state_dict(state)
    rest2 = list(b2)
    assert len(rest) == len(rest2) == 4 and all(torch.equal(a, c) for a, c in zip(rest, rest2, strict=True))
    assert len(set(torch.cat(seen + rest).tolist())) == 28  # one epoch, 28 of 30 rows (drop_last)


def test_state_dict_survives_torch_save(tmp_path):
    b = TensorBatcher(torch.arange(20), 3, 9)
    b.next()
    torch.save(b.state_dict(), tmp_path / "s.pt")
    state = torch.load(tmp_path / "s.pt", weights_only=True)
    b2 = TensorBatcher(torch.arange(20), 3, 0)
    b2.load_state_dict(state)
    assert torch.equal(b.next(), b2.next())


def test_errors():
    x = torch.arange(10)
    with pytest.raises(ValueError, match="larger than the dataset"):
        TensorBatcher(x, 11)
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        TensorBatcher(x, 0)
    with pytest.raises(ValueError, match="share the first dimension"):
        TensorBatcher((x, torch.arange(9)), 2)
    with pytest.raises(ValueError, match="Tensor or a non-empty tuple"):
        TensorBatcher([], 2)
    with pytest.raises(ValueError, match="data is empty"):
        TensorBatcher(x[:0], 2, drop_last=False)
    state = TensorBatcher(x, 2).state_dict()
    with pytest.raises(ValueError, match="same data and batch size"):
        TensorBatcher(x, 5).load_state_dict(state)
