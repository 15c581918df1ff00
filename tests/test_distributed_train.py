"""Data-parallel training on CPU: 2 processes (gloo) through the same code path as one process."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from gmmgan.gan.checkpoint import load_checkpoint
from gmmgan.gan.config import load_config

TINY = ["data.name=ring", "data.n=2000", "prior.kind=gaussian", "nets.g_width=32", "nets.d_width=32",
        "nets.g_layers=2", "nets.d_layers=2", "schedule.batch_size=64", "schedule.total_kimg=1.28",
        "schedule.snapshot_kimg=0.64", "schedule.log_kimg=0.32", "schedule.sample_kimg=0", "device=cpu",
        "eval_samples=500", "seed=3"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, run_dir: str, overrides: list[str], out: str) -> None:
    os.environ.update({"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "GMMGAN_DIST_TIMEOUT": "60"})
    from gmmgan import distributed
    from gmmgan.gan.training_loop import train

    torch.set_num_threads(1)
    try:
        result = train(load_config(None, overrides), run_dir=run_dir, quiet=True)
        state = {f"G.{k}": v for k, v in result["G"].state_dict().items()}
        state.update({f"D.{k}": v for k, v in result["D"].state_dict().items()})
        torch.save(state, os.path.join(out, f"rank{rank}.pt"))
    finally:
        distributed.shutdown()


def _spawn(world: int, run_dir, overrides, out) -> None:
    mp.start_processes(_worker, args=(world, _free_port(), str(run_dir), overrides, str(out)), nprocs=world,
                       join=True, start_method="spawn")


@pytest.fixture(scope="module")
def two_rank_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    _spawn(2, tmp / "run", TINY, tmp)
    return tmp


def test_two_ranks_end_with_identical_weights(two_rank_run):
    s0 = torch.load(two_rank_run / "rank0.pt", weights_only=True)
    s1 = torch.load(two_rank_run / "rank1.pt", weights_only=True)
    assert s0.keys() == s1.keys()
    for k in s0:
        torch.testing.assert_close(s0[k], s1[k], rtol=0, atol=0, msg=k)
    ckpt = load_checkpoint(two_rank_run / "run" / "checkpoint.pt")
    assert ckpt["cur_nimg"] == 1280 and ckpt["step"] == 20
    # Rank 0 alone wrote the log: one line per log_kimg.
    assert len((two_rank_run / "run" / "log.jsonl").read_text().splitlines()) == 4


def test_two_rank_checkpoint_resumes_in_one_process(two_rank_run):
    from gmmgan.gan.training_loop import train

    run = two_rank_run / "run"
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
    port = _free_port()
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

    import gmmgan.gan.training_loop as train_module
    from gmmgan import distributed

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    torch.set_num_threads(1)
    if rank == 0:
        train_module.save_checkpoint = full_disk  # only rank 0 writes, so only rank 0 fails
    t0 = time.time()
    try:
        train_module.train(load_config(os.path.join(run_dir, "config.yaml"), ["schedule.total_kimg=3"]),
                           run_dir=run_dir, resume=True, quiet=True)
        outcome = "finished"
    except Exception as e:  # noqa: BLE001 - the test reads what each rank raised
        outcome = f"{type(e).__name__}: {e}"
    finally:
        distributed.shutdown()
    with open(os.path.join(out, f"rank{rank}.txt"), "w") as f:
        f.write(f"{time.time() - t0:.1f}\n{outcome}")


def test_a_failure_of_rank_0_alone_stops_the_others_at_once(tmp_path):
    # Rank 0 alone writes files; when that fails the other ranks must stop with an error naming it
    # (not wait in their next collective for GMMGAN_DIST_TIMEOUT, 300 s here), and the last
    # checkpoint stays as it was.
    from gmmgan.gan.training_loop import train

    run = tmp_path / "run"
    train(load_config(None, TINY), run_dir=run, quiet=True)
    before = (run / "checkpoint.pt").read_bytes()
    mp.start_processes(_rank0_disk_full_worker, args=(2, _free_port(), str(run), str(tmp_path)), nprocs=2,
                       join=True, start_method="spawn")
    (t0, out0), (t1, out1) = [(tmp_path / f"rank{r}.txt").read_text().split("\n", 1) for r in range(2)]
    assert out0.startswith("DiskFullError") and "No space left" in out0  # an OSError (ENOSPC) saying where the run stands
    assert out1.startswith("PeerFailedError") and "rank 0 failed while writing the checkpoint" in out1
    assert "No space left" in out1
    assert float(t1) < 120, "rank 1 waited for the collective timeout"
    assert (run / "checkpoint.pt").read_bytes() == before
