"""A fit too large for memory is a MemoryError before any work, naming the estimate, what is there and what to try.

The probe of available memory is monkeypatched to a small number: no test allocates much.
"""

import numpy as np
import pytest
import torch

from gmmgan import GaussianMixture
from gmmgan.cli import main
from gmmgan.mixture import _base, _memory
from gmmgan.mixture._memory import available_memory, check_fit_memory, fit_memory, format_bytes

X = np.random.default_rng(0).normal(size=(2000, 50))


def _cli(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture
def little_memory(monkeypatch):
    """50 MB 'available', and no data pass allowed: the check must come first."""
    monkeypatch.delenv(_memory.SKIP_ENV, raising=False)
    monkeypatch.setattr(_memory, "available_memory", lambda device: 50_000_000)

    def no_pass(*args, **kwargs):
        raise AssertionError("the data were read before the memory check")

    monkeypatch.setattr(_base, "summarize", no_pass)
    return monkeypatch


# ------------------------------------------------------------------------------- the estimate
def test_the_estimate_grows_as_the_fit_does():
    full = fit_memory(20_000, 100, 20_000, "full", 256, 8)
    assert full.parameters >= 7 * 8 * 20_000 * 100 * 100  # the K x D x D arrays, several float64 copies
    assert full.block >= 256 * 20_000 * 100 * 8  # the (chunk, K, D) E-step block
    assert 10e9 < full.total < 40e9
    diag = fit_memory(20_000, 100, 20_000, "diag", 256, 8)
    assert diag.total < full.total / 10
    assert fit_memory(20_000, 100, 20_000, "full", 64, 8).block < full.block
    assert fit_memory(20_000, 100, 20_000, "full", 256, 4).block < full.block
    assert fit_memory(20_000, 100, 10, "tied", 256, 8).parameters < fit_memory(20_000, 100, 10, "full", 256, 8).parameters


def test_format_bytes():
    assert [format_bytes(x) for x in (512, 3.2e6, 5.1e8, 1.68e10)] == ["0.5 kB", "3.2 MB", "510 MB", "16.8 GB"]


def test_available_memory_on_this_machine():
    have = available_memory(torch.device("cpu"))
    assert have is None or 0 <= have <= _memory._physical_memory() + (1 << 30)
    assert available_memory(torch.device("meta")) is None


def test_an_address_space_limit_counts(monkeypatch):
    import resource

    monkeypatch.setattr(resource, "getrlimit", lambda which: (1 << 62, resource.RLIM_INFINITY))
    assert _memory._address_space_available() > 0
    monkeypatch.setattr(resource, "getrlimit", lambda which: (1 << 20, resource.RLIM_INFINITY))  # 1 MB: spent
    assert _memory._address_space_available() == 0
    assert available_memory(torch.device("cpu")) == 0


# -------------------------------------------------------------------------------- the library
def test_a_fit_too_large_is_a_memory_error_before_any_work(little_memory):
    with pytest.raises(MemoryError) as info:
        GaussianMixture(200).fit(X)
    message = str(info.value)
    for piece in ("Not enough memory for a 200-component full-covariance fit of 2,000 x 50 data",
                  "needs about", "but only 50.0 MB is available in memory", "n_components=",
                  "covariance_type='diag'", "GMMGAN_NO_MEMORY_CHECK=1"):
        assert piece in message, message
    assert "\n" not in message


def test_the_advice_names_a_smaller_chunk_and_float32_where_they_fit(little_memory):
    with pytest.raises(MemoryError, match=r"a smaller chunk size \(chunk_size=\d+\)"):
        GaussianMixture(5, covariance_type="diag", chunk_size=2000).fit(np.zeros((2000, 4000)))
    with pytest.raises(MemoryError, match=r"dtype='float32' \(about"):
        check_fit_memory(n_samples=1000, n_features=10, n_components=1000, covariance_type="diag", chunk_size=1000,
                         itemsize=8, device=torch.device("cpu"))


def test_n_components_auto_is_checked_too(little_memory):
    with pytest.raises(MemoryError, match=r"fitting K = 1\.\.20 together .*fewer or smaller candidates"):
        GaussianMixture("auto").fit(X)


@pytest.mark.filterwarnings("ignore::UserWarning")  # 2 iterations do not converge, on purpose
def test_a_fit_that_fits_is_not_refused(little_memory):
    little_memory.undo()  # summarize back; available memory stays small
    little_memory.setattr(_memory, "available_memory", lambda device: 50_000_000)
    GaussianMixture(2, covariance_type="diag", max_iter=2).fit(X[:200])


def test_the_check_can_be_skipped(little_memory):
    little_memory.setenv(_memory.SKIP_ENV, "1")
    with pytest.raises(AssertionError, match="read before the memory check"):  # it went on to read the data
        GaussianMixture(200).fit(X)


# ---------------------------------------------------------------------------- the command line
def test_gmmgan_fit_too_large_is_one_line_in_its_own_options(little_memory, tmp_path, capsys):
    data = tmp_path / "x.npy"
    np.save(data, X)
    model = tmp_path / "m.safetensors"
    rc, _, err = _cli(capsys, "fit", data, "-k", 200, "-o", model, "--no-plot")
    assert rc == 2 and err.startswith("error: Not enough memory") and err.strip().count("\n") == 0, err
    assert "-k " in err and "--covariance-type diag" in err and "n_components=" not in err
    assert "(try a smaller --chunk-size" not in err  # no second, generic hint
    assert not model.exists()


@pytest.mark.parametrize("error", [
    RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory: you tried "
                 "to allocate 1600000000 bytes. Error code 12 (Cannot allocate memory)"),
    torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB.\nSee documentation"),
    MemoryError("Unable to allocate 1.49 GiB for an array with shape (20000, 10000) and data type float64"),
])
def test_an_allocator_error_during_the_fit_is_one_line(error, monkeypatch, tmp_path, capsys):
    def fail(self, X, y=None):
        raise error

    monkeypatch.setattr(GaussianMixture, "fit", fail)
    data = tmp_path / "x.npy"
    np.save(data, X)
    rc, _, err = _cli(capsys, "fit", data, "-k", 3, "-o", tmp_path / "m.safetensors", "--no-plot")
    assert rc == 2 and err.startswith("error: ran out of memory during the fit") and err.strip().count("\n") == 0, err
    assert "Traceback" not in err and "--chunk-size" in err and "--dtype float32" in err
