"""Input handling for the mixture estimators: validation, dtype/device choice and chunked reading.

A fit reads its data through a :class:`DataSource`, which hands out row blocks already on the
compute device and in the compute dtype. Data that is in memory (a numpy array or a torch tensor)
is converted once and sliced; a memory-mapped ``.npy`` file or a re-iterable of chunks is read
block by block on every pass, so memory does not grow with the number of rows. Host data bound
for a GPU that it does not fit on is streamed too: each block is staged in pinned memory and
copied on a side stream one block ahead, so the copy of block i+1 overlaps the compute on block i
(:mod:`gmmgan.mixture._transfer`).

Across processes (torch.distributed) each rank's DataSource holds its own shard and carries a
:class:`Shard` (where its rows sit in the global data); :func:`summarize` then reduces over ranks.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from gmmgan import _device
from gmmgan import distributed as gdist
from gmmgan._files import load_npy
from gmmgan.mixture._passes import Checksum, check_pass, chunks_changed, n_rows
from gmmgan.mixture._transfer import _to_tensor, device_blocks, is_tensor

# In-memory host data (numpy / CPU tensor) is copied to the GPU once when it takes at most this
# fraction of the device's free memory; larger data is streamed from host memory block by block.
DEVICE_MEMORY_FRACTION = 0.5

_FLOAT_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def resolve_dtype(dtype, X=None) -> torch.dtype:
    """The compute dtype: the ``dtype`` parameter, else the input's float dtype, else float64."""
    if dtype is not None:
        if isinstance(dtype, str) and dtype in _FLOAT_DTYPES:
            return _FLOAT_DTYPES[dtype]
        if dtype in (torch.float32, np.float32):
            return torch.float32
        if dtype in (torch.float64, np.float64, float):
            return torch.float64
        raise ValueError(f"dtype must be 'float32', 'float64' or None, got {dtype!r}.")
    if is_tensor(X) and X.dtype in (torch.float32, torch.float64):
        return X.dtype
    if isinstance(X, np.ndarray) and X.dtype in (np.float32, np.float64):
        return torch.float32 if X.dtype == np.float32 else torch.float64
    return torch.float64


def inference_dtype(model_dtype: torch.dtype, X, dtype=None) -> torch.dtype:
    """The precision to score ``X`` in: the model's, promoted by in-memory data's own dtype.

    As numpy's promotion does in scikit-learn, a float32 model scores float64 data (and integer
    arrays or lists, which become float64) in float64; float32 data, streamed data (files,
    chunks) and an explicit ``dtype`` parameter keep the model's precision.
    """
    in_memory = is_tensor(X) or isinstance(X, np.ndarray) or (isinstance(X, list) and not (X and _looks_like_chunk(X[0])))
    if dtype is not None or not in_memory:
        return model_dtype
    return torch.promote_types(model_dtype, resolve_dtype(None, X))


def resolve_device(device, X=None) -> torch.device:
    """The compute device: the ``device`` parameter, else the input tensor's device, else CPU.

    ``device`` is a name ('auto', 'cpu', 'cuda', 'cuda:N'), a ``torch.device``, or a bare int (a
    CUDA index, as in torch); all follow the one rule of :mod:`gmmgan._device`: gmmgan computes on
    the CPU or on CUDA GPUs.
    """
    if device is None:
        return X.device if is_tensor(X) else torch.device("cpu")
    name = None
    if isinstance(device, str):
        name = device
    elif isinstance(device, torch.device):
        name = "cpu" if device.type == "cpu" else str(device)
    elif isinstance(device, numbers.Integral) and not isinstance(device, bool):
        name = f"cuda:{int(device)}" if device >= 0 else None
    problem = "unknown" if name is None else _device.device_name_problem(name)
    if problem is not None:
        reason = " (a PyTorch device gmmgan does not compute on)" if problem == "unsupported" else ""
        raise ValueError(f"device must be 'cpu', 'cuda', 'cuda:N', 'auto' or a torch.device of one of them, "
                         f"got {device!r}{reason}.")
    return _device.resolve_device(name, spelling="device='{}'")


