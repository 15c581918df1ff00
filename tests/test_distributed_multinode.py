"""Two "machines" on one: two torchrun launches (one process each) meeting through a c10d rendezvous.

    torchrun --nnodes 2 --nproc_per_node 1 --rdzv_backend c10d --rdzv_endpoint 127.0.0.1:PORT ...

started twice, as on two nodes; with the c10d rendezvous torchrun assigns the node ranks itself
(sorted by host name, then the agent's process id; --node_rank is read only by the static
rendezvous), so each launch has one process with LOCAL_RANK 0 and the two have RANK 0 and 1, in
either order. gloo on the CPU. What gmmgan does in one node must hold across nodes: `gmmgan
train` and a sharded `GaussianMixture.fit` equal one process, both launches exit 0 without a
"terminate called", a node whose worker dies stops the other at once and one that hangs within
GMMGAN_DIST_TIMEOUT, the last checkpoint surviving, and a resume where the nodes see different
checkpoints (a stale copy of the run folder) is refused.

Each launch starts torch twice (agent and worker), so each test costs seconds of start-up: the
two-node training run is made once (module fixture) and its folder copied for the others.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from _helpers import TINY_DDP as TINY
from _helpers import free_port

from gmmgan.gan.checkpoint import load_checkpoint
from gmmgan.gan.config import load_config

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
TIMEOUT_S = 10  # GMMGAN_DIST_TIMEOUT of the launches
HANG_TIMEOUT_S = 4  # ... of the test of a hung node, which waits for it


def _two_nodes(args_of_node, cwd: Path, env=None, limit_s: float = 120, wait_for: int = 2) -> list[dict]:
    """Start ``torchrun --nnodes 2 --nproc_per_node 1`` twice (node i runs ``args_of_node[i]``); wait for both.

    Returns, per launch: rc, the time it ended (time.time(), None if it was killed), its stdout and
    stderr. Once ``wait_for`` launches have ended (or after ``limit_s`` seconds) the others are
    killed, their workers first; fewer than ``wait_for`` ended fails the test.
    """
    port = free_port()
    env = {**os.environ, "GMMGAN_DIST_TIMEOUT": str(TIMEOUT_S), **(env or {}), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(SRC), *filter(None, [os.environ.get("PYTHONPATH")])])}
    launch = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1",
              "--rdzv_backend", "c10d", "--rdzv_endpoint", f"127.0.0.1:{port}", "--rdzv_id", "gmmgan-test"]
    procs, ended = [], {}
    for i, args in enumerate(args_of_node):
        out, err = open(cwd / f"node{i}.out", "w+"), open(cwd / f"node{i}.err", "w+")  # noqa: SIM115 - closed below
        procs.append((subprocess.Popen([*launch, *map(str, args)], cwd=cwd, env=env, stdout=out, stderr=err),
                      out, err))
    deadline = time.time() + limit_s
    try:
        while len(ended) < wait_for and time.time() < deadline:
            for i, (p, _, _) in enumerate(procs):
                if i not in ended and p.poll() is not None:
                    ended[i] = time.time()
            time.sleep(0.05)
    finally:
        for p, _, _ in procs:
            if p.poll() is None:
                for pid in [*_descendants(p.pid), p.pid]:  # its worker (maybe stopped), then it
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                p.wait()
    results = []
    for i, (p, out, err) in enumerate(procs):
        out.seek(0), err.seek(0)
        results.append({"rc": p.returncode, "ended": ended.get(i), "out": out.read(), "err": err.read()})
        out.close(), err.close()
    assert len(ended) >= wait_for, f"a launch was still running after {limit_s} s:\n{_report(results)}"
    return results


def _descendants(pid: int) -> list[int]:
    """The processes below ``pid`` (children first), from /proc."""
    parent = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parent[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):  # ended meanwhile
                continue
    out, todo = [], [pid]
    while todo:
        below = todo.pop()
        children = [c for c, p in parent.items() if p == below]
        out += children
        todo += children
    return out


def _report(results) -> str:
    return "\n".join(f"--- node {i}: rc {r['rc']}\nstdout:\n{r['out'][-3000:]}\nstderr:\n{r['err'][-6000:]}"
                     for i, r in enumerate(results))


def _assert_clean_exits(results) -> None:
    for r in results:
        assert r["rc"] == 0 and "terminate called" not in r["err"] and "Traceback" not in r["err"], _report(results)


# ----------------------------------------------------------------------------------- training
@pytest.fixture(scope="module")
def two_node_run(tmp_path_factory):
    """`gmmgan train --out runs TINY` on two nodes (both told the same --out): the launches and the run folder."""
    tmp = tmp_path_factory.mktemp("multinode")
    cmd = ["-m", "gmmgan", "train", "--quiet", "--out", tmp / "runs", *TINY]
    results = _two_nodes([cmd, cmd], tmp)
    runs = list((tmp / "runs").iterdir()) if (tmp / "runs").is_dir() else []
    return results, runs


def test_two_nodes_train_as_one_process_and_exit_0(two_node_run, tmp_path):
    from gmmgan.gan.training_loop import train

    results, runs = two_node_run
    _assert_clean_exits(results)
    # Rank 0 alone made and wrote the run folder (both processes are LOCAL_RANK 0): one folder, one
    # log line per log_kimg, the checkpoint at the end.
    assert len(runs) == 1, runs
    assert len((runs[0] / "log.jsonl").read_text().splitlines()) == 4
    ckpt = load_checkpoint(runs[0] / "checkpoint.pt")
    assert ckpt["cur_nimg"] == 1280 and ckpt["step"] == 20
    one = train(load_config(None, TINY), run_dir=tmp_path / "one", quiet=True)
    # Not bitwise (each rank's half-batch statistics, the reduction order) but the same training.
    for k, v in one["G"].state_dict().items():
        if v.is_floating_point():
            torch.testing.assert_close(ckpt["G"][k], v, rtol=1e-3, atol=1e-4, msg=k)


def test_a_dead_node_stops_the_other_and_the_checkpoint_survives(two_node_run, tmp_path):
    # Resumed on two nodes (a checkpoint is due 10 steps on), the worker of rank 1 ends itself
    # (os._exit) after 3 steps: the other node's worker must fail in its next collective, both
    # launches end non-zero within GMMGAN_DIST_TIMEOUT, and the checkpoint is as it was.
    _, runs = two_node_run
    run = Path(shutil.copytree(runs[0], tmp_path / runs[0].name))
    before = (run / "checkpoint.pt").read_bytes()
    stamp = tmp_path / "died_at"
    cmd = [HERE / "_multinode_train.py", "train", "--quiet", "--resume", run, "schedule.total_kimg=3"]
    results = _two_nodes([cmd, cmd], tmp_path, env={"GMMGAN_TEST_DIE_RANK": "1", "GMMGAN_TEST_DIE_AFTER_STEPS": "3",
                                                     "GMMGAN_TEST_DIE_STAMP": str(stamp)})
    assert stamp.is_file(), f"rank 1 did not get to its 3rd step:\n{_report(results)}"
    died_at = float(stamp.read_text().split()[0])
    for r in results:
        assert r["rc"] != 0, _report(results)
        assert r["ended"] - died_at < TIMEOUT_S, f"a launch ran {r['ended'] - died_at:.1f} s on:\n{_report(results)}"
    assert any("exitcode  : 3" in r["err"] for r in results), _report(results)  # torchrun names the dead rank
    assert (run / "checkpoint.pt").read_bytes() == before
    assert len((run / "log.jsonl").read_text().splitlines()) == 4  # trimmed back to the checkpoint, nothing after


def test_a_hung_node_is_given_up_after_the_timeout(two_node_run, tmp_path):
    # Rank 1's worker stops (SIGSTOP) after 3 steps, its connections open, as a machine that hangs
    # or drops off the network: the other node's worker fails at GMMGAN_DIST_TIMEOUT (gloo's
    # "Timed out"), its torchrun exits non-zero, the checkpoint is as it was. (The hung node's own
    # torchrun waits on: torchrun does not watch the other machines; the test kills it.)
    _, runs = two_node_run
    run = Path(shutil.copytree(runs[0], tmp_path / runs[0].name))
    before = (run / "checkpoint.pt").read_bytes()
    stamp = tmp_path / "stopped_at"
    cmd = [HERE / "_multinode_train.py", "train", "--quiet", "--resume", run, "schedule.total_kimg=3"]
    try:
        results = _two_nodes([cmd, cmd], tmp_path, wait_for=1, env={
            "GMMGAN_DIST_TIMEOUT": str(HANG_TIMEOUT_S), "GMMGAN_TEST_DIE_RANK": "1", "GMMGAN_TEST_DIE_AFTER_STEPS": "3",
            "GMMGAN_TEST_DIE_HOW": "stop", "GMMGAN_TEST_DIE_STAMP": str(stamp)})
    finally:  # the stopped worker, should its torchrun have left it behind
        if stamp.is_file():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(stamp.read_text().split()[1]), signal.SIGKILL)
    assert stamp.is_file(), f"rank 1 did not get to its 3rd step:\n{_report(results)}"
    done = min((r for r in results if r["ended"] is not None), key=lambda r: r["ended"])  # the healthy node
    assert done["rc"] != 0 and "Timed out" in done["err"], _report(results)
    waited = done["ended"] - float(stamp.read_text().split()[0])
    assert HANG_TIMEOUT_S - 1 < waited < HANG_TIMEOUT_S + 8, f"{waited:.1f} s:\n{_report(results)}"
    assert (run / "checkpoint.pt").read_bytes() == before


def test_a_resume_from_different_copies_of_the_run_is_refused(two_node_run, tmp_path):
    # Each node resumes "its own copy" of the run folder (two folders here, as on two machines'
    # local disks); node 1's is a copy older than the last checkpoint. Every rank reads the
    # checkpoint on --resume, so without a check they would start from different states and
    # train on, apart, silently.
    from gmmgan.gan.training_loop import train

    _, runs = two_node_run
    fresh, stale = (Path(shutil.copytree(runs[0], tmp_path / name / runs[0].name)) for name in ("a", "b"))
    train(load_config(stale / "config.yaml", ["schedule.total_kimg=1.92"]), run_dir=fresh, resume=True, quiet=True)
    before = {p: (p / "checkpoint.pt").read_bytes() for p in (fresh, stale)}
    results = _two_nodes([["-m", "gmmgan", "train", "--quiet", "--resume", run, "schedule.total_kimg=3"]
                          for run in (fresh, stale)], tmp_path)
    for r in results:  # each worker says why on its node, in one line (exit status 2), then its torchrun fails
        assert r["rc"] != 0 and "exitcode  : 2" in r["err"], _report(results)
        assert "error: '" in r["err"] and "is not the same file on every rank" in r["err"], _report(results)
        assert f'File "{SRC}' not in r["err"], _report(results)  # no traceback of gmmgan's
    assert "put it on a filesystem all the machines share" in results[0]["err"]
    for p, data in before.items():
        assert (p / "checkpoint.pt").read_bytes() == data


# ----------------------------------------------------------------------------------- GaussianMixture.fit
def _blobs(n=601, seed=0):
    """Four anisotropic blobs in 3-D plus an outlier (odd n: the two shards differ in size)."""
    rng = np.random.default_rng(seed)
    centers = np.array([[0, 0, 0], [6, 0, 1], [0, 6, -1], [5, 5, 5]], dtype=float)
    X = np.concatenate([c + rng.normal(size=(150, 3)) * [1.0, 0.5, 2.0] for c in centers])
    return np.concatenate([X, [[30.0, -30.0, 30.0]]])[:n]


def test_two_nodes_fit_the_gaussian_mixture_of_one_process(tmp_path):
    sys.path.insert(0, str(HERE))
    try:
        from _multinode_fit import PARAMS, estimator
    finally:
        sys.path.remove(str(HERE))
    X = _blobs()
    means_init = np.array([[1, 1, 1], [5, 0, 0], [0, 5, 0], [4, 4, 4.0]])
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "means.npy", means_init)
    cmd = [HERE / "_multinode_fit.py", tmp_path / "X.npy", tmp_path / "fit.npz", tmp_path / "means.npy"]
    results = _two_nodes([cmd, cmd], tmp_path)
    _assert_clean_exits(results)
    got = np.load(tmp_path / "fit.npz")
    # Two nodes of one process each: global ranks 0 and 1, both LOCAL_RANK 0, node ranks 0 and 1.
    assert got["layout"].tolist() == [[0, 0, 0, 2], [1, 0, 1, 2]]
    for init in ("k-means++", "means_init"):
        ref = estimator(means_init if init == "means_init" else None).fit(X)
        assert int(got[f"{init}.n_iter_"]) == ref.n_iter_, init
        assert float(got[f"{init}.lower_bound_"]) == pytest.approx(ref.lower_bound_, rel=1e-6)
        for p in PARAMS:
            np.testing.assert_allclose(got[f"{init}.{p}"], getattr(ref, p), rtol=1e-6, atol=1e-9, err_msg=f"{init} {p}")
