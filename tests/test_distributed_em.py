"""GaussianMixture.fit across processes: 2 CPU ranks (gloo) fitting their shards equal one process.

Each test starts its ranks once (spawn) and runs all its cases in them: starting a process that
imports torch costs seconds, the fits themselves milliseconds.
"""

import contextlib
import multiprocessing
import os
import time
import traceback
import warnings

import numpy as np
import pytest
import torch
from _helpers import free_port

from gmmgan import BayesianGaussianMixture, GaussianMixture
from gmmgan import distributed as gdist
from gmmgan.mixture import _data_source, _transfer

WORLD = 2
# (covariance_type, init_params, dtype): each sharded fit is compared with one process's fit.
CASES = [
    ("full", "k-means++", "float64"),
    ("diag", "k-means++", "float64"),
    ("tied", "kmeans", "float64"),
    ("spherical", "random", "float64"),
    ("full", "random_from_data", "float64"),
    ("full", "k-means++", "float32"),
]
PARAMS = ("weights_", "means_", "covariances_", "precisions_cholesky_")


def _data_set(n=601, seed=0):
    """Four anisotropic blobs in 3-D plus an outlier (odd n: the shards differ in size)."""
    rng = np.random.default_rng(seed)
    centers = np.array([[0, 0, 0], [6, 0, 1], [0, 6, -1], [5, 5, 5]], dtype=float)
    X = np.concatenate([c + rng.normal(size=(150, 3)) * [1.0, 0.5, 2.0] for c in centers])
    return np.concatenate([X, [[30.0, -30.0, 30.0]]])[:n]


def _estimator(cov, init, dtype, **kw):
    # float32 lower bounds differ by rounding between summation orders: a tol far above it.
    tol = 1e-6 if dtype == "float64" else 1e-3
    return GaussianMixture(kw.pop("n_components", 4), covariance_type=cov, init_params=init, dtype=dtype, random_state=3,
                           max_iter=200, tol=tol, chunk_size=64, **kw)


def _reseed_cases(X):
    far = np.array([[0, 0, 0], [6, 0, 1], [0, 6, -1], [1000, 1000, 1000.0]])
    # Integer points whose mean is exact: distances tie exactly alike in one process and in many.
    duplicates = np.repeat(np.array([[0, 0.0], [4, 0], [0, 4], [4, 4]]), 75, axis=0)
    return [("far_mean", X, {"means_init": far}), ("duplicates", duplicates, {"n_components": 5})]


def _join_group(rank, port, timeout="60"):
    _START.wait(timeout=120)  # both ranks have imported torch: the rendezvous itself is quick
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(WORLD), GMMGAN_DIST_TIMEOUT=timeout)
    torch.set_num_threads(1)
    return gdist.init_from_env("cpu")


def _worker(rank, port, path, queue):
    """One process group for all: the fits first, then the failures (which break the group)."""
    try:
        _join_group(rank, port, timeout="5")
        queue.put((rank, "ok", {"fits": _fits(path), "state": _state_case(rank), "failures": _failures(rank)}))
    except BaseException:  # noqa: BLE001 - reported to the parent, which fails the test
        queue.put((rank, "error", traceback.format_exc()))
    finally:
        gdist.shutdown()


def _fits(path):
    """Fit every case on this rank's shard (in memory and memory-mapped); the parameters."""
    X = np.load(path, mmap_mode="r")
    rows = gdist.shard_range(len(X))
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning etc. are the same as in one process
        for case in CASES:
            gm = _estimator(*case).fit(np.array(X[rows.start : rows.stop]))
            out[case] = {p: np.asarray(getattr(gm, p)) for p in PARAMS} | {
                "n_iter_": gm.n_iter_, "lower_bound_": gm.lower_bound_, "score": gm.score(np.array(X[rows.start : rows.stop])),
            }
        # Components that lose their points are re-seeded at the worst-explained rows of all ranks
        # (gathered); four distinct points for five components also empty a k-means cluster.
        for name, data, kw in _reseed_cases(np.array(X)):
            own = gdist.shard_range(len(data))
            gm = _estimator("full", "k-means++", "float64", **kw).fit(data[own.start : own.stop])
            out[name] = {p: np.asarray(getattr(gm, p)) for p in PARAMS} | {"n_iter_": gm.n_iter_, "reseeded_": gm.reseeded_}
        # A memmap shard is streamed block by block; a torch tensor shard gives tensors back.
        gm = _estimator("full", "k-means++", "float64").fit(X[rows.start : rows.stop])
        assert isinstance(X[rows.start : rows.stop], np.memmap)
        out["memmap"] = {p: np.asarray(getattr(gm, p)) for p in PARAMS} | {"n_iter_": gm.n_iter_}
        gm = _estimator("diag", "k-means++", "float64").fit(torch.from_numpy(np.array(X[rows.start : rows.stop])))
        out["tensor"] = {p: getattr(gm, p).numpy() for p in PARAMS} | {"n_iter_": gm.n_iter_}
        # The Bayesian mixture is fitted on each rank's own rows, and scored there too: rank 1
        # scores alone while rank 0 waits outside torch.distributed (a collective in score
        # would wait for rank 0 until the 5 s timeout and fail).
        own = np.array(X[rows.start : rows.stop])
        bgm = BayesianGaussianMixture(n_components=3, random_state=0, max_iter=20).fit(own)
        if gdist.rank() == 1:
            out["bgm_score"] = bgm.score(own)
        _START.wait(timeout=60)
        # Inside local_only each rank fits its own rows alone.
        with gdist.local_only():
            gm = _estimator("diag", "k-means++", "float64").fit(np.array(X[rows.start : rows.stop]))
        out["local"] = {"means_": gm.means_}
    return out