def _check_block(block: torch.Tensor, row_offset: int, name: str) -> None:
    finite = torch.isfinite(block)
    if not bool(finite.all()):
        row = int(torch.nonzero(~finite.all(1))[0, 0]) + row_offset
        raise ValueError(
            f"{name} contains NaN or infinity (first at row {row}). Remove or impute those rows "
            "first, e.g. X = X[np.isfinite(X).all(axis=1)]."
        )


def _check_2d_shape(shape, name: str) -> None:
    if len(shape) == 1:
        raise ValueError(
            f"Expected 2-D data of shape (n_samples, n_features), got a 1-D array of shape "
            f"{tuple(shape)}. Reshape your data with X.reshape(-1, 1) if it is a single feature or "
            "X.reshape(1, -1) if it is a single sample."
        )
    if len(shape) != 2:
        raise ValueError(
            f"Expected 2-D data of shape (n_samples, n_features), got shape {tuple(shape)}."
        )
    if shape[0] == 0 or shape[1] == 0:
        what = "sample" if shape[0] == 0 else "feature"  # in scikit-learn's words
        raise ValueError(
            f"{name} is empty: 0 {what}(s) (shape={tuple(shape)}) while a minimum of 1 is required; "
            "pass at least one sample with at least one feature."
        )


@dataclass(frozen=True)
class Shard:
    """Where one rank's rows sit in the global data: rows ``[offset, offset + n_samples)`` of ``n_total``.

    The global data set is the concatenation of the ranks' shards in rank order (as
    :func:`gmmgan.distributed.shard_range` cuts it).
    """

    offset: int
    n_total: int


@dataclass
class DataSource:
    """Rows of a data set, handed out in blocks on the compute device and dtype.

    Attributes
    ----------
    n_samples, n_features : int
    device : torch.device
    dtype : torch.dtype
    chunk_size : int
        Rows per block (the last block may be shorter).
    output_kind : {'numpy', 'torch'}
        The kind of array results computed from this data are returned as.
    resident : Tensor of shape (n_samples, n_features) or None
        The whole data set on the device when it is held in memory.
    shard : Shard or None
        Set when this is one rank's part of data spread over processes (see :func:`shard_source`).
    """

    n_samples: int
    n_features: int
    device: torch.device
    dtype: torch.dtype
    chunk_size: int
    output_kind: str
    output_device: torch.device
    resident: torch.Tensor | None = None
    _host: object = None  # an array-like read by slices (memmap), or a re-iterable of chunks
    shard: Shard | None = None
    # A re-iterable of chunks: (rows, checksum) of its first pass, and the passes read so far.
    _first_pass: tuple | None = None
    _passes: int = 1

    @property
    def n_global(self) -> int:
        """Rows over all ranks (``n_samples`` in one process)."""
        return self.shard.n_total if self.shard is not None else self.n_samples

    def chunks(self) -> Iterator[torch.Tensor]:
        if self.resident is not None:
            for start in range(0, self.n_samples, self.chunk_size):
                yield self.resident[start : start + self.chunk_size]
        elif hasattr(self._host, "shape"):
            host = self._host
            starts = range(0, self.n_samples, self.chunk_size)
            yield from device_blocks((host[s : s + self.chunk_size] for s in starts), self.device, self.dtype)
        else:
            self._passes += 1
            rows, checksum = 0, Checksum()
            for chunk in self._host:
                rows += n_rows(chunk)
                if self._first_pass is not None and rows > self._first_pass[0]:
                    chunks_changed(f"pass 1 had {self._first_pass[0]:,} rows, pass {self._passes} has more")
                checksum.add(chunk)
                block = _to_tensor(chunk, self.device, self.dtype)
                if block.ndim == 1 and self.n_features == 1:
                    block = block.unsqueeze(1)
                if block.ndim != 2 or block.shape[1] != self.n_features:
                    raise ValueError(
                        f"Every chunk must have shape (rows, {self.n_features}); got a chunk of "
                        f"shape {tuple(block.shape)}."
                    )
                # Large user chunks are split so memory per block stays bounded.
                for start in range(0, block.shape[0], self.chunk_size):
                    yield block[start : start + self.chunk_size]
            check_pass(self._first_pass, self._passes, rows, checksum)

    def to_output(self, tensor: torch.Tensor):
        """Convert a result to the kind (numpy or torch, device) of the input data."""
        if self.output_kind == "numpy":
            return tensor.detach().cpu().numpy()
        return tensor.to(self.output_device)


