"""A contrastive encoder trained by gmmgan as a learned embedding made for clustering (``prior.embed=contrastive``).

An autoencoder's codes keep what the pixels need, so digits whose pixels overlap (MNIST's 4 and 9)
share a region of its code space and a Gaussian mixture merges them, with or without a manifold
step on top (docs/guide.md, 'Which embedding?'). A contrastive encoder (SimCLR, Chen et al. 2020)
is trained instead to give two random views of one image (:mod:`gmmgan.gan.digit_views`: small
rotations, scalings, slants, shifts, elastic wobble, pixel noise) the same code and other images
other codes (the NT-Xent loss): its codes ignore how a digit is written and keep what it is, and
the classes become separate clusters. No labels are used.

:class:`ContrastiveEmbedding` is an :class:`gmmgan.gan.embed.Embedding`:

- ``fit`` trains the encoder (seeded; deterministic on the CPU, not on a GPU, whose scatter-adds in the manifold step are atomic; reported through a ``callback``),
  then a decoder that maps the frozen codes of the unaugmented images back to the images (the
  autoencoder's decoder, for the fitted prior's warm start), and optionally lays the codes out on a
  UMAP-style manifold (:class:`gmmgan.gan.manifold.ManifoldMap`, as ``prior.embed=manifold`` does);
- ``encode`` gives the unit-norm code (the space the loss compares), standardised per coordinate,
  or, with the manifold step, its standardised manifold coordinates;
- ``decode`` maps codes (or coordinates) back to images, about [-1, 1].

Its weights are parameters that never require gradients outside ``fit``, as the autoencoder's.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from gmmgan.gan.autoencoder import _Decoder, check_image_shape
from gmmgan.gan.digit_views import ViewSettings, random_views
from gmmgan.gan.embed import Embedding
from gmmgan.gan.manifold import ManifoldMap

__all__ = ["ContrastiveEmbedding", "nt_xent"]

_ENCODE_CHUNK = 2048  # rows per encoder/decoder call outside training (bounds activation memory)


def nt_xent(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's loss for the codes ``a``, ``b`` (N, d) of two views of the same N images.

    Each of the 2N codes must pick its partner among the other 2N - 1 by cosine similarity /
    ``temperature`` (a softmax cross-entropy); the mean over the 2N codes.
    """
    z = F.normalize(torch.cat([a, b]), dim=1)
    n = a.shape[0]
    sim = (z @ z.T) / temperature
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    partner = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return F.cross_entropy(sim, partner)


