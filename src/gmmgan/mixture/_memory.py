"""Will a fit fit in memory? An estimate of its peak, the memory available, and an error that says what to try.

A fit whose parameters or E-step blocks do not fit fails deep inside torch, often after minutes of
work (and, on the CPU, with an allocator error that is no clear message at all). The fit instead
estimates its memory up front (:func:`fit_memory`) from the layout of :mod:`gmmgan.mixture._covariance`
and compares it with what the device has (:func:`available_memory`):

- parameters: the covariance-sized arrays of EM (state and best state in the compute dtype, the
  statistics, the M-step's float64 work), about 7 float64 copies of K*D*D (full), D*D (tied),
  K*D (diag) or K (spherical) numbers;
- the E-step block: (chunk_size, K, D) temporaries for full covariances, a few (chunk_size, K) ones
  otherwise;
- the worst-explained rows kept for re-seeding, at most the data.

The estimate is of the tensors a fit holds, calibrated on CPU fits (peak resident memory) to within
some 20%; allocator slack comes on top. Memory available is, on the CPU, the least of
/proc/meminfo's MemAvailable, the cgroup limit less the cgroup's usage, the address-space limit
(``ulimit -v``) less the process's size, and the physical memory (``os.sysconf``) where there is no
/proc; on CUDA, ``torch.cuda.mem_get_info``'s free memory plus what torch's cache holds unused.
Set ``GMMGAN_NO_MEMORY_CHECK=1`` to skip the check.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["FitMemory", "LIBRARY_SPELLING", "available_memory", "check_fit_memory", "fit_memory", "format_bytes",
           "spelled_as"]

SKIP_ENV = "GMMGAN_NO_MEMORY_CHECK"
_PARAM_COPIES = 7  # float64 covariance-sized arrays a fit holds at its peak (measured)
_FULL_BLOCK_COPIES = 1.25  # (chunk, K, D) temporaries of the full-covariance E-step (measured)
_FIXED = 32 << 20

# How the remedies are spelled: as estimator parameters, or (see spelled_as) as `gmmgan fit` options.
LIBRARY_SPELLING = {
    "k": "n_components={}", "diag": "covariance_type='diag'", "chunk": "chunk_size={}",
    "float32": "dtype='float32'", "auto": "fewer or smaller candidates (or one n_components)",
}
_SPELLING: contextvars.ContextVar[dict] = contextvars.ContextVar("gmmgan_memory_spelling", default=LIBRARY_SPELLING)


@contextlib.contextmanager
def spelled_as(spelling: dict):
    """Inside the block, memory errors name their remedies with ``spelling`` (keys of LIBRARY_SPELLING)."""
    token = _SPELLING.set({**LIBRARY_SPELLING, **spelling})
    try:
        yield
    finally:
        _SPELLING.reset(token)


@dataclass(frozen=True)
class FitMemory:
    """Estimated peak bytes of a fit, and its two main parts."""

    total: int
    parameters: int
    block: int


def _cov_elements(covariance_type: str, k: int, d: int) -> int:
    return {"full": k * d * d, "tied": d * d, "diag": k * d, "spherical": k}[covariance_type]


def fit_memory(n_samples: int, n_features: int, n_components: int, covariance_type: str, chunk_size: int,
               itemsize: int) -> FitMemory:
    """The estimated peak memory of an EM fit (bytes), on one device."""
    n, d, k, c, b = n_samples, n_features, n_components, min(chunk_size, n_samples), itemsize
    parameters = _PARAM_COPIES * 8 * (_cov_elements(covariance_type, k, d) + 2 * k * d + k)
    if covariance_type == "full":
        block = int(_FULL_BLOCK_COPIES * c * k * d * b) + 4 * c * k * 8
    else:
        block = 3 * c * k * b + 2 * c * d * b
    worst_rows = min(n, math.ceil(n / max(c, 1)) * min(k, c)) * d * b
    return FitMemory(parameters + block + worst_rows + _FIXED, parameters, block)


def format_bytes(n: float) -> str:
    """``n`` bytes in words: 16.8 GB, 510 MB, 3.2 MB."""
    unit, size = next(((u, s) for u, s in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)) if n >= s), ("kB", 1e3))
    value = n / size
    return f"{value:.0f} {unit}" if value >= 100 else f"{value:.1f} {unit}"


# ------------------------------------------------------------------------------ available memory
def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _stat_field(path: Path, key: str) -> int:
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key and value.strip().isdigit():
                return int(value)
    except OSError:
        pass
    return 0


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_available() -> int | None:
    """The memory limit of this process's cgroup less its usage (reclaimable file cache counts as free)."""
    root = Path("/sys/fs/cgroup")
    limit = _read_int(root / "memory.max")  # cgroup v2 ('max': no limit, not a number)
    if limit is not None:
        used = _read_int(root / "memory.current") or 0
        return max(limit - used + _stat_field(root / "memory.stat", "inactive_file"), 0)
    v1 = root / "memory"
    limit = _read_int(v1 / "memory.limit_in_bytes")
    if limit is not None and limit < (1 << 60):  # v1 writes a huge number for no limit
        used = _read_int(v1 / "memory.usage_in_bytes") or 0
        return max(limit - used + _stat_field(v1 / "memory.stat", "total_inactive_file"), 0)
    return None