def _state_case(rank):
    """A fitted mixture whose K differs per rank (as auto-K on GPUs may choose): rank 0's on all."""
    from gmmgan.gan.priors import FittedMixture

    k = 2 + rank
    mixture = FittedMixture("auto")
    mixture.weights = torch.full((k,), 1.0 / k)
    mixture.means = torch.arange(k * 2, dtype=torch.float32).reshape(k, 2) + 100 * rank
    mixture.scale_tril = torch.eye(2).expand(k, 2, 2) * (rank + 1)
    gdist.broadcast_state_(mixture)
    return {name: t.numpy() for name, t in mixture.state_dict().items()}


_START = None  # a multiprocessing.Barrier shared by the ranks, set by _rank_main
_RELEASED = None  # a multiprocessing.Event: set by rank 0 once it has failed (failure test)


def _rank_main(target, barrier, released, *args):
    global _START, _RELEASED
    _START, _RELEASED = barrier, released
    target(*args)


def _run(target, args, timeout=120):
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    barrier = ctx.Barrier(WORLD)
    port = free_port()
    released = ctx.Event()
    procs = [ctx.Process(target=_rank_main, args=(target, barrier, released, r, port, *args, queue))
             for r in range(WORLD)]
    for p in procs:
        p.start()
    results = {}
    try:
        for _ in procs:
            rank, status, payload = queue.get(timeout=timeout)
            results[rank] = (status, payload)
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    return results


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    """(X, {rank: its report}) from one run of WORLD processes (starting them is the slow part)."""
    X = _data_set()
    path = tmp_path_factory.mktemp("dist") / "X.npy"
    np.save(path, X)
    results = _run(_worker, (str(path),))
    for rank, (status, payload) in results.items():
        assert status == "ok", f"rank {rank} failed:\n{payload}"
    return X, {rank: payload for rank, (_, payload) in results.items()}


@pytest.fixture(scope="module")
def sharded(ranks):
    X, results = ranks
    return X, {rank: payload["fits"] for rank, payload in results.items()}


@pytest.mark.parametrize("case", CASES, ids=["-".join(c) for c in CASES])
def test_sharded_fit_equals_one_process(sharded, case):
    X, results = sharded
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = _estimator(*case).fit(X)
    rtol, atol = (1e-7, 1e-9) if case[2] == "float64" else (2e-4, 2e-4)
    for rank in range(WORLD):
        got = results[rank][case]
        assert got["n_iter_"] == ref.n_iter_
        assert got["lower_bound_"] == pytest.approx(ref.lower_bound_, rel=rtol, abs=atol)
        assert got["score"] == pytest.approx(ref.score(X), rel=rtol, abs=atol)
        for p in PARAMS:
            np.testing.assert_allclose(got[p], getattr(ref, p), rtol=rtol, atol=atol, err_msg=f"{case} {p} rank {rank}")
    # Every rank ends with the same model, bit for bit: all decisions follow from reduced values.
    for p in PARAMS:
        np.testing.assert_array_equal(results[0][case][p], results[1][case][p])