def _fits_on_device(X, device: torch.device, dtype: torch.dtype) -> bool:
    """Whether host data ``X`` should be copied to ``device`` once instead of streamed."""
    if device.type != "cuda" or (is_tensor(X) and X.device.type == "cuda"):
        return True
    itemsize = torch.tensor([], dtype=dtype).element_size()
    nbytes = int(np.prod(X.shape)) * itemsize
    free, _ = torch.cuda.mem_get_info(device)
    return nbytes <= DEVICE_MEMORY_FRACTION * free


def default_chunk_size(
    n_components: int, n_features: int, device: torch.device, itemsize: int, covariance_type: str = "full"
) -> int:
    """Rows per E-step block so that the largest temporaries stay small.

    Those are (rows, K, D) for full covariances and (rows, K) plus (rows, D) otherwise. On the
    CPU a block that fits in the last-level cache is fastest; on a GPU larger blocks keep the
    device busy with fewer launches.
    """
    budget = (1 << 30) if device.type == "cuda" else (8 << 20)
    d = max(n_features, 1)
    width = n_components * d if covariance_type == "full" else 2 * (n_components + d)
    per_row = max(1, width * itemsize)
    return int(min(max(budget // per_row, 256), 1 << 20))


def make_source(
    X, *, device, dtype, chunk_size, n_components, n_features=None, name="X", covariance_type="full", owner="the model"
) -> DataSource:
    """Wrap ``X`` (array, tensor, path to .npy, memmap or re-iterable of chunks) as a DataSource.

    ``n_features`` (when given) is the number of features the model was fitted with; a mismatch
    is a ValueError naming ``owner`` (the estimator's class name). In-memory data is checked for shape (2-D, non-empty) here and, when it is
    held on the device, for NaN/infinity too; streamed data (files, chunks, and in-memory data
    too large for the GPU) is checked block by block as it is read (:func:`summarize` in a fit,
    ``_Shifted.checked_chunks`` in inference).
    """
    if isinstance(X, (str, os.PathLike)):
        path = Path(X)
        if not path.exists():
            raise FileNotFoundError(f"Data file {str(path)!r} does not exist.")
        if path.suffix != ".npy":
            raise ValueError(
                f"Only .npy files can be read directly (got {str(path)!r}); load other formats "
                "yourself and pass an array."
            )
        X = load_npy(path)
    if _is_sparse(X):
        raise TypeError(
            f"Sparse data was passed for {name}, but dense data is required (a Gaussian mixture's "
            "means and covariances are dense). Use X.toarray() to convert it to a dense numpy array."
        )
    dev = resolve_device(device, X if is_tensor(X) else None)
    streamed = isinstance(X, np.memmap) or not (is_tensor(X) or hasattr(X, "__array__") or isinstance(X, (list, tuple)))
    if isinstance(X, (list, tuple)) and len(X) > 0 and _looks_like_chunk(X[0]):
        streamed = True  # a list of 2-D blocks
    if not streamed:
        kind = "torch" if is_tensor(X) else "numpy"
        out_dev = X.device if is_tensor(X) else torch.device("cpu")
        dt = resolve_dtype(dtype, X)
        if not is_tensor(X):
            try:
                X = np.asarray(X)
            except ValueError as e:  # ragged nested lists
                raise ValueError(
                    f"{name} is not a rectangular array ({str(e).splitlines()[0]}); every row must have "
                    "the same number of features."
                ) from None
            X = _as_real_numbers(X, name)
        _check_2d_shape(tuple(X.shape), name)
        if not _fits_on_device(X, dev, dt):  # larger than the GPU: stream it from host memory
            _check_n_features(X.shape[1], n_features, name, owner)
            size = chunk_size or default_chunk_size(n_components, X.shape[1], dev, torch.tensor([], dtype=dt).element_size(), covariance_type)
            return DataSource(X.shape[0], X.shape[1], dev, dt, int(size), kind, out_dev, _host=X)
        data = _to_tensor(X, dev, dt)
        _check_n_features(data.shape[1], n_features, name, owner)
        _check_block(data, 0, name)
        size = chunk_size or default_chunk_size(n_components, data.shape[1], dev, data.element_size(), covariance_type)
        return DataSource(data.shape[0], data.shape[1], dev, dt, int(size), kind, out_dev, resident=data)
    if isinstance(X, np.memmap) or (hasattr(X, "shape") and hasattr(X, "__getitem__")):
        _check_2d_shape(tuple(X.shape), name)
        dt = resolve_dtype(dtype, X)
        _check_n_features(X.shape[1], n_features, name, owner)
        size = chunk_size or default_chunk_size(n_components, X.shape[1], dev, torch.tensor([], dtype=dt).element_size(), covariance_type)
        return DataSource(X.shape[0], X.shape[1], dev, dt, int(size), "numpy", torch.device("cpu"), _host=X)
    return _iterable_source(X, dev, dtype, chunk_size, n_components, n_features, name, covariance_type, owner)


def _is_sparse(X) -> bool:
    """Whether ``X`` is a scipy.sparse matrix/array (told without importing scipy)."""
    return type(X).__module__.startswith("scipy.sparse")


def _as_real_numbers(X: np.ndarray, name: str) -> np.ndarray:
    """Numbers held as Python objects converted to float64, as scikit-learn does; complex data refused.

    Any other dtype is returned as is (non-numeric dtypes are refused when converted to a tensor).
    """
    if X.dtype.kind == "c":
        raise ValueError(f"Complex data not supported: {name} has dtype {X.dtype}; pass real-valued features.")
    if X.dtype != object:
        return X
    try:
        return X.astype(np.float64)
    except (TypeError, ValueError) as e:  # the type numpy chose: TypeError for a dict, ValueError for 'abc'
        raise type(e)(
            f"{name} holds Python objects that are not numbers ({e}); pass an array of numbers."
        ) from None


def _looks_like_chunk(item) -> bool:
    shape = getattr(item, "shape", None)
    return shape is not None and len(shape) == 2


def _check_n_features(got: int, expected, name: str, owner: str = "the model") -> None:
    if expected is not None and got != expected:
        raise ValueError(  # scikit-learn's words, then ours
            f"{name} has {got} features, but {owner} is expecting {expected} features as input "
            f"(this model was fitted with {expected} features)."
        )


def _iterable_source(X, dev, dtype, chunk_size, n_components, n_features, name, covariance_type, owner) -> DataSource:
    if not isinstance(X, Iterable):
        raise ValueError(  # noqa: TRY004 - the CLI reports ValueErrors as bad input
            f"Cannot read data from an object of type {type(X).__name__}; pass a numpy array, a "
            "torch tensor, a path to a .npy file, or a re-iterable of 2-D chunks."
        )
    if iter(X) is X:
        raise ValueError(
            "An iterator or generator can only be read once, but EM reads the data on every "
            "iteration. Pass a list of chunks, or an object whose __iter__ starts a new pass "
            "(e.g. a class with __iter__ returning a fresh generator)."
        )
    n, d, kind, dt = 0, None, None, None
    checksum = Checksum(magnitudes=True)
    for i, chunk in enumerate(X):
        c_kind = "torch" if is_tensor(chunk) else "numpy"
        shape = tuple(chunk.shape) if hasattr(chunk, "shape") else np.shape(chunk)
        if len(shape) != 2:
            raise ValueError(f"Chunk {i} has shape {shape}; every chunk must be 2-D (rows, features).")
        if d is None:
            d, kind = shape[1], c_kind
            dt = resolve_dtype(dtype, chunk)
        elif shape[1] != d:
            raise ValueError(f"Chunk {i} has {shape[1]} features but chunk 0 has {d}; all chunks must agree.")
        n += shape[0]
        checksum.add(chunk)
    if d is None or n == 0:
        raise ValueError(f"{name} is an empty iterable: it yielded no rows.")
    _check_n_features(d, n_features, name, owner)
    size = chunk_size or default_chunk_size(n_components, d, dev, torch.tensor([], dtype=dt).element_size(), covariance_type)
    return DataSource(n, d, dev, dt, int(size), kind, dev if kind == "torch" else torch.device("cpu"), _host=X,
                      _first_pass=(n, checksum))



@dataclass
class Summary:
    """First-pass facts about the data: validated, with per-feature mean and variance (float64).

    Over all ranks' rows when the source is a shard.
    """

    mean: torch.Tensor
    var: torch.Tensor


def shard_source(source: DataSource, name: str = "X") -> DataSource:
    """``source`` marked as this rank's shard of data spread over the process group.

    Every rank must call it (one collective: each rank's row and feature counts). Without a
    process group it returns ``source`` unchanged. All ranks must agree on the number of
    features and hold at least one row each.
    """
    if not gdist.is_distributed():
        return source
    dev = gdist.comm_device()
    counts = gdist.all_gather_cat(torch.tensor([[source.n_samples, source.n_features]], device=dev)).cpu()
    if len(set(counts[:, 1].tolist())) != 1:
        raise ValueError(
            f"The ranks' shards of {name} have different numbers of features {counts[:, 1].tolist()} "
            "(rank order); every rank must pass rows of the same data set."
        )
    offset = int(counts[: gdist.rank(), 0].sum())
    return replace(source, shard=Shard(offset=offset, n_total=int(counts[:, 0].sum())))


def summarize(source: DataSource, name: str = "X") -> Summary:
    """One pass over the data: check every block is finite and compute feature means/variances.

    Streamed data is only validated here, so every fit starts with this pass. For a shard the
    per-rank (rows, mean, variance) are gathered and combined in rank order (Chan et al.'s
    pairwise formula), so every rank gets the same global values.
    """
    total = torch.zeros(source.n_features, dtype=torch.float64, device=source.device)
    total_sq = torch.zeros_like(total)
    offset = 0
    shift = None
    for block in source.chunks():
        if source.resident is None:
            _check_block(block, offset, name)
        b = block.to(torch.float64)
        if shift is None:
            shift = b.mean(0)  # accumulate around the first block's mean for accuracy
        b = b - shift
        total += b.sum(0)
        total_sq += b.square().sum(0)
        offset += block.shape[0]
    mean = total / offset
    var = (total_sq / offset - mean.square()).clamp_min(0.0)
    mean = mean + shift
    if source.shard is None:
        return Summary(mean=mean, var=var)
    dev = gdist.comm_device()
    part = torch.cat([mean.new_tensor([offset]), mean, var]).to(dev).unsqueeze(0)
    parts = gdist.all_gather_cat(part).to(source.device)
    n_r, mean_r, var_r = parts[:, 0], parts[:, 1 : 1 + source.n_features], parts[:, 1 + source.n_features :]
    n = n_r.sum()
    g_mean = (n_r.unsqueeze(1) * mean_r).sum(0) / n
    g_var = (n_r.unsqueeze(1) * (var_r + (mean_r - g_mean).square())).sum(0) / n
    return Summary(mean=g_mean, var=g_var)
