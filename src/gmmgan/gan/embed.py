"""Embeddings of real data that a Gaussian mixture is fitted in (docs/protocols.md, section 'Latent priors').

An embedding maps data samples of shape (N, *shape) to vectors (N, dim) with :meth:`encode` and,
where it can, vectors back to samples with :meth:`decode`:

- :class:`IdentityEmbedding`: the data itself, flattened (2-D points).
- :class:`PCAEmbedding`: principal components of flattened images, computed with torch, optionally
  whitened so that every coordinate has unit variance (a good scale for a generator's input).
- :class:`ModuleEmbedding`: any encoder ``nn.Module`` (and an optional decoder).
- :class:`gmmgan.gan.autoencoder.AutoencoderEmbedding`: a convolutional autoencoder trained on the
  images (``learned``: its weights are worth keeping and reusing, see :mod:`gmmgan.gan.embedding_file`).
- :class:`gmmgan.gan.manifold_embedding.ManifoldEmbedding`: the autoencoder's codes mapped to a
  UMAP-style manifold, made for clustering (N2D).

Embeddings are ``nn.Module`` s whose fitted quantities are buffers, so they travel with a prior's
``state_dict`` into checkpoints and generator snapshots.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = [
    "Embedding",
    "IdentityEmbedding",
    "ModuleEmbedding",
    "PCAEmbedding",
]



class ResizableBuffersMixin:
    """``load_state_dict`` that accepts buffers of a new shape (fitted sizes are unknown before fit).

    A fitted module (PCA, a fitted mixture) is built with empty buffers and learns their shapes in
    ``fit``; a module rebuilt for loading has not been fitted, so its buffers take the saved shapes.
    """

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for name, buf in list(self._buffers.items()):
            key = prefix + name
            if buf is not None and key in state_dict and state_dict[key].shape != buf.shape:
                self._buffers[name] = torch.empty_like(state_dict[key], device=buf.device, dtype=buf.dtype)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class Embedding(ResizableBuffersMixin, nn.Module):
    """Base class: ``fit(x)``, ``encode(x) -> (N, dim)``, ``decode(e) -> (N, *shape)``.

    Parameters
    ----------
    shape : tuple of int
        Shape of one data sample, e.g. (2,) or (1, 28, 28).
    """

    # A learned embedding is trained by gmmgan (minutes, not a closed form): the run folder keeps its
    # weights so that other runs can reuse them (prior.embed_from).
    learned = False
    kind = "module"  # prior.embed's name for it

    def __init__(self, shape: tuple[int, ...]):
        super().__init__()
        self.shape = tuple(int(s) for s in shape)
        self.n_features = math.prod(self.shape)

    @property
    def fitted(self) -> bool:
        """Whether :meth:`fit` (or a loaded state) has given the embedding what ``encode`` needs."""
        return True

    def architecture(self) -> dict:
        """What a saved state needs to load into this embedding (checked by :mod:`gmmgan.gan.embedding_file`)."""
        return {"kind": self.kind, "dim": self.dim, "shape": list(self.shape)}

    @property
    def dim(self) -> int:
        """Size of an embedding vector."""
        raise NotImplementedError

    def fit(self, x: torch.Tensor) -> Embedding:
        """Learn the embedding from data samples ``x`` of shape (N, *shape); returns self."""
        self._check_input(x)
        return self

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def fit_encode(self, x: torch.Tensor, **fit_options) -> torch.Tensor:
        """``fit(x)``, then the codes of ``x`` (an embedding may know its training data's codes better)."""
        self.fit(x, **fit_options)
        return self.encode(x)

    def decode(self, e: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    # Whether encode() is differentiable w.r.t. its input; an embedding with a manifold step (a
    # neighbour average) is not, and offers features() instead (component consistency reads them).
    differentiable = True

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Differentiable codes of ``x`` (N, F) from which the mixture's component can be read.

        ``encode(x)`` where that is differentiable; an embedding whose ``encode`` is not (a manifold
        step) returns the codes its layout is made from.
        """
        return self.encode(x)

    def stored_layout(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(features, codes) of the training rows an embedding with a manifold step keeps, else None.

        A reused embedding (``prior.embed_from``) fits the mixture on these: the training images'
        own layout coordinates, as the run that trained it did, not the blurrier neighbour averages
        ``encode`` gives (:meth:`gmmgan.gan.priors.FittedGMMPrior.fit_embedding`).
        """
        return None

    def _check_input(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or tuple(x.shape[1:]) != self.shape:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"expected samples of shape (N, {', '.join(map(str, self.shape))}), got {got}.")
        return x.reshape(x.shape[0], -1)

    def _check_code(self, e: torch.Tensor) -> None:
        if e.ndim != 2 or e.shape[1] != self.dim:
            raise ValueError(f"expected embeddings of shape (N, {self.dim}), got {tuple(e.shape)}.")


class IdentityEmbedding(Embedding):
    """The data itself, flattened: ``encode`` = reshape to (N, prod(shape)), ``decode`` = reshape back."""

    kind = "identity"

    @property
    def dim(self) -> int:
        return self.n_features

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self._check_input(x)

    def decode(self, e: torch.Tensor) -> torch.Tensor:
        self._check_code(e)
        return e.reshape(e.shape[0], *self.shape)


class PCAEmbedding(Embedding):
    """Principal component analysis of flattened samples, in torch (any device).

    ``encode(x) = (flatten(x) - mean) @ components / scale``; ``decode`` inverts it onto the
    principal subspace (the PCA reconstruction).

    Parameters
    ----------
    shape : tuple of int
        Shape of one sample.
    n_components : int
        Embedding dimension (e.g. 32-64 for 28 px images); at most min(N, prod(shape)).
    whiten : bool, default=True
        Divide each coordinate by its standard deviation, so embeddings have unit variance.
    seed : int, default=0
        Seeds the randomised SVD used for large data (the global RNG is left alone).

    Attributes (buffers, filled by :meth:`fit`)
    ----------
    mean : Tensor (n_features,)
    components : Tensor (n_features, n_components), orthonormal columns, sign fixed so the largest
        entry of each column is positive (deterministic across SVD routines)
    scale : Tensor (n_components,), standard deviations if ``whiten`` else ones
    explained_variance : Tensor (n_components,)
    """

    kind = "pca"
    # Above this many entries the exact SVD is replaced by a randomised one (torch.pca_lowrank).
    EXACT_SVD_MAX_ENTRIES = 50_000_000

    def __init__(self, shape: tuple[int, ...], n_components: int, whiten: bool = True, seed: int = 0):
        super().__init__(shape)
        if not isinstance(n_components, int) or isinstance(n_components, bool) or n_components < 1:
            raise ValueError(f"n_components must be a positive int, got {n_components!r}.")
        if n_components > self.n_features:
            raise ValueError(
                f"n_components={n_components} exceeds the data dimension {self.n_features}; use at most that."
            )
        self.n_components, self.whiten, self.seed = n_components, bool(whiten), int(seed)
        for name in ("mean", "components", "scale", "explained_variance"):
            self.register_buffer(name, torch.empty(0))

    @property
    def dim(self) -> int:
        return self.n_components

    @property
    def fitted(self) -> bool:
        return self.components.numel() > 0

    @torch.no_grad()
    def fit(self, x: torch.Tensor) -> PCAEmbedding:
        flat = self._check_input(x).float()
        n, d = flat.shape
        if n < 2 or self.n_components > min(n, d):
            raise ValueError(
                f"PCA with n_components={self.n_components} needs at least {self.n_components} samples "
                f"(got {n}); use fewer components or more data."
            )
        if not bool(torch.isfinite(flat).all()):
            raise ValueError("PCA data contain NaN or infinite values; remove or fix those samples first.")
        mean = flat.mean(0)
        centred = flat - mean
        if n * d <= self.EXACT_SVD_MAX_ENTRIES:
            _, s, vh = torch.linalg.svd(centred, full_matrices=False)
            v, s = vh[: self.n_components].T, s[: self.n_components]
        else:
            devices = [centred.device] if centred.device.type == "cuda" else []
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(self.seed)
                _, s, v = torch.pca_lowrank(centred, q=min(self.n_components + 10, d, n), center=False, niter=4)
            v, s = v[:, : self.n_components], s[: self.n_components]
        # SVD signs are arbitrary; fix them so the same data always give the same embedding.
        idx = v.abs().argmax(0)
        signs = torch.sign(v[idx, torch.arange(v.shape[1], device=v.device)])
        v = v * torch.where(signs == 0, torch.ones_like(signs), signs)
        var = s.square() / (n - 1)
        self.mean, self.components, self.explained_variance = mean, v.contiguous(), var
        self.scale = var.sqrt().clamp_min(1e-8) if self.whiten else torch.ones_like(var)
        return self

    def _check_fitted(self) -> None:
        if not self.fitted:
            raise ValueError("this PCAEmbedding is not fitted yet; call fit(x) on real data first.")

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        self._check_fitted()
        flat = self._check_input(x)
        return ((flat.to(self.mean.dtype) - self.mean) @ self.components) / self.scale

    def decode(self, e: torch.Tensor) -> torch.Tensor:
        self._check_fitted()
        self._check_code(e)
        flat = (e.to(self.mean.dtype) * self.scale) @ self.components.T + self.mean
        return flat.reshape(e.shape[0], *self.shape)

    def extra_repr(self) -> str:
        return f"shape={self.shape}, n_components={self.n_components}, whiten={self.whiten}"


class ModuleEmbedding(Embedding):
    """Any encoder ``nn.Module`` (N, *shape) -> (N, dim), with an optional decoder for the warm start.

    Parameters
    ----------
    shape : tuple of int
    encoder : nn.Module
    dim : int
        The encoder's output size.
    decoder : nn.Module, optional
        (N, dim) -> (N, *shape); without it :meth:`decode` raises.
    """

    def __init__(self, shape: tuple[int, ...], encoder: nn.Module, dim: int, decoder: nn.Module | None = None):
        super().__init__(shape)
        self.encoder, self.decoder, self._dim = encoder, decoder, int(dim)

    @property
    def dim(self) -> int:
        return self._dim

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        e = self.encoder(x)
        self._check_code(e.reshape(e.shape[0], -1))
        return e.reshape(e.shape[0], -1)

    def decode(self, e: torch.Tensor) -> torch.Tensor:
        if self.decoder is None:
            raise ValueError("this embedding has no decoder; give ModuleEmbedding(decoder=...) or skip the warm start.")
        self._check_code(e)
        return self.decoder(e).reshape(e.shape[0], *self.shape)
