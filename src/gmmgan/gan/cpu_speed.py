"""How fast a config's nets train on this CPU, measured before training, and a warning when it is too slow.

An image config made for a GPU (DCGAN width 64, 1,000+ kimg) takes hours on a laptop's CPU, and
the progress bar says so only once training is under way. :func:`slow_cpu_warning` times a few
training-like steps of the config's own G and D (G forward, D on a real and a fake batch, both
backward passes) on random data, before anything is loaded, and returns a message naming what to
change when the whole run would take longer than ``limit_s``. ``gmmgan train`` prints it once.
"""

from __future__ import annotations

import math
import time

import torch

from gmmgan.data.toy import toy_spec
from gmmgan.gan.config import TrainConfig

__all__ = ["estimate_images_per_s", "slow_cpu_warning"]

SLOW_LIMIT_S = 30 * 60  # warn when the training alone would take longer than this


def _image_shape(cfg: TrainConfig) -> tuple[int, int, int]:
    """(C, R, R) the config's data will have; a folder of unknown channels counts as RGB (the upper bound)."""
    d = cfg.data
    channels = 3 if d.name in ("stacked-mnist", "folder") and d.channels != 1 else 1
    return channels, d.resolution or 28, d.resolution or 28


def _z_dim(cfg: TrainConfig) -> int:
    p = cfg.prior
    return p.embed_dim + p.noise_dim if p.kind == "fitted_gmm" else p.z_dim


def estimate_images_per_s(cfg: TrainConfig, steps: int = 2) -> float:
    """Real images per second of the config's G and D on the CPU: the fastest of ``steps`` timed steps."""
    from gmmgan.gan.networks import build_networks

    shape = _image_shape(cfg)
    batch = cfg.schedule.batch_size
    with torch.random.fork_rng(devices=[]):  # training seeds its own RNGs; leave the caller's alone anyway
        torch.manual_seed(0)
        G, D = build_networks(cfg, shape, _z_dim(cfg))
        real, z = torch.rand(batch, *shape) * 2 - 1, torch.randn(batch, _z_dim(cfg))

        def step() -> None:
            fake = G(z)
            (D(real).mean() - D(fake.detach()).mean()).backward()
            D(fake).mean().backward()

        step()  # the first call allocates and picks kernels
        best = math.inf
        for _ in range(steps):
            t0 = time.perf_counter()
            step()
            best = min(best, time.perf_counter() - t0)
    return batch / max(best, 1e-9)


def _duration(seconds: float) -> str:
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} minutes"
    return f"{seconds / 3600:.1f} hours"


def slow_cpu_warning(cfg: TrainConfig, limit_s: float = SLOW_LIMIT_S) -> str | None:
    """A message saying what to change if ``cfg`` would train longer than ``limit_s`` on this CPU, else None.

    Only image data on the CPU are measured (2-D data train at thousands of points per second). The
    estimate covers the adversarial steps (``schedule.total_kimg``), not data loading, the prior's fit or
    the warm start; the first steps of a run are often slower, a busy machine slower still.
    """
    if toy_spec(cfg.data.name) is not None:
        return None
    if cfg.cpu_threads:
        torch.set_num_threads(cfg.cpu_threads)  # as training will
    rate = estimate_images_per_s(cfg)
    seconds = cfg.schedule.total_kimg * 1000 / rate
    if seconds <= limit_s:
        return None
    n = cfg.nets
    widths = f"nets.g_width={n.g_width or 64} nets.d_width={n.d_width or 64}"
    return (
        f"on this CPU these nets train at about {rate:,.0f} images/s (timed on {cfg.schedule.batch_size}-image "
        f"steps before training), so schedule.total_kimg={cfg.schedule.total_kimg:g} would take about "
        f"{_duration(seconds)}. To train faster: smaller nets ({widths} now; halving both makes each step "
        f"about 4x cheaper), a lower data.resolution, a shorter schedule.total_kimg, or a GPU (device=cuda). "
        f"configs/mnist_quick.yaml trains recognisable MNIST digits on a 2-core CPU in a few minutes."
    )
