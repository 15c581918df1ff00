"""Data-parallel training on CPU: 2 processes (gloo) through the same code path as one process."""

from __future__ import annotations

import os
import weakref

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from _helpers import TINY_DDP as TINY
from _helpers import free_port

from gmmgan.gan.checkpoint import load_checkpoint
from gmmgan.gan.config import load_config


def _group_ref():
    """A weak reference to the default process group (None before init): it must not outlive shutdown()."""
    return weakref.ref(dist.group.WORLD) if dist.is_initialized() else None


def _left_behind(group_ref) -> str:
    """What of the process group outlives ``distributed.shutdown()``: the group itself, its gloo threads.

    A group still alive when the interpreter finalises makes gloo abort the process now and then
    ("terminate called without an active exception"), so both must be gone.
    """
    left = ["the process group"] if group_ref is not None and group_ref() is not None else []
    tasks = "/proc/self/task"  # thread names, on Linux
    for tid in sorted(os.listdir(tasks)) if os.path.isdir(tasks) else []:
        try:
            with open(os.path.join(tasks, tid, "comm")) as f:
                name = f.read().strip()
        except OSError:  # the thread ended meanwhile
            continue
        if "gloo" in name:
            left.append(f"thread {name}")
    return ", ".join(left)


def _worker(rank: int, world: int, port: int, overrides: list[str], out: str) -> None:
    """One rank of `torchrun ... -m gmmgan train --out OUT/runs`: its nets, exit status and leftovers to OUT."""
    os.environ.update({"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "GMMGAN_DIST_TIMEOUT": "60"})
    import gmmgan.gan.training_loop as training_loop
    from gmmgan.cli import main

    torch.set_num_threads(1)
    train, results, groups = training_loop.train, [], []

    def train_and_keep(*args, **kwargs):  # the command's own training, its result kept for the tests
        results.append(train(*args, **kwargs))
        groups.append(_group_ref())  # before the command leaves the group
        return results[-1]

    training_loop.train = train_and_keep
    code = main(["train", "--quiet", "--out", os.path.join(out, "runs"), *overrides])
    with open(os.path.join(out, f"rank{rank}_exit.txt"), "w") as f:
        f.write(f"{code}\n{_left_behind(groups[0] if groups else None)}")
    state = {f"G.{k}": v for k, v in results[0]["G"].state_dict().items()}
    state.update({f"D.{k}": v for k, v in results[0]["D"].state_dict().items()})
    torch.save(state, os.path.join(out, f"rank{rank}.pt"))


@pytest.fixture(scope="module")
def two_rank_run(tmp_path_factory):
    """What each rank of a 2-process `gmmgan train` run left: rank{0,1}.pt, rank{0,1}_exit.txt, runs/<run>."""
    tmp = tmp_path_factory.mktemp("ddp")
    mp.start_processes(_worker, args=(2, free_port(), TINY, str(tmp)), nprocs=2, join=True, start_method="spawn")
    return tmp


def _run_of(two_rank_run):
    (run,) = (two_rank_run / "runs").iterdir()
    return run


def test_two_ranks_end_with_identical_weights(two_rank_run):
    s0 = torch.load(two_rank_run / "rank0.pt", weights_only=True)
    s1 = torch.load(two_rank_run / "rank1.pt", weights_only=True)
    assert s0.keys() == s1.keys()
    for k in s0:
        torch.testing.assert_close(s0[k], s1[k], rtol=0, atol=0, msg=k)
    ckpt = load_checkpoint(_run_of(two_rank_run) / "checkpoint.pt")
    assert ckpt["cur_nimg"] == 1280 and ckpt["step"] == 20
    # Rank 0 alone wrote the log: one line per log_kimg.
    assert len((_run_of(two_rank_run) / "log.jsonl").read_text().splitlines()) == 4


def test_train_command_exits_0_and_leaves_nothing_of_the_group(two_rank_run):
    # By the time `gmmgan train` returns, the process group and its gloo threads are gone. The group
    # used to stay referenced after destroy_process_group (by defaults of torch.distributed.nn,
    # imported lazily after init), so its threads lived into interpreter shutdown, where they aborted
    # the process about one run in eight ("terminate called without an active exception").
    for r in range(2):
        code, left = (two_rank_run / f"rank{r}_exit.txt").read_text().split("\n", 1)
        assert (code, left) == ("0", ""), f"rank {r}"


def test_two_rank_checkpoint_resumes_in_one_process(two_rank_run):
    from gmmgan.gan.training_loop import train

    run = _run_of(two_rank_run)
    result = train(load_config(run / "config.yaml", ["schedule.total_kimg=1.92"]), run_dir=run, resume=True,
                   quiet=True)
    assert result["kimg"] == pytest.approx(1.92)
    assert load_checkpoint(run / "checkpoint.pt")["step"] == 30


def test_two_ranks_see_the_batches_of_one_process(two_rank_run, tmp_path):
    """Each rank trains on its half of the global batch; the union is the one-process batch stream."""
    from gmmgan.gan.training_loop import train

    one = train(load_config(None, TINY), run_dir=tmp_path / "one", quiet=True)
    two = torch.load(two_rank_run / "rank0.pt", weights_only=True)
    # Not bitwise (batch statistics and reduction order differ) but the same training, step for step.
    for k, v in one["G"].state_dict().items():
        if v.is_floating_point():
            torch.testing.assert_close(two[f"G.{k}"], v, rtol=1e-3, atol=1e-4, msg=k)


def _dying_worker(rank: int, world: int, port: int, run_dir: str) -> None:
    os.environ.update({"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "GMMGAN_DIST_TIMEOUT": "10"})
    from gmmgan import distributed
    from gmmgan.gan.training_loop import train

    torch.set_num_threads(1)
    if rank == 1:
        distributed.init_from_env("cpu")
        os._exit(3)  # dies without a word, as a crashed or killed process would
    train(load_config(os.path.join(run_dir, "config.yaml"), ["schedule.total_kimg=3"]), run_dir=run_dir,
          resume=True, quiet=True)


def test_a_dead_rank_stops_the_others_and_the_checkpoint_survives(tmp_path):
    from gmmgan.gan.training_loop import train

    run = tmp_path / "run"
    train(load_config(None, TINY), run_dir=run, quiet=True)
    before = (run / "checkpoint.pt").read_bytes()
    ctx = mp.get_context("spawn")
    port = free_port()
    procs = [ctx.Process(target=_dying_worker, args=(r, 2, port, str(run))) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    alive = [p.is_alive() for p in procs]
    for p in procs:
        if p.is_alive():
            p.kill()
    assert not any(alive), "a rank hung after its peer died"
    assert procs[0].exitcode != 0 and procs[1].exitcode == 3
    assert (run / "checkpoint.pt").read_bytes() == before


def _rank0_disk_full_worker(rank: int, world: int, port: int, run_dir: str, out: str) -> None:
    os.environ.update({"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "GMMGAN_DIST_TIMEOUT": "300"})
    import time

    import gmmgan.gan.checkpoint as checkpoint_module
    import gmmgan.gan.training_loop as train_module
    from gmmgan import distributed

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    torch.set_num_threads(1)
    if rank == 0:
        checkpoint_module.save_checkpoint = full_disk  # only rank 0 writes, so only rank 0 fails
    t0 = time.time()
    try:
        train_module.train(load_config(os.path.join(run_dir, "config.yaml"), ["schedule.total_kimg=3"]),
                           run_dir=run_dir, resume=True, quiet=True)
        outcome = "finished"
    except Exception as e:  # noqa: BLE001 - the test reads what each rank raised
        outcome = f"{type(e).__name__}: {e}"
    finally:
        group = _group_ref()
        distributed.shutdown()
    with open(os.path.join(out, f"rank{rank}.txt"), "w") as f:
        f.write(f"{time.time() - t0:.1f}\n{outcome}")
    with open(os.path.join(out, f"rank{rank}_left.txt"), "w") as f:
        f.write(_left_behind(group))


def test_a_failure_of_rank_0_alone_stops_the_others_at_once(tmp_path):
    # Rank 0 alone writes files; when that fails the other ranks must stop with an error naming it
    # (not wait in their next collective for GMMGAN_DIST_TIMEOUT, 300 s here), and the last
    # checkpoint stays as it was.
    from gmmgan.gan.training_loop import train

    run = tmp_path / "run"
    train(load_config(None, TINY), run_dir=run, quiet=True)
    before = (run / "checkpoint.pt").read_bytes()
    mp.start_processes(_rank0_disk_full_worker, args=(2, free_port(), str(run), str(tmp_path)), nprocs=2,
                       join=True, start_method="spawn")
    (t0, out0), (t1, out1) = [(tmp_path / f"rank{r}.txt").read_text().split("\n", 1) for r in range(2)]
    assert out0.startswith("DiskFullError") and "No space left" in out0  # an OSError (ENOSPC) saying where the run stands
    assert out1.startswith("PeerFailedError") and "rank 0 failed while writing the checkpoint" in out1
    assert "No space left" in out1
    assert float(t1) < 120, "rank 1 waited for the collective timeout"
    assert (run / "checkpoint.pt").read_bytes() == before
    # Both ranks left the group for good on this error path too (nothing aborts at exit).
    for r in range(2):
        assert (tmp_path / f"rank{r}_left.txt").read_text() == "", f"rank {r}"
