"""The feature network of an image folder: an autoencoder trained on that folder's own images.

A folder of your images has no labels, so no classifier can be trained on it, and gmmgan ships no
pretrained network (no Inception-v3: it would be a download and a poor fit for small images). For
FID/KID/PRDC on a folder run, ``gmmgan eval`` therefore trains a small convolutional autoencoder on
the folder's images (at the run's resolution and channels) and uses its encoder's output
(``feature_dim`` = 128 numbers per image) as the feature space. What that means for the numbers:

- they measure how close generated images are to the folder's images in what an autoencoder must
  keep to reconstruct them (layout, shapes, colours, contrast), not in semantic categories as a
  classifier's features (or Inception's) do;
- they compare only with numbers measured by the same encoder: the same folder, resolution and
  channels (the cache key is the sha256 of the images and of the settings; the weights' sha256 is
  in ``eval.json``), never with published FIDs or the MNIST classifier's;
- the real-vs-real reference beside them (half of the folder against the other half) says what
  "as good as real" looks like in this feature space.

The encoder is trained once per (images, settings) and cached beside the classifiers::

    <cache_dir>/folder-<key>.safetensors   weights
    <cache_dir>/folder-<key>.json          images, resolution, channels, config, reconstruction MSE, sha256
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from gmmgan.nets.dcgan import DCGANGenerator

__all__ = ["EncoderConfig", "FolderEncoder", "folder_key", "load_or_train_folder_encoder", "train_folder_encoder"]


@dataclass
class EncoderConfig:
    """Architecture and training budget of :class:`FolderEncoder` (all saved in the JSON).

    The budget is ``min(max_steps, max(min_steps, epochs x images / batch_size))`` Adam steps:
    2,000 steps of 64 images (128,000 images, about a minute at 28 px on a 2-core CPU) for a large
    folder, fewer for a small one.
    """

    width: int = 32  # channels of the first conv layer; doubled in each of the next two
    feature_dim: int = 128
    batch_size: int = 64
    lr: float = 1e-3
    epochs: int = 20
    min_steps: int = 200
    max_steps: int = 2000
    seed: int = 0

    def steps(self, n_images: int) -> int:
        batch = min(self.batch_size, n_images)
        return min(self.max_steps, max(self.min_steps, math.ceil(self.epochs * n_images / batch)))


class FolderEncoder(nn.Module):
    """Encoder: 3 stride-2 convs (4x4, 4x4, 3x3; LeakyReLU, BatchNorm on the 2nd and 3rd) and a linear
    layer to ``feature_dim`` numbers; decoder: a DCGAN generator from those numbers back to the image.

    Images are float in [-1, 1] (a generator's range), shape (N, channels, resolution, resolution);
    the resolution must be a multiple of 4 and at least 8, as for gmmgan's DCGAN nets.
    """

    def __init__(self, channels: int, resolution: int, config: EncoderConfig | None = None):
        super().__init__()
        self.config = c = config or EncoderConfig()
        self.channels, self.resolution = int(channels), int(resolution)
        w = c.width
        self.decoder = DCGANGenerator(c.feature_dim, channels, resolution, width=w)  # checks the resolution
        s = (resolution // 4 + 1) // 2
        self.encoder = nn.Sequential(
            nn.Conv2d(channels, w, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(w, 2 * w, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * w), nn.LeakyReLU(0.2),
            nn.Conv2d(2 * w, 4 * w, 3, 2, 1, bias=False), nn.BatchNorm2d(4 * w), nn.LeakyReLU(0.2),
            nn.Flatten(), nn.Linear(4 * w * s * s, c.feature_dim),
        )

    @property
    def num_features(self) -> int:
        return self.config.feature_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The reconstruction of ``x``."""
        return self.decoder(self.encoder(x))

    @torch.no_grad()
    def features(self, images: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
        """Encoder outputs, float32 (N, feature_dim), on the model's device; images in [-1, 1]."""
        expected = (self.channels, self.resolution, self.resolution)
        if images.ndim != 4 or tuple(images.shape[1:]) != expected:
            raise ValueError(f"the folder's encoder takes images of shape (N, {', '.join(map(str, expected))}), "
                             f"got {tuple(images.shape)}.")
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        try:
            out = [self.encoder(images[i : i + batch_size].to(device).float()) for i in range(0, len(images), batch_size)]
        finally:
            self.train(was_training)
        return torch.cat(out).float()


def folder_key(images: torch.Tensor, config: EncoderConfig) -> str:
    """sha256 (hex) of the uint8 images (N, C, R, R) and the encoder settings: what the encoder is trained on."""
    h = hashlib.sha256()
    h.update(json.dumps({"shape": list(images.shape), "config": asdict(config)}, sort_keys=True).encode())
    h.update(images.contiguous().numpy().tobytes())
    return h.hexdigest()


def _to_unit(images: torch.Tensor) -> torch.Tensor:
    return images.float() / 127.5 - 1.0


def train_folder_encoder(
    images: torch.Tensor,
    config: EncoderConfig | None = None,
    device: str | torch.device = "cpu",
    log: Callable[[str], None] | None = None,
) -> tuple[FolderEncoder, dict]:
    """Train a :class:`FolderEncoder` on uint8 ``images`` (N, C, R, R) by mean squared reconstruction error.

    Returns the model (eval mode) and ``info``: ``n_images``, ``channels``, ``resolution``, ``steps``,
    ``recon_mse`` (on all the images, in the [-1, 1] range), ``train_seconds``, ``config``.
    """
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(f"images must be uint8 of shape (N, C, R, R), got {images.dtype} {tuple(images.shape)}.")
    if images.shape[0] < 2:
        raise ValueError(f"the folder's encoder needs at least 2 images, got {images.shape[0]}.")
    cfg = config or EncoderConfig()
    device = torch.device(device)
    n, c, r = images.shape[0], images.shape[1], images.shape[2]
    steps, batch = cfg.steps(n), min(cfg.batch_size, n)
    x = _to_unit(images)
    g = torch.Generator().manual_seed(cfg.seed)
    t0 = time.perf_counter()
    threads = torch.get_num_threads()
    if device.type == "cpu":
        # Batches of 64 small images are too little work to share: on a busy CPU the threads' waits
        # for each other made this 10x slower (a 2-core machine at load 5); one thread avoids that.
        torch.set_num_threads(1)
    try:
        model = _fit(x, cfg, steps, batch, g, device, log, t0)
    finally:
        torch.set_num_threads(threads)
    model.eval()
    with torch.no_grad():
        mse = sum(float(F.mse_loss(model(x[i : i + 1024].to(device)), x[i : i + 1024].to(device), reduction="sum"))
                  for i in range(0, n, 1024)) / x.numel()
    info = {"n_images": n, "channels": c, "resolution": r, "steps": steps, "batch_size": batch,
            "recon_mse": mse, "train_seconds": round(time.perf_counter() - t0, 1), "device": str(device),
            "torch": torch.__version__, "config": asdict(cfg)}
    return model, info


def _fit(x, cfg: EncoderConfig, steps: int, batch: int, g, device, log, t0) -> FolderEncoder:
    n, c, r = x.shape[0], x.shape[1], x.shape[2]
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(cfg.seed)
        model = FolderEncoder(c, r, cfg).to(device)
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 0.5 * (1 + math.cos(math.pi * i / steps)))
        model.train()
        perm, pos = torch.randperm(n, generator=g), 0
        for i in range(steps):
            if pos + batch > n:
                perm, pos = torch.randperm(n, generator=g), 0
            xb = x[perm[pos : pos + batch]].to(device)
            pos += batch
            loss = F.mse_loss(model(xb), xb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if log is not None and (i + 1) % 500 == 0:
                log(f"  encoder step {i + 1}/{steps}  reconstruction MSE {loss.item():.4f}  "
                    f"{time.perf_counter() - t0:.0f} s")
    return model


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_or_train_folder_encoder(
    images: torch.Tensor,
    cache_dir: str | Path,
    *,
    config: EncoderConfig | None = None,
    device: str | torch.device = "cpu",
    source: str = "",
    log: Callable[[str], None] | None = None,
) -> tuple[FolderEncoder, dict, bool]:
    """The cached encoder of these images and settings, or a new one trained and cached.

    Returns ``(model, info, trained)``; ``trained`` is True when it was trained now. ``source`` (the
    folder's path) is recorded in the JSON for the reader; the cache key depends on the images only.
    """
    from safetensors.torch import load_file, save_file

    from gmmgan._files import atomic_write

    cfg = config or EncoderConfig()
    key = folder_key(images, cfg)
    folder = Path(cache_dir).expanduser()
    weights, meta = folder / f"folder-{key[:16]}.safetensors", folder / f"folder-{key[:16]}.json"
    if weights.is_file() and meta.is_file():
        try:
            info = json.loads(meta.read_text())
            if info.get("key") == key and info.get("sha256") == _sha256(weights):
                model = FolderEncoder(info["channels"], info["resolution"], EncoderConfig(**info["config"]))
                model.load_state_dict(load_file(str(weights)))
                return model.to(device).eval(), info, False
        except (ValueError, TypeError, KeyError, RuntimeError, OSError):
            pass  # unreadable or not this encoder: train it again below, replacing the broken files
        if log is not None:
            log(f"the cached encoder {weights} is corrupt or does not match its JSON; training it again")
    model, info = train_folder_encoder(images, cfg, device, log)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write(weights, lambda tmp: save_file(state, tmp, metadata={"kind": "gmmgan-folder-encoder"}))
    info.update(kind="folder-autoencoder", key=key, source=str(source), sha256=_sha256(weights),
                format="gmmgan-folder-encoder-v1")
    text = json.dumps(info, indent=2) + "\n"
    atomic_write(meta, lambda tmp: Path(tmp).write_text(text))
    return model, info, True
