"""A convolutional autoencoder trained by gmmgan as a learned embedding for the fitted prior.

PCA puts digits that look alike on top of each other and its decoder is a blur; a small
autoencoder trained on the same images separates them better and decodes sharply, so the mixture's
components mix fewer classes and the warm start gives G a sharper head start (docs/protocols.md,
section 'Learned embeddings').

:class:`AutoencoderEmbedding` is an :class:`gmmgan.gan.embed.Embedding`: ``fit`` trains it (seeded,
deterministic on the CPU, reported through a ``callback`` for progress bars), ``encode`` gives
standardised codes (unit variance per coordinate, the scale PCA's whitening gives the generator's
input), ``decode`` maps codes back to images (about [-1, 1]; the warm start clips). Its weights
are parameters that never require gradients outside ``fit``, so they travel in the prior's
``state_dict`` and no optimizer of the GAN ever sees them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from gmmgan.gan.embed import Embedding

__all__ = ["AutoencoderEmbedding", "check_image_shape"]

_ENCODE_CHUNK = 2048  # rows per encoder/decoder call outside training (bounds activation memory)


def check_image_shape(shape: tuple[int, ...], what: str) -> None:
    """A convolutional embedding needs (C, H, W) images with 1 or 3 channels and H, W multiples of 4."""
    if len(shape) != 3:
        raise ValueError(f"prior.embed={what} needs images (C, H, W); these data are vectors of shape {tuple(shape)}. "
                         "Use prior.embed=identity (or auto) for 2-D points.")
    c, h, w = shape
    if c not in (1, 3) or h % 4 or w % 4 or h < 8 or w < 8:
        raise ValueError(f"prior.embed={what} takes 1- or 3-channel images whose sides are multiples of 4 "
                         f"(e.g. 28 or 32 px), got shape {tuple(shape)}; set data.resolution to such a size.")


class _Encoder(nn.Module):
    """(N, C, H, W) -> (N, dim): two stride-2 convolutions (H/4 x W/4 maps), then a linear layer."""

    def __init__(self, shape, dim, width):
        super().__init__()
        c, h, w = shape
        self.convs = nn.Sequential(nn.Conv2d(c, width, 4, 2, 1), nn.LeakyReLU(0.2),
                                   nn.Conv2d(width, 2 * width, 4, 2, 1), nn.LeakyReLU(0.2))
        self.linear = nn.Linear(2 * width * (h // 4) * (w // 4), dim)

    def forward(self, x):
        return self.linear(self.convs(x).flatten(1))


class _Decoder(nn.Module):
    """(N, dim) -> (N, C, H, W), about [-1, 1]: the encoder mirrored with transposed convolutions."""

    def __init__(self, shape, dim, width):
        super().__init__()
        c, h, w = shape
        self.map_shape = (2 * width, h // 4, w // 4)
        self.linear = nn.Linear(dim, math.prod(self.map_shape))
        # A linear output, not tanh: MNIST is mostly background at -1, and a tanh decoder sits for epochs
        # in the flat minimum "every pixel -1" (measured: MSE 0.445 for 5 of 10 epochs, against 0.09).
        self.convs = nn.Sequential(nn.LeakyReLU(0.2), nn.ConvTranspose2d(2 * width, width, 4, 2, 1), nn.LeakyReLU(0.2),
                                   nn.ConvTranspose2d(width, c, 4, 2, 1))

    def forward(self, e):
        return self.convs(self.linear(e).reshape(e.shape[0], *self.map_shape))


class AutoencoderEmbedding(Embedding):
    """A convolutional autoencoder (MSE reconstruction) trained on the real images.

    Parameters
    ----------
    shape : tuple of int
        (C, H, W) with C in {1, 3} and H, W multiples of 4 (28 px MNIST, 32 px image folders).
    dim : int
        Code size; below the number of pixels.
    epochs : int, default=10
        Passes over the training images in :meth:`fit`.
    width : int, default=32
        Channels of the first convolution (the second has twice as many).
    batch_size : int, default=256
    lr : float, default=1e-3
        Adam's learning rate, decayed to 0 by a cosine over the training.
    seed : int, default=0
        Seeds the initial weights and the order of the batches (the global RNG is left alone).

    Attributes
    ----------
    encoder, decoder : nn.Module
    code_mean, code_scale : Tensor (dim,)
        Mean and standard deviation of the training codes; ``encode`` returns (code - mean) / scale.
    history : list of float
        Mean reconstruction MSE of each epoch of the last :meth:`fit` (not saved in the state).
    """

    learned = True
    kind = "autoencoder"

    def __init__(self, shape, dim: int, *, epochs: int = 10, width: int = 32, batch_size: int = 256,
                 lr: float = 1e-3, seed: int = 0):
        super().__init__(shape)
        check_image_shape(self.shape, "autoencoder")
        for name, value in (("dim", dim), ("epochs", epochs), ("width", width), ("batch_size", batch_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"autoencoder {name} must be a positive int, got {value!r}.")
        if dim >= self.n_features:
            raise ValueError(f"an autoencoder code of {dim} dimensions is not smaller than the data "
                             f"({self.n_features} values per image); use a smaller prior.embed_dim.")
        self._dim, self.epochs, self.width, self.batch_size, self.lr, self.seed = \
            dim, epochs, width, batch_size, float(lr), int(seed)
        with torch.random.fork_rng(devices=[]):  # seeded weights, without touching the caller's stream
            torch.manual_seed(self.seed)
            self.encoder, self.decoder = _Encoder(self.shape, dim, width), _Decoder(self.shape, dim, width)
        self.requires_grad_(False)
        for name in ("code_mean", "code_scale"):
            self.register_buffer(name, torch.empty(0))
        self.history: list[float] = []

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def fitted(self) -> bool:
        return self.code_scale.numel() > 0

    def architecture(self) -> dict:
        return {**super().architecture(), "width": self.width}

    def steps(self, n: int) -> int:
        """Optimizer steps of :meth:`fit` on ``n`` images."""
        return math.ceil(n / self.batch_size) * self.epochs

    def fit(self, x: torch.Tensor, callback=None) -> AutoencoderEmbedding:
        """Train on images ``x`` (N, C, H, W) in [-1, 1]; ``callback(done_steps, total_steps, mse)`` reports progress.

        Runs on ``x``'s device (the module is moved there). On the CPU the result depends only on
        the data and ``seed``.
        """
        self._check_input(x)
        n = x.shape[0]
        if n < 2:
            raise ValueError(f"an autoencoder needs at least 2 training images, got {n}.")
        if not bool(torch.isfinite(x).all()):
            raise ValueError("the autoencoder's training images contain NaN or infinite values; fix those first.")
        self.to(x.device)
        self.requires_grad_(True).train()
        try:
            with torch.enable_grad():  # a prior fits under no_grad; training needs gradients
                self._train(x, callback)
        finally:
            self.requires_grad_(False).eval()
        with torch.no_grad():
            codes = self._raw_codes(x)
            self.code_mean = codes.mean(0)
            self.code_scale = codes.std(0).clamp_min(1e-6)
        return self

    def _train(self, x: torch.Tensor, callback) -> None:
        """Adam on the reconstruction MSE, the learning rate cosine-decayed to 0; ``history`` gets each epoch's mean."""
        n, total = x.shape[0], self.steps(x.shape[0])
        order = torch.Generator().manual_seed(self.seed)
        opt = torch.optim.Adam(list(self.encoder.parameters()) + list(self.decoder.parameters()), lr=self.lr)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 0.5 * (1 + math.cos(math.pi * i / total)))
        self.history, step = [], 0
        for _ in range(self.epochs):
            perm = torch.randperm(n, generator=order).to(x.device)
            epoch_loss = torch.zeros((), device=x.device)
            for batch_idx in perm.split(self.batch_size):
                batch = x[batch_idx]
                loss = F.mse_loss(self.decoder(self.encoder(batch)), batch)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                epoch_loss += loss.detach() * batch.shape[0]
                step += 1
                if callback is not None and step % 20 == 0:
                    callback(step, total, None)
            self.history.append(float(epoch_loss) / n)  # one sync per epoch
            if callback is not None:
                callback(step, total, self.history[-1])

    def _check_fitted(self) -> None:
        if not self.fitted:
            raise ValueError("this AutoencoderEmbedding is not trained yet; call fit(images) first "
                             "(or load a trained one's state_dict).")

    @staticmethod
    def _run_in_chunks(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """``net(x)``: in one piece for a differentiable use (the GMM-likelihood penalty), else in chunks without grad."""
        if torch.is_grad_enabled() and x.requires_grad:
            return net(x)
        with torch.no_grad():
            return torch.cat([net(c) for c in x.split(_ENCODE_CHUNK)])

    def _raw_codes(self, x: torch.Tensor) -> torch.Tensor:
        return self._run_in_chunks(self.encoder, x)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        self._check_fitted()
        self._check_input(x)
        dtype = self.code_mean.dtype
        return (self._raw_codes(x.to(dtype)) - self.code_mean) / self.code_scale

    def decode(self, e: torch.Tensor) -> torch.Tensor:
        self._check_fitted()
        self._check_code(e)
        return self._run_in_chunks(self.decoder, e.to(self.code_mean.dtype) * self.code_scale + self.code_mean)

    def extra_repr(self) -> str:
        return f"shape={self.shape}, dim={self.dim}, width={self.width}, epochs={self.epochs}"
