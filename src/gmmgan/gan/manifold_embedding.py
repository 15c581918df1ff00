"""An embedding made for clustering: autoencoder codes, then a UMAP-style manifold step (N2D).

N2D (McConville et al., 2019) showed that a Gaussian mixture clusters MNIST far better in a
low-dimensional manifold learned on an autoencoder's codes (UMAP, 10 dimensions, ``min_dist=0``)
than in the codes themselves: the autoencoder removes pixel noise, the manifold step pulls each
class's codes together along their local neighbourhoods. :class:`ManifoldEmbedding` chains the two
gmmgan pieces, :class:`gmmgan.gan.autoencoder.AutoencoderEmbedding` and
:class:`gmmgan.gan.manifold.ManifoldMap`, behind the :class:`gmmgan.gan.embed.Embedding` interface:

- ``encode(x)``: the autoencoder's code, placed in the manifold by a weighted average of its nearest
  stored training codes' coordinates, standardised per coordinate.
- ``decode(e)``: the reverse average (coordinates -> a code near the data), then the autoencoder's
  decoder: the warm-start target, one sharp digit per region of the manifold.

``encode`` is not differentiable (a nearest-neighbour average), so the GMM-likelihood regulariser
(``prior.kind=gmm_reg``) needs PCA or the autoencoder instead.
"""

from __future__ import annotations

import torch

from gmmgan.gan.autoencoder import AutoencoderEmbedding
from gmmgan.gan.embed import Embedding
from gmmgan.gan.manifold import ManifoldMap

__all__ = ["ManifoldEmbedding"]


class ManifoldEmbedding(Embedding):
    """Autoencoder codes of ``code_dim`` dimensions, mapped to a ``dim``-dimensional UMAP-style manifold.

    Parameters
    ----------
    shape : tuple of int
        (C, H, W) images, as :class:`AutoencoderEmbedding` takes them.
    code_dim : int
        The autoencoder's code size (``prior.embed_dim``).
    dim : int, default=10
        The manifold's dimension, the size of ``encode``'s vectors (``prior.embed_manifold_dim``);
        below ``code_dim``.
    epochs, width : the autoencoder's training passes and first-layer channels.
    n_neighbors : int, default=20
        The manifold's neighbourhood size (N2D's choice).
    seed : int, default=0
        Seeds both steps.

    Attributes
    ----------
    autoencoder : AutoencoderEmbedding
    manifold : ManifoldMap
    coord_mean, coord_scale : Tensor (dim,)
        Standardise the manifold coordinates (UMAP's layout has no natural scale).
    """

    learned = True
    kind = "manifold"

    def __init__(self, shape, code_dim: int, dim: int = 10, *, epochs: int = 10, width: int = 32,
                 n_neighbors: int = 20, seed: int = 0):
        super().__init__(shape)
        self.autoencoder = AutoencoderEmbedding(shape, code_dim, epochs=epochs, width=width, seed=seed)
        if isinstance(dim, bool) or not isinstance(dim, int) or not 1 <= dim < code_dim:
            raise ValueError(f"the manifold's dimension (prior.embed_manifold_dim) must be an int from 1 to "
                             f"{code_dim - 1}, below the autoencoder's code size prior.embed_dim={code_dim}; "
                             f"got {dim!r}.")
        self.manifold = ManifoldMap(dim, n_neighbors, 0.0, seed=seed)
        self._dim, self.epochs, self.width, self.seed = dim, epochs, width, int(seed)
        for name in ("coord_mean", "coord_scale"):
            self.register_buffer(name, torch.empty(0))

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def fitted(self) -> bool:
        return self.coord_scale.numel() > 0

    def architecture(self) -> dict:
        return {**super().architecture(), "width": self.width, "code_dim": self.autoencoder.dim,
                "n_neighbors": self.manifold.n_neighbors}

    def fit(self, x: torch.Tensor, callback=None) -> ManifoldEmbedding:
        """Train the autoencoder on images ``x``, then lay its codes out; ``callback(done, total, loss)``.

        ``done`` / ``total`` count the autoencoder's steps, then the layout's epochs.
        """
        steps = self.autoencoder.steps(x.shape[0])
        total = steps + self.manifold.n_epochs
        self.autoencoder.fit(x, callback=None if callback is None else lambda d, _, loss: callback(d, total, loss))
        self.manifold.fit(self.autoencoder.encode(x),
                          callback=None if callback is None else lambda d, _: callback(steps + d, total, None))
        coords = self.manifold.embedding_
        self.coord_mean, self.coord_scale = coords.mean(0), coords.std(0).clamp_min(1e-6)
        self.history = self.autoencoder.history
        return self

    def fit_encode(self, x: torch.Tensor, callback=None) -> torch.Tensor:
        """Fit, then the training images' own layout coordinates (standardised).

        The mixture is fitted on these rather than on ``encode(x)``: the neighbour average of
        ``encode`` blurs the borders between clusters (MNIST, 10,000 images, a 10-component GMM:
        accuracy 0.81-0.86 on the layout against 0.70-0.75 on the averages).
        """
        self.fit(x, callback=callback)
        return (self.manifold.embedding_ - self.coord_mean) / self.coord_scale

    def _check_fitted(self) -> None:
        if not self.fitted:
            raise ValueError("this ManifoldEmbedding is not trained yet; call fit(images) first "
                             "(or load a trained one's state_dict).")

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        self._check_fitted()
        return (self.manifold.transform(self.autoencoder.encode(x)) - self.coord_mean) / self.coord_scale

    differentiable = False  # encode is a neighbour average in the layout

    def stored_layout(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The manifold's stored training codes (the features) and their standardised layout coordinates."""
        self._check_fitted()
        return self.manifold.codes, (self.manifold.coords - self.coord_mean) / self.coord_scale

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The autoencoder's codes (differentiable), which the layout is made from."""
        self._check_fitted()
        return self.autoencoder.encode(x)

    @torch.no_grad()
    def decode(self, e: torch.Tensor) -> torch.Tensor:
        self._check_fitted()
        self._check_code(e)
        return self.autoencoder.decode(self.manifold.inverse(e.float() * self.coord_scale + self.coord_mean))

    def extra_repr(self) -> str:
        return f"shape={self.shape}, dim={self.dim}"
