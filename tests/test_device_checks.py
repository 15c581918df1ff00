"""One device rule (gmmgan._device) for every command's --device and for the mixture's device=.

PyTorch knows devices gmmgan does not compute on (mps, xpu, meta): each is one clean error line,
never a traceback from inside torch.
"""

import re

import numpy as np
import pytest
import torch

from gmmgan import GaussianMixture, _device
from gmmgan.cli import main

UNSUPPORTED = ["mps", "xpu", "meta"]


def _cli(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def _one_clean_line(rc, err):
    assert rc == 2, err
    assert err.startswith("error: ") and err.strip().count("\n") == 0 and "Traceback" not in err, err


@pytest.fixture
def npy(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.random.default_rng(0).normal(size=(40, 2)))
    return path


@pytest.mark.parametrize("device", UNSUPPORTED)
def test_fit_refuses_devices_gmmgan_does_not_compute_on(device, npy, tmp_path, capsys):
    model = tmp_path / "m.safetensors"
    rc, _, err = _cli(capsys, "fit", npy, "-k", 2, "--device", device, "-o", model, "--no-plot")
    _one_clean_line(rc, err)
    assert f"unsupported --device '{device}'" in err and "auto, cpu, cuda or cuda:N" in err
    assert not model.exists()


@pytest.mark.parametrize("command", ["sample", "eval"])
@pytest.mark.parametrize("device", UNSUPPORTED)
def test_sample_and_eval_refuse_them_too(command, device, ring_run, capsys):
    rc, _, err = _cli(capsys, command, ring_run, "--device", device)
    _one_clean_line(rc, err)
    assert f"unsupported device '{device}'" in err and "auto, cpu, cuda or cuda:N" in err


@pytest.mark.parametrize("device", UNSUPPORTED)
def test_train_refuses_them(device, tmp_path, capsys):
    rc, _, err = _cli(capsys, "train", "--out", tmp_path, "data.name=ring", f"device={device}")
    _one_clean_line(rc, err)
    assert device in err and "cuda:N" in err


@pytest.mark.parametrize("device", [*UNSUPPORTED, torch.device("meta")])
def test_mixture_refuses_them(device):
    with pytest.raises(ValueError, match="device must be 'cpu', 'cuda', 'cuda:N', 'auto'.*does not compute on"):
        GaussianMixture(2, device=device).fit(np.random.default_rng(0).normal(size=(20, 2)))


def test_mixture_accepts_auto_and_cpu_devices():
    X = np.random.default_rng(0).normal(size=(30, 2))
    for device in ("auto", "cpu", torch.device("cpu"), torch.device("cpu", 0)):
        gm = GaussianMixture(2, device=device, random_state=0).fit(X)
        assert gm.predict(X).shape == (30,)


def test_every_device_setting_goes_through_the_one_rule(monkeypatch, npy, ring_run, tmp_path, capsys):
    # A rule that refuses the CPU: every command, and the mixture, must then refuse --device cpu.
    monkeypatch.setattr(_device, "_VALID", re.compile(r"auto|cuda(:\d+)?"))
    rc, _, err = _cli(capsys, "fit", npy, "-k", 2, "--device", "cpu", "-o", tmp_path / "m.safetensors", "--no-plot")
    _one_clean_line(rc, err)
    assert "--device 'cpu'" in err
    for command in ("sample", "eval"):
        rc, _, err = _cli(capsys, command, ring_run, "--device", "cpu")
        _one_clean_line(rc, err)
        assert "device 'cpu'" in err
    with pytest.raises(ValueError, match="got 'cpu'"):
        GaussianMixture(2, device="cpu").fit(np.zeros((4, 2)))
    with pytest.raises(ValueError, match="--device 'cpu'"):
        _device.resolve_device("cpu")
