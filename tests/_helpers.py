"""Helpers shared by several test files (plain functions and constants; the fixtures are in conftest.py).

Test files import these (``from _helpers import cli``) instead of importing from each other.
"""

from __future__ import annotations

import re
import socket
import struct
import warnings

import numpy as np

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# The tiny 2-D run of conftest's session fixture ``ring_run``: 6 steps of 50, a fitted 8-component prior.
TINY_RING = [
    "data.name=ring", "data.n=2000", "prior.n_components=8", "prior.fit_samples=500", "prior.fit_max_iter=20",
    "prior.warm_start_steps=20", "nets.g_width=16", "nets.d_width=16", "nets.g_layers=2", "nets.d_layers=2",
    "schedule.batch_size=50", "schedule.total_kimg=0.3", "schedule.snapshot_kimg=0.1", "schedule.log_kimg=0.1",
    "schedule.sample_kimg=0.15", "schedule.ema_kimg=0.1", "eval_samples=300", "device=cpu",
]

# A few hundred images of the ring for training-loop tests: 8 steps of 50, snapshots every 100 images.
TINY_TRAIN = [
    "data.name=ring", "data.n=2000", "prior.n_components=8", "prior.fit_samples=500", "prior.fit_max_iter=20",
    "prior.warm_start_steps=5", "nets.g_width=16", "nets.d_width=16", "nets.g_layers=2", "nets.d_layers=2",
    "schedule.batch_size=50", "schedule.total_kimg=0.4", "schedule.snapshot_kimg=0.1", "schedule.log_kimg=0.1",
    "schedule.sample_kimg=0", "schedule.ema_kimg=0.1", "eval_samples=200", "device=cpu",
]


def tiny_train_config(*overrides):
    """The config of TINY_TRAIN plus ``overrides`` (KEY=VALUE strings)."""
    from gmmgan.gan.config import load_config

    return load_config(None, TINY_TRAIN + list(overrides))


# ----------------------------------------------------------------------------- command line
def cli(capsys, *argv):
    """``gmmgan ARGV`` in-process: (exit status, stdout, stderr)."""
    from gmmgan.cli import main

    rc = main([str(a) for a in argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def assert_clean_error(rc, err, *pieces):
    """A usage error as the command line reports it: exit status 2, one ``error:`` line, no traceback."""
    assert rc == 2, err
    assert err.startswith("error:") and "Traceback" not in err, err
    for piece in pieces:
        assert piece in err, err


def rewrite_snapshot_metadata(path, text):
    """Replace the run-config metadata of a generator snapshot (safetensors) with ``text``."""
    from safetensors.torch import load_file, safe_open, save_file

    with safe_open(str(path), framework="pt") as f:
        header = f.metadata()
    save_file(load_file(str(path)), str(path), metadata={**header, "metadata": text})


def png_size(path) -> tuple[int, int]:
    """(width, height) of a PNG file, read from its IHDR chunk."""
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, "not a PNG file"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


# ----------------------------------------------------------------------------- mixtures
def blob_data(seed=0, n_per=40, d=3, k=3):
    """k Gaussian blobs of n_per points in d dimensions, centres drawn with scale 4."""
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.normal(size=(n_per, d)) + c for c in rng.normal(scale=4, size=(k, d))])


def rel_error(a, b):
    """max |a - b| / max |b| (arrays of the same shape)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape
    return np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300)


def fit_quietly(est, X):
    """``est.fit(X)`` with its warnings (convergence and the like) silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return est.fit(X)


def without_times(text):
    """Verbose fit output with its times masked (and -0.00000 read as 0.00000), to compare two libraries'."""
    return re.sub(r"-(0\.0+)\b", r"\1", re.sub(r"time lapse [0-9.]+s", "time lapse Ts", text))


# The tiny two-rank ring run of the distributed tests: 20 steps of 64 images, a checkpoint every 10.
TINY_DDP = ["data.name=ring", "data.n=2000", "prior.kind=gaussian", "nets.g_width=32", "nets.d_width=32",
            "nets.g_layers=2", "nets.d_layers=2", "schedule.batch_size=64", "schedule.total_kimg=1.28",
            "schedule.snapshot_kimg=0.64", "schedule.log_kimg=0.32", "schedule.sample_kimg=0", "device=cpu",
            "eval_samples=500", "seed=3"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for a process group's rendezvous)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def assert_same_state(a: dict, b: dict) -> None:
    """Two training results (train()'s dicts of modules) hold bitwise equal G, D, G_ema and prior states."""
    import torch

    for key in ("G", "D", "G_ema", "prior"):
        sa, sb = a[key].state_dict(), b[key].state_dict()
        assert sa.keys() == sb.keys()
        for name in sa:
            assert torch.equal(sa[name], sb[name]), f"{key}.{name} differs"


def three_kinds(n_per=60, seed=0, shape=(1, 8, 8)):
    """Images of three kinds (a bright left half, top half or centre square), a little noise, in [-1, 1]; and their labels."""
    import torch

    g = torch.Generator().manual_seed(seed)
    x = -torch.ones(3 * n_per, *shape)
    h, w = shape[1:]
    x[:n_per, :, :, : w // 2] = 1
    x[n_per:2 * n_per, :, : h // 2, :] = 1
    x[2 * n_per:, :, h // 4: 3 * h // 4, w // 4: 3 * w // 4] = 1
    labels = torch.arange(3).repeat_interleave(n_per)
    return (x + 0.2 * torch.randn(x.shape, generator=g)).clamp(-1, 1), labels


def train_interrupted_at_step(monkeypatch, n, run):
    """``run()`` with Ctrl-C raised in its n-th training step; it must end in TrainingInterrupted (steps restored after)."""
    import pytest

    from gmmgan.gan import train_step
    from gmmgan.gan.training_loop import TrainingInterrupted

    real_call, calls = train_step.TrainStep.__call__, {"n": 0}

    def step(self, *args):
        calls["n"] += 1
        if calls["n"] == n:
            raise KeyboardInterrupt
        return real_call(self, *args)

    monkeypatch.setattr(train_step.TrainStep, "__call__", step)
    try:
        with pytest.raises(TrainingInterrupted):
            run()
    finally:
        monkeypatch.setattr(train_step.TrainStep, "__call__", real_call)


def assert_channels_last_matches_nchw(G, D, z, *, rtol: float, atol: float, grad_rtol: float) -> None:
    """D(G(z)) and every gradient of G and D agree between the nets and NHWC copies of them.

    Tolerances: ``rtol`` and ``atol`` on the logits, ``grad_rtol`` on each gradient, with an
    absolute slack of ``grad_rtol / 10`` of that gradient's largest entry (its tiny entries round freely).
    """
    import copy

    import torch

    nhwc = [copy.deepcopy(m).to(memory_format=torch.channels_last) for m in (G, D)]
    assert any(p.ndim == 4 and p.is_contiguous(memory_format=torch.channels_last) for p in nhwc[0].parameters())
    outs = []
    for g, d in ((G, D), nhwc):
        logits = d(g(z))
        logits.square().sum().backward()
        outs.append((logits.detach(), [p.grad.clone() for p in [*g.parameters(), *d.parameters()]]))
    torch.testing.assert_close(outs[1][0], outs[0][0], rtol=rtol, atol=atol)
    for a, b in zip(outs[1][1], outs[0][1]):
        torch.testing.assert_close(a, b, rtol=grad_rtol, atol=grad_rtol / 10 * float(b.abs().max()))