@pytest.mark.parametrize("kind,cov", [("memmap", "full"), ("tensor", "diag")])
def test_memmap_and_tensor_shards_equal_one_process(sharded, kind, cov):
    X, results = sharded
    ref = _estimator(cov, "k-means++", "float64").fit(X)
    for rank in range(WORLD):
        assert results[rank][kind]["n_iter_"] == ref.n_iter_
        for p in PARAMS:
            np.testing.assert_allclose(results[rank][kind][p], getattr(ref, p), rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("name", ["far_mean", "duplicates"])
def test_reseeding_picks_the_same_rows_as_one_process(sharded, name):
    X, results = sharded
    ((_, data, kw),) = [c for c in _reseed_cases(X) if c[0] == name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = _estimator("full", "k-means++", "float64", **kw).fit(data)
    assert ref.reseeded_  # the case does exercise re-seeding
    for rank in range(WORLD):
        got = results[rank][name]
        assert got["reseeded_"] == ref.reseeded_ and got["n_iter_"] == ref.n_iter_
        # A component left with weight ~1e-17 has a mean made of rounding noise: compare the others.
        live = ref.weights_ > 1e-6
        assert live.sum() >= 4
        np.testing.assert_allclose(got["weights_"], ref.weights_, rtol=1e-7, atol=1e-9)
        for p in PARAMS[1:]:
            np.testing.assert_allclose(got[p][live], getattr(ref, p)[live], rtol=1e-7, atol=1e-9, err_msg=f"{name} {p}")


def test_bayesian_mixture_scores_one_ranks_rows_alone(sharded):
    X, results = sharded
    rows = gdist.shard_range(len(X), 1, WORLD)
    own = X[rows.start : rows.stop]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = BayesianGaussianMixture(n_components=3, random_state=0, max_iter=20).fit(own)
    assert results[1]["bgm_score"] == pytest.approx(ref.score(own), rel=1e-12)


def test_local_only_fits_each_rank_alone(sharded):
    X, results = sharded
    for rank in range(WORLD):
        rows = gdist.shard_range(len(X), rank, WORLD)
        ref = _estimator("diag", "k-means++", "float64").fit(X[rows.start : rows.stop])
        np.testing.assert_allclose(results[rank]["local"]["means_"], ref.means_, rtol=1e-10)


def test_broadcast_state_gives_every_rank_rank_0s_fitted_shapes(ranks):
    _, results = ranks
    zero = results[0]["state"]
    assert zero["means"].shape == (2, 2) and zero["means"][1, 1] == 3.0  # rank 0's own values
    for name, value in zero.items():
        np.testing.assert_array_equal(results[1]["state"][name], value, err_msg=name)


def _failures(rank):
    """Two failures: ranks that disagree on D, then one rank raising alone (the group is then broken)."""
    out = {}
    X = _data_set()
    try:  # every rank sees the mismatch in the first collective and raises the same error
        GaussianMixture(2, random_state=0).fit(X[:, : 3 - rank])
        out["mismatch"] = "fitted"
    except ValueError as exc:
        out["mismatch"] = str(exc)
    if rank == 1:
        X = X.copy()
        X[-2, 0] = np.nan  # in rank 1's shard: it raises before any collective
    t0 = time.perf_counter()
    try:
        GaussianMixture(2, random_state=0).fit(X[gdist.shard_range(len(X)).start :])
        out["raise"] = "fitted"
    except Exception as exc:  # noqa: BLE001 - the timeout's type differs between torch versions
        out["raise"] = f"{type(exc).__name__}: {exc}"
    out["waited_s"] = time.perf_counter() - t0
    # Rank 1 stays alive (it caught its error) until rank 0 has given up, so rank 0 can only
    # have failed through the collective's timeout, not through rank 1's exit.
    if rank == 0:
        _RELEASED.set()
    else:
        out["released"] = _RELEASED.wait(timeout=60)
    return out


@pytest.fixture(scope="module")
def failures(ranks):
    return {rank: payload["failures"] for rank, payload in ranks[1].items()}


def test_shard_source_rejects_ranks_that_disagree_on_features(failures):
    for rank in range(WORLD):
        assert "different numbers of features [3, 2]" in failures[rank]["mismatch"]


def test_a_failing_rank_makes_the_others_fail_instead_of_hanging(failures):
    assert failures[1]["raise"].startswith("ValueError") and "NaN" in failures[1]["raise"]
    # Rank 0 waits in the first collective for a rank that never comes (alive, but past its
    # error): GMMGAN_DIST_TIMEOUT=5 s must make it raise; a hang would end at the queue timeout.
    assert failures[1]["released"]
    assert failures[0]["raise"] != "fitted"
    assert "NaN" not in failures[0]["raise"]


# ---------------------------------------------------------------- one process, no process group
def test_without_a_process_group_nothing_is_sharded():
    X = _data_set()
    source = _data_source.make_source(X, device="cpu", dtype=None, chunk_size=64, n_components=4)
    assert _data_source.shard_source(source) is source and source.n_global == len(X)
    assert gdist.all_reduce_sums(torch.ones(2))[0].tolist() == [1.0, 1.0]


def test_prefetch_issues_one_item_ahead_and_keeps_order():
    log = []

    def issue(i):
        log.append(("issue", i))
        return i * 10

    for out in _transfer.prefetch(issue, range(4)):
        log.append(("yield", out // 10))
    assert log == [("issue", 0), ("issue", 1), ("yield", 0), ("issue", 2), ("yield", 1),
                   ("issue", 3), ("yield", 2), ("yield", 3)]
    assert list(_transfer.prefetch(issue, [])) == []


@pytest.mark.parametrize("host", ["numpy", "memmap", "tensor"])
def test_streamed_blocks_are_the_rows_in_order(tmp_path, host):
    X = _data_set().astype(np.float32)
    if host == "memmap":
        np.save(tmp_path / "X.npy", X)
        data = np.load(tmp_path / "X.npy", mmap_mode="r")
    else:
        data = torch.from_numpy(X) if host == "tensor" else X
    blocks = list(_transfer.device_blocks((data[s : s + 100] for s in range(0, len(X), 100)), torch.device("cpu"), torch.float64))
    assert [b.shape[0] for b in blocks] == [100] * 6 + [1]
    assert all(b.dtype == torch.float64 for b in blocks)
    np.testing.assert_array_equal(torch.cat(blocks).numpy(), X.astype(np.float64))


class _FakeEvent:
    def __init__(self):
        self.recorded = self.done = False

    def record(self, stream):
        self.recorded = True

    def synchronize(self):
        assert self.recorded, "waited on an event that was never recorded"
        self.done = True


class _FakeStream:
    def __init__(self):
        self.waited = []

    def wait_event(self, event):
        self.waited.append(event)


class _CpuCopier(_transfer._CudaCopier):
    """The CUDA copier's logic with its CUDA calls replaced; checks its invariants on every copy."""

    def __init__(self, dtype, pinned=False):
        self.pinned, self.allocs, self.copies = pinned, 0, 0
        super().__init__(torch.device("cpu"), dtype)

    def new_stream(self):
        return _FakeStream()

    def current_stream(self):
        return _FakeStream()

    def on_side_stream(self):
        return contextlib.nullcontext()

    def event(self):
        return _FakeEvent()

    def is_pinned(self, t):
        return self.pinned

    def pinned_empty(self, shape, dtype):
        self.allocs += 1
        return torch.empty(shape, dtype=dtype)

    def to_device(self, staged):
        # Before a copy starts, the compute on all but IN_FLIGHT - 1 handed-out blocks has ended,
        # and the staging buffer being read was not overwritten before its last copy ended.
        assert len(self.used) < self.IN_FLIGHT and all(not e.done for e in self.used)
        previous = self.copied[self.turn]
        assert self.pinned or previous is None or previous.done
        self.copies += 1
        return staged.clone()  # a real device copy: the staging buffer may be reused afterwards

    def record_stream(self, block):
        pass


@pytest.mark.parametrize("source,dtype,pinned", [
    ("float32", torch.float32, False), ("float32", torch.float64, False), ("int64", torch.float32, False),
    ("tensor", torch.float64, False), ("tensor", torch.float64, True),
])
def test_cuda_copier_logic_on_the_cpu(source, dtype, pinned):
    X = np.arange(7 * 3 * 50).reshape(-1, 3) % 97
    host = torch.from_numpy(X.astype(np.float32)) if source == "tensor" else X.astype(source)
    copier = _CpuCopier(dtype, pinned)
    seen = []
    for block in _transfer.device_blocks((host[s : s + 50] for s in range(0, len(X), 50)), torch.device("cpu"), dtype, copier):
        seen.append(block.clone())
        assert copier.compute.waited[-1].recorded  # the compute stream waits for this block's copy
    assert all(b.dtype == dtype for b in seen)
    np.testing.assert_array_equal(torch.cat(seen).numpy(), X.astype(np.float64))
    assert copier.copies == 7
    assert copier.allocs == (0 if pinned else 2)  # two staging buffers, reused in turn


@pytest.mark.parametrize("host", [torch.ones(4, 3, dtype=torch.complex64), np.array([["a", "b"]] * 4)])
def test_cuda_copier_rejects_what_the_resident_path_rejects(host):
    with pytest.raises(ValueError, match="Complex data is not supported|Expected numeric data"):
        list(_transfer.device_blocks([host[:2], host[2:]], torch.device("cpu"), torch.float32, _CpuCopier(torch.float32)))
