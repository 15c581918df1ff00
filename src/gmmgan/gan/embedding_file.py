"""A learned embedding's weights on disk: ``RUN/embedding.safetensors``, and its reuse by other runs.

Training an autoencoder costs more than fitting the mixture in it, and a 10-seed table is fairer
when every seed's prior sits in the same embedding; so a run keeps its learned embedding in its
folder, and ``prior.embed_from`` makes another run of the same data load it instead of training one.
The file records what it was trained on (the data set's definition and the sample shape) and how it
was built (kind, code size, width), and a run refuses an embedding of other data or another
architecture before training starts.

Stacked MNIST draws its training set from the seed, so the data's *definition* (name, sizes,
options; an image folder's path), not its exact samples, is what must match.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gmmgan._files import atomic_write
from gmmgan.gan.embed import Embedding

__all__ = ["EMBEDDING_NAME", "data_identity", "load_embedding", "save_embedding"]

EMBEDDING_NAME = "embedding.safetensors"
_FORMAT = "gmmgan-embedding"


def data_identity(data_cfg, shape) -> dict[str, Any]:
    """What makes two runs' training data "the same data" for an embedding (not the seed, not where MNIST lies)."""
    identity = {"name": data_cfg.name, "shape": [int(s) for s in shape]}
    for key in ("n", "resolution", "per_class", "channels"):
        value = getattr(data_cfg, key, None)
        if value is not None:
            identity[key] = value
    if data_cfg.name == "folder":  # the folder *is* the data set
        identity["folder"] = str(Path(data_cfg.root).resolve()) if data_cfg.root else None
    if data_cfg.name not in ("mnist-limited", "fashion-mnist-limited"):
        identity.pop("per_class", None)
    return identity


def save_embedding(path: str | Path, embedding: Embedding, identity: dict[str, Any], **extra) -> Path:
    """Write ``embedding``'s state and what it was trained on (``identity``, :func:`data_identity`)."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in embedding.state_dict().items()}
    meta = {**embedding.architecture(), "data": identity, **extra}
    header = {"format": _FORMAT, "version": "1", "metadata": json.dumps(meta)}
    return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=header))


def _resolve(source: str | Path) -> Path:
    path = Path(source)
    if path.is_dir():
        if (path / EMBEDDING_NAME).is_file():
            return path / EMBEDDING_NAME
        seeds = sorted(p.parent for p in path.glob(f"seed-*/{EMBEDDING_NAME}"))
        hint = (f" It is a seed sweep's folder: give one seed's, e.g. {seeds[0]}." if seeds else
                " Give the folder of a run that trained a learned embedding (prior.embed=autoencoder).")
        raise FileNotFoundError(f"prior.embed_from: '{path}' holds no {EMBEDDING_NAME}.{hint}")
    if not path.is_file():
        raise FileNotFoundError(f"prior.embed_from: '{path}' does not exist; give a run folder or its "
                                f"{EMBEDDING_NAME}.")
    return path


def load_embedding(source: str | Path, embedding: Embedding, identity: dict[str, Any]) -> Path:
    """Load the embedding saved at ``source`` (a run folder or the file) into ``embedding``; returns the file.

    Raises
    ------
    FileNotFoundError
        ``source`` has no embedding file.
    ValueError
        The file is corrupt, or was trained on other data or with another architecture than
        ``embedding`` and ``identity`` describe.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    path = _resolve(source)
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
        tensors = load_file(str(path))
        meta = json.loads(header["metadata"]) if header.get("format") == _FORMAT else {}
    except (SafetensorError, OSError, ValueError, KeyError) as e:
        raise ValueError(f"prior.embed_from: '{path}' is corrupt or truncated ({e}); train a new embedding "
                         "(drop prior.embed_from) or point to another run's.") from None
    if not meta:
        raise ValueError(f"prior.embed_from: '{path}' is not a gmmgan embedding file.")
    if meta.get("data") != identity:
        raise ValueError(f"prior.embed_from: '{path}' was trained on other data ({_describe(meta.get('data'))}); "
                         f"this run's data are {_describe(identity)}. Drop prior.embed_from to train one for "
                         "these data, or point to a run of the same data.")
    wanted = embedding.architecture()  # what must agree for the saved weights to load
    differ = [k for k in wanted if meta.get(k) != wanted[k]]
    if differ:
        saved = ", ".join(f"{k}={meta.get(k)}" for k in differ)
        asked = ", ".join(f"{k}={wanted[k]}" for k in differ)
        raise ValueError(f"prior.embed_from: '{path}' holds an embedding with {saved}, but this config asks for "
                         f"{asked}; set prior.embed / embed_dim / embed_width / embed_manifold_dim as that run did, or drop embed_from.")
    embedding.load_state_dict(tensors)
    return path


def _describe(identity) -> str:
    if not isinstance(identity, dict):
        return "unknown data"
    return ", ".join(f"{k} {v}" for k, v in identity.items())
