"""``prior.embed``'s names and the embeddings they build (:mod:`gmmgan.gan.embed` holds the classes' base)."""

from __future__ import annotations

from gmmgan.gan.autoencoder import AutoencoderEmbedding
from gmmgan.gan.config import EMBEDDINGS
from gmmgan.gan.contrastive import ContrastiveEmbedding
from gmmgan.gan.digit_views import VIEW_PRESETS
from gmmgan.gan.embed import Embedding, IdentityEmbedding, PCAEmbedding
from gmmgan.gan.manifold_embedding import ManifoldEmbedding

__all__ = ["EMBEDDINGS", "build_embedding"]


def build_embedding(kind: str, shape: tuple[int, ...], dim: int = 32, whiten: bool = True, seed: int = 0,
                    **learned_options) -> Embedding:
    """The embedding called ``kind`` for samples of ``shape``.

    ``'auto'`` is the identity for vector data (shape of length 1, e.g. 2-D points) and PCA with
    ``dim`` components for images. ``learned_options`` (``epochs``, ``width``) go to a learned
    embedding (``'autoencoder'``; ``'manifold'`` and ``'contrastive'`` also take ``manifold_dim``,
    the size of their vectors, while ``dim`` is their autoencoder's or contrastive encoder's code
    size; ``'contrastive'`` also takes ``views``, a name of :data:`gmmgan.gan.digit_views.VIEW_PRESETS`)
    and are ignored by the others.
    """
    if kind not in EMBEDDINGS:
        raise ValueError(f"unknown embedding {kind!r}; expected one of {EMBEDDINGS}.")
    if kind == "auto":
        kind = "identity" if len(shape) == 1 else "pca"
    if kind == "identity":
        return IdentityEmbedding(shape)
    if kind == "autoencoder":
        return AutoencoderEmbedding(shape, dim, seed=seed, epochs=learned_options.get("epochs", 10),
                                    width=learned_options.get("width", 32))
    if kind == "manifold":
        return ManifoldEmbedding(shape, dim, learned_options.get("manifold_dim", 10), seed=seed,
                                 epochs=learned_options.get("epochs", 10), width=learned_options.get("width", 32))
    if kind == "contrastive":
        return ContrastiveEmbedding(shape, dim, learned_options.get("manifold_dim", 10), seed=seed,
                                    epochs=learned_options.get("epochs", 10), width=learned_options.get("width", 32),
                                    views=VIEW_PRESETS[learned_options.get("views", "digits")])
    return PCAEmbedding(shape, dim, whiten=whiten, seed=seed)
