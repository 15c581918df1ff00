"""The CPU quick-start configs (configs/mnist_quick*.yaml) load and train, and the slow-CPU warning of gmmgan train."""

from pathlib import Path

import pytest
import torch

from gmmgan.cli import main
from gmmgan.gan.config import config_to_dict, load_config
from gmmgan.gan.cpu_speed import estimate_images_per_s, slow_cpu_warning
from gmmgan.gan.training_loop import train

REPO = Path(__file__).resolve().parents[1]
QUICK = REPO / "configs" / "mnist_quick.yaml"
QUICK_GAUSSIAN = REPO / "configs" / "mnist_quick_gaussian.yaml"

# A tiny MNIST subset (10 images per class) and a budget of seconds; everything else as configured.
TINY = ["data.name=mnist-limited", "data.per_class=10", "schedule.total_kimg=0.128", "schedule.snapshot_kimg=0.128",
        "schedule.sample_kimg=0", "schedule.log_kimg=0.064", "prior.warm_start_steps=3", "device=cpu"]


def test_quick_configs_are_twins_differing_only_in_the_prior():
    quick, gaussian = config_to_dict(load_config(QUICK)), config_to_dict(load_config(QUICK_GAUSSIAN))
    assert quick["prior"]["kind"] == "fitted_gmm" and gaussian["prior"]["kind"] == "gaussian"
    # The same latent size: the fitted prior's z is embed_dim + noise_dim.
    assert gaussian["prior"]["z_dim"] == quick["prior"]["embed_dim"] + quick["prior"]["noise_dim"]
    for section in ("data", "nets", "loss", "optim", "schedule"):
        assert quick[section] == gaussian[section], section
    for key in ("seed", "device", "bf16", "cpu_threads"):
        assert quick[key] == gaussian[key], key
    assert quick["data"]["name"] == "mnist" and quick["nets"]["g_width"] <= 32 and quick["nets"]["d_width"] <= 32
    assert quick["schedule"]["total_kimg"] <= 100


@pytest.mark.parametrize("config", [QUICK, QUICK_GAUSSIAN], ids=["fitted_gmm", "gaussian"])
def test_quick_config_trains_on_a_tiny_mnist_subset(config, mnist_root, tmp_path):
    cfg = load_config(config, [*TINY, f"data.root={mnist_root}"])
    threads = torch.get_num_threads()
    try:
        result = train(cfg, run_dir=tmp_path / "run", quiet=True)
    finally:
        torch.set_num_threads(threads)  # the config asks for one thread
    run = Path(result["run_dir"])
    assert result["kimg"] == pytest.approx(0.128)
    assert (run / "generator.safetensors").is_file() and (run / "final.png").is_file()
    assert result["G_ema"].z_dim == 48 and result["G_ema"].channels == 1
    assert not slow_cpu_warning(load_config(config, ["device=cpu"]), limit_s=3600)


def test_slow_cpu_warning_says_what_to_change():
    cfg = load_config(QUICK, ["device=cpu", "nets.g_width=8", "nets.d_width=8", "schedule.batch_size=8"])
    assert estimate_images_per_s(cfg) > 0
    message = slow_cpu_warning(cfg, limit_s=0)
    assert "images/s" in message and "schedule.total_kimg=60" in message
    for advice in ("nets.g_width=8 nets.d_width=8", "data.resolution", "device=cuda", "configs/mnist_quick.yaml"):
        assert advice in message
    assert slow_cpu_warning(cfg, limit_s=1e12) is None
    assert slow_cpu_warning(load_config(None, ["device=cpu"]), limit_s=0) is None  # 2-D data: never


def test_train_command_prints_the_warning_once_before_training(monkeypatch, capsys, tmp_path):
    import gmmgan.gan.cpu_speed
    import gmmgan.gan.training_loop

    monkeypatch.setattr(gmmgan.gan.cpu_speed, "slow_cpu_warning", lambda cfg: "these nets are slow here")
    calls = []
    monkeypatch.setattr(gmmgan.gan.training_loop, "train", lambda cfg, **kw: calls.append(cfg) or {})
    assert main(["train", "--config", str(QUICK), "device=cpu", "--out", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert err.count("warning:") == 1 and "these nets are slow here" in err and len(calls) == 1
    # A GPU run is not measured.
    monkeypatch.setattr(gmmgan.gan.cpu_speed, "slow_cpu_warning", lambda cfg: pytest.fail("measured a GPU run"))
    if torch.cuda.is_available():
        assert main(["train", "--config", str(QUICK), "device=cuda", "--out", str(tmp_path)]) == 0