class _Encoder(nn.Module):
    """(N, C, H, W) -> (N, dim): a 3x3 convolution, two stride-2 convolutions (H/4 x W/4 maps), two linear layers.

    BatchNorm after every layer but the last: contrastive training of a small net from scratch is
    much slower without it. The last layer is the code: the loss is computed on it directly (no
    separate projection head), so the space the mixture is fitted in is the one the loss shapes.
    """

    def __init__(self, shape, dim, width, hidden=128):
        super().__init__()
        c, h, w = shape

        def block(layer, n):
            return [layer, nn.BatchNorm2d(n), nn.ReLU()]

        self.convs = nn.Sequential(*block(nn.Conv2d(c, width, 3, 1, 1), width),
                                   *block(nn.Conv2d(width, 2 * width, 4, 2, 1), 2 * width),
                                   *block(nn.Conv2d(2 * width, 4 * width, 4, 2, 1), 4 * width))
        self.head = nn.Sequential(nn.Linear(4 * width * (h // 4) * (w // 4), hidden), nn.BatchNorm1d(hidden),
                                  nn.ReLU(), nn.Linear(hidden, dim))

    def forward(self, x):
        return self.head(self.convs(x).flatten(1))


class ContrastiveEmbedding(Embedding):
    """A SimCLR encoder (NT-Xent on random views, no labels), a decoder for the warm start, an optional manifold step.

    Parameters
    ----------
    shape : tuple of int
        (C, H, W) with C in {1, 3} and H, W multiples of 4 (28 px MNIST, 32 px image folders).
    dim : int
        Code size (``prior.embed_dim``); below the number of pixels, at least 2.
    manifold_dim : int, optional
        With a value, the codes are laid out on a UMAP-style manifold of this many dimensions
        (below ``dim``) and ``encode`` gives its coordinates; None (default): the codes themselves.
    epochs : int, default=10
        Passes over the training images of the encoder (each pass sees two views of every image);
        the decoder trains as many passes on the frozen codes.
    width : int, default=32
        Channels of the first convolution (the next have 2x and 4x as many).
    batch_size : int, default=512
        Images per step (so 2 x 512 views: each code's partner is picked among 1023).
    lr : float, default=2e-3
        Adam's learning rate, cosine-decayed to 0 (encoder and decoder alike).
    temperature : float, default=0.2
        NT-Xent's temperature. Measured on 10,000 MNIST images (docs/guide.md): 0.2 clustered a
        little better than SimCLR's 0.5 (accuracy 0.953 against 0.947), and stronger views (scale
        +-25 %, shifts +-15 %) worse (0.936).
    views : ViewSettings, optional
        The random views' ranges (:class:`gmmgan.gan.digit_views.ViewSettings`).
    seed : int, default=0
        Seeds the initial weights, the batches, the views and the manifold (the global RNG is left alone).

    Attributes
    ----------
    encoder, decoder : nn.Module
    manifold : ManifoldMap or None
    code_mean, code_scale : Tensor (dim,)
        Mean and standard deviation of the training images' unit-norm codes.
    coord_mean, coord_scale : Tensor (manifold_dim,) (empty without the manifold step)
    history : list of float
        Mean NT-Xent loss of each epoch of the last :meth:`fit`, then the decoder's mean
        reconstruction MSE of each of its epochs (not saved in the state).
    """

    learned = True
    kind = "contrastive"

    def __init__(self, shape, dim: int, manifold_dim: int | None = None, *, epochs: int = 10, width: int = 32,
                 batch_size: int = 512, lr: float = 2e-3, temperature: float = 0.2, views: ViewSettings | None = None,
                 n_neighbors: int = 20, seed: int = 0):
        super().__init__(shape)
        check_image_shape(self.shape, "contrastive")
        for name, value in (("dim", dim), ("epochs", epochs), ("width", width), ("batch_size", batch_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"contrastive {name} must be a positive int, got {value!r}.")
        if not 2 <= dim < self.n_features:
            raise ValueError(f"a contrastive code needs 2 to {self.n_features - 1} dimensions (fewer than the "
                             f"{self.n_features} values per image), got prior.embed_dim={dim}.")
        if manifold_dim is not None and (isinstance(manifold_dim, bool) or not isinstance(manifold_dim, int)
                                         or not 1 <= manifold_dim < dim):
            raise ValueError(f"the manifold's dimension (prior.embed_manifold_dim) must be an int from 1 to {dim - 1}, "
                             f"below the contrastive code size prior.embed_dim={dim}; got {manifold_dim!r}.")
        if not temperature > 0:
            raise ValueError(f"the NT-Xent temperature must be positive, got {temperature!r}.")
        self.code_dim, self.manifold_dim, self.epochs, self.width = dim, manifold_dim, epochs, width
        self.batch_size, self.lr, self.temperature, self.seed = batch_size, float(lr), float(temperature), int(seed)
        self.views = views or ViewSettings()
        with torch.random.fork_rng(devices=[]):  # seeded weights, without touching the caller's stream
            torch.manual_seed(self.seed)
            self.encoder, self.decoder = _Encoder(self.shape, dim, width), _Decoder(self.shape, dim, width)
        self.manifold = None if manifold_dim is None else ManifoldMap(manifold_dim, n_neighbors, 0.0, seed=seed)
        self.requires_grad_(False).eval()
        for name in ("code_mean", "code_scale", "coord_mean", "coord_scale"):
            self.register_buffer(name, torch.empty(0))
        self.history: list[float] = []

    @property
    def dim(self) -> int:
        return self.code_dim if self.manifold is None else self.manifold_dim

    @property
    def fitted(self) -> bool:
        return self.code_scale.numel() > 0 and (self.manifold is None or self.coord_scale.numel() > 0)

    def architecture(self) -> dict:
        arch = {**super().architecture(), "width": self.width, "code_dim": self.code_dim}
        return arch if self.manifold is None else {**arch, "n_neighbors": self.manifold.n_neighbors}

    def steps(self, n: int) -> int:
        """Optimizer steps of :meth:`fit` on ``n`` images: the encoder's, then the decoder's."""
        return 2 * math.ceil(n / self.batch_size) * self.epochs

    def fit(self, x: torch.Tensor, callback=None) -> ContrastiveEmbedding:
        """Train on images ``x`` (N, C, H, W) in [-1, 1]; ``callback(done, total, loss, label)`` reports progress.

        ``done`` / ``total`` count the encoder's and the decoder's steps, then the manifold's epochs;
        ``loss`` is the last epoch's mean (None between epochs and in the manifold step), ``label``
        names it: ``'NT-Xent'`` while the encoder trains, ``'MSE'`` while the decoder does.
        Runs on ``x``'s device (the module is moved there). On the CPU the result depends only on
        the data and ``seed``.
        """
        self._check_input(x)
        n = x.shape[0]
        if n < 4:
            raise ValueError(f"a contrastive embedding needs at least 4 training images, got {n}.")
        if not bool(torch.isfinite(x).all()):
            raise ValueError("the contrastive embedding's training images contain NaN or infinite values; "
                             "fix those first.")
        if self.manifold is not None and n <= self.manifold.n_neighbors:
            raise ValueError(f"the manifold step needs more than n_neighbors={self.manifold.n_neighbors} "
                             f"training images, got {n}.")
        self.to(x.device)
        steps = self.steps(n)
        total = steps + (self.manifold.n_epochs if self.manifold is not None else 0)
        report = None if callback is None else (lambda d, loss, label="MSE": callback(d, total, loss, label))
        self.history = []
        try:
            with torch.enable_grad():  # a prior fits under no_grad; training needs gradients
                self._train_encoder(x, report)
                with torch.no_grad():
                    codes = self._unit_codes(x)
                    self.code_mean, self.code_scale = codes.mean(0), codes.std(0).clamp_min(1e-6)
                    codes = (codes - self.code_mean) / self.code_scale
                self._train_decoder(x, codes, report, steps // 2)
        finally:
            self.requires_grad_(False).eval()
        if self.manifold is not None:
            self.manifold.fit(codes, callback=None if callback is None
                              else lambda d, _: callback(steps + d, total, None, "MSE"))
            coords = self.manifold.embedding_
            self.coord_mean, self.coord_scale = coords.mean(0), coords.std(0).clamp_min(1e-6)
        return self

    def fit_encode(self, x: torch.Tensor, callback=None) -> torch.Tensor:
        """Fit, then the training images' codes; with the manifold step, their own layout coordinates.

        The layout rather than ``encode(x)``: the neighbour average of ``encode`` blurs the borders
        between clusters (as :meth:`gmmgan.gan.manifold_embedding.ManifoldEmbedding.fit_encode`).
        """
        self.fit(x, callback=callback)
        if self.manifold is None:
            return self.encode(x)
        return (self.manifold.embedding_ - self.coord_mean) / self.coord_scale

    def _schedule(self, params, total: int):
        opt = torch.optim.Adam(params, lr=self.lr)
        return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 0.5 * (1 + math.cos(math.pi * i / total)))

    def _train_encoder(self, x: torch.Tensor, report) -> None:
        """Adam on NT-Xent between two random views of every batch; one loss per epoch into ``history``."""
        n, per_epoch = x.shape[0], math.ceil(x.shape[0] / self.batch_size)
        order = torch.Generator().manual_seed(self.seed)
        views = torch.Generator(device=x.device).manual_seed(self.seed + 1)
        self.encoder.requires_grad_(True).train()
        opt, sched = self._schedule(list(self.encoder.parameters()), per_epoch * self.epochs)
        step = 0
        for _ in range(self.epochs):
            epoch_loss = torch.zeros((), device=x.device)
            for batch_idx in torch.randperm(n, generator=order).to(x.device).split(self.batch_size):
                if batch_idx.shape[0] < 2:  # BatchNorm needs two rows, NT-Xent a negative
                    continue
                batch = x[batch_idx]
                loss = nt_xent(self.encoder(random_views(batch, views, self.views)),
                               self.encoder(random_views(batch, views, self.views)), self.temperature)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                epoch_loss += loss.detach() * batch.shape[0]
                step += 1
                if report is not None and step % 20 == 0:
                    report(step, None)
            self.history.append(float(epoch_loss) / n)  # one sync per epoch
            if report is not None:
                report(step, self.history[-1], "NT-Xent")
        self.encoder.requires_grad_(False).eval()

    def _train_decoder(self, x: torch.Tensor, codes: torch.Tensor, report, done: int) -> None:
        """Adam on the MSE of decoder(code) against the unaugmented image, the encoder frozen."""
        n, per_epoch = x.shape[0], math.ceil(x.shape[0] / self.batch_size)
        order = torch.Generator().manual_seed(self.seed + 2)
        self.decoder.requires_grad_(True).train()
        opt, sched = self._schedule(list(self.decoder.parameters()), per_epoch * self.epochs)
        step = done
        for _ in range(self.epochs):
            epoch_loss = torch.zeros((), device=x.device)
            for batch_idx in torch.randperm(n, generator=order).to(x.device).split(self.batch_size):
                loss = F.mse_loss(self.decoder(codes[batch_idx]), x[batch_idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                epoch_loss += loss.detach() * batch_idx.shape[0]
                step += 1
                if report is not None and step % 20 == 0:
                    report(step, None)
            self.history.append(float(epoch_loss) / n)
            if report is not None:
                report(step, self.history[-1])
        self.decoder.requires_grad_(False).eval()

    def _check_fitted(self) -> None:
        if not self.fitted:
            raise ValueError("this ContrastiveEmbedding is not trained yet; call fit(images) first "
                             "(or load a trained one's state_dict).")

    @staticmethod
    def _run_in_chunks(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """``net(x)``: in one piece for a differentiable use (the GMM-likelihood penalty), else in chunks without grad."""
        if torch.is_grad_enabled() and x.requires_grad:
            return net(x)
        with torch.no_grad():
            return torch.cat([net(c) for c in x.split(_ENCODE_CHUNK)])

    def _unit_codes(self, x: torch.Tensor) -> torch.Tensor:
        # Unit norm: the loss only sees directions, so a code's length carries nothing but noise.
        return F.normalize(self._run_in_chunks(self.encoder, x), dim=1)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        codes = self.features(x)
        if self.manifold is None:
            return codes
        with torch.no_grad():  # a nearest-neighbour average: no gradient
            return (self.manifold.transform(codes) - self.coord_mean) / self.coord_scale

    @property
    def differentiable(self) -> bool:
        return self.manifold is None

    def stored_layout(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The manifold's stored training codes (the features) and their standardised layout coordinates."""
        if self.manifold is None:
            return None
        self._check_fitted()
        return self.manifold.codes, (self.manifold.coords - self.coord_mean) / self.coord_scale

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The standardised unit-norm codes (differentiable), also with the manifold step."""
        self._check_fitted()
        self._check_input(x)
        return (self._unit_codes(x.to(self.code_mean.dtype)) - self.code_mean) / self.code_scale

    def decode(self, e: torch.Tensor) -> torch.Tensor:
        self._check_fitted()
        self._check_code(e)
        e = e.to(self.code_mean.dtype)
        if self.manifold is not None:
            e = self.manifold.inverse(e * self.coord_scale + self.coord_mean)
        return self._run_in_chunks(self.decoder, e)

    def extra_repr(self) -> str:
        return (f"shape={self.shape}, code_dim={self.code_dim}, manifold_dim={self.manifold_dim}, "
                f"width={self.width}, epochs={self.epochs}")