def _address_space_available() -> int | None:
    """``ulimit -v`` less the process's current virtual size."""
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    except (ImportError, OSError, ValueError, AttributeError):
        return None
    if soft == resource.RLIM_INFINITY or soft < 0:
        return None
    size = 0
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmSize:"):
                size = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return max(soft - size, 0)


def _physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def available_memory(device) -> int | None:
    """Bytes a fit on ``device`` (a torch.device) can still allocate, or None where it cannot be told."""
    if device.type == "cuda":
        import torch

        try:
            free, _ = torch.cuda.mem_get_info(device)
            cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        except (RuntimeError, AssertionError):
            return None
        return int(free + max(cached, 0))
    if device.type != "cpu":
        return None
    meminfo = _meminfo_available()
    known = [v for v in (meminfo, _cgroup_available(), _address_space_available()) if v is not None]
    if meminfo is None and (physical := _physical_memory()) is not None:  # no /proc (macOS): an upper bound
        known.append(physical)
    return min(known) if known else None


# ----------------------------------------------------------------------------------- the check
def _largest_k(fits, k: int) -> int:
    """The largest K' < k for which ``fits(K')`` holds (0 if none), by bisection."""
    lo, hi = 0, k
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo


def _either(options: list[str]) -> str:
    """'a', 'a or b', 'a, b, or c'."""
    if len(options) <= 2:
        return " or ".join(options)
    return ", ".join(options[:-1]) + ", or " + options[-1]


def check_fit_memory(*, n_samples: int, n_features: int, n_components: int, covariance_type: str,
                     chunk_size: int, itemsize: int, device, default_chunk=None, what: str | None = None,
                     auto: bool = False) -> FitMemory:
    """Raise MemoryError, before any work, if the fit's estimated memory exceeds what ``device`` has.

    ``chunk_size`` is the fit's rows per block; ``default_chunk(k)``, where given, the chunk size a
    fit of ``k`` components would get instead (the default one; None: the same). The message suggests, spelled as
    :func:`spelled_as` says (default: as estimator parameters), what would fit: fewer components
    (fewer candidates for ``auto``, n_components='auto'), diagonal covariances, a smaller chunk
    size, float32. ``what`` names the fit. Returns the estimate.
    """
    spelling = _SPELLING.get()

    def chunk(k):
        return chunk_size if default_chunk is None or k == n_components else default_chunk(k)

    def estimate(k=n_components, cov=covariance_type, size=None, b=itemsize):
        return fit_memory(n_samples, n_features, k, cov, size if size is not None else chunk(k), b)

    need = estimate()
    if os.environ.get(SKIP_ENV, "").strip() not in ("", "0"):
        return need
    have = available_memory(device)
    if have is None or need.total <= have:
        return need

    def fits(**kw):
        return estimate(**kw).total <= have

    tries = []
    k_ok = _largest_k(lambda k: fits(k=k), n_components)
    if auto:
        tries.append(spelling["auto"])
    elif k_ok >= 1:
        tries.append(f"fewer components ({spelling['k'].format(k_ok)} or less would fit)")
    else:
        tries.append("fewer components")
    if covariance_type in ("full", "tied"):
        diag = estimate(cov="diag").total
        if diag <= have:
            tries.append(f"{spelling['diag']} (about {format_bytes(diag)})")
    c = min(chunk(n_components), n_samples)
    if need.block > need.total / 4 and c > 1:
        small = _largest_k(lambda s: fits(size=s), c)  # the largest chunk size that fits
        if small >= 1:
            tries.append(f"a smaller chunk size ({spelling['chunk'].format(small)})")
    if itemsize > 4 and (f32 := estimate(b=4).total) <= have:
        tries.append(f"{spelling['float32']} (about {format_bytes(f32)})")
    where = "on the GPU" if device.type == "cuda" else "in memory"
    subject = what or (f"a {n_components}-component {covariance_type}-covariance fit of "
                       f"{n_samples:,} x {n_features} data")
    raise MemoryError(
        f"Not enough memory for {subject}: it needs about {format_bytes(need.total)} (parameters {format_bytes(need.parameters)}, "
        f"E-step blocks of {c:,} rows {format_bytes(need.block)}), but only {format_bytes(have)} is available "
        f"{where}; try {_either(tries)}. To try anyway, set {SKIP_ENV}=1."
    )
