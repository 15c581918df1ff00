"""A seed sweep under torchrun (2 CPU processes, gloo): each seed trains as in one process."""

from __future__ import annotations

import os

import torch
import torch.multiprocessing as mp
from _helpers import TINY_DDP as TINY
from _helpers import free_port

from gmmgan.gan.checkpoint import CHECKPOINT_NAME, load_checkpoint
from gmmgan.gan.config import load_config
from gmmgan.gan.sweep import seed_dir


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update({"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "GMMGAN_DIST_TIMEOUT": "60"})
    from gmmgan.cli import main

    torch.set_num_threads(1)
    code = main(["train", "--quiet", "--out", os.path.join(out, "runs"), *TINY, "--seeds", "3,4"])
    with open(os.path.join(out, f"rank{rank}_exit.txt"), "w") as f:
        f.write(str(code))


def test_two_rank_sweep_trains_each_seed_as_one_process(tmp_path):
    from gmmgan.gan.training_loop import train

    mp.start_processes(_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True, start_method="spawn")
    assert [(tmp_path / f"rank{r}_exit.txt").read_text() for r in (0, 1)] == ["0", "0"]
    (root,) = (tmp_path / "runs").iterdir()  # rank 0 alone made the folders
    one = train(load_config(None, [*TINY, "seeds=3,4"]), run_dir=tmp_path / "one", quiet=True)
    for s in (3, 4):
        two = load_checkpoint(seed_dir(root, s) / CHECKPOINT_NAME)
        ref = load_checkpoint(seed_dir(one["run_dir"], s) / CHECKPOINT_NAME)
        # Not bitwise (each rank's half batch, reduction order) but the same training, step for step.
        for k, v in ref["G"].items():
            if v.is_floating_point():
                torch.testing.assert_close(two["G"][k], v, rtol=1e-3, atol=1e-4, msg=f"seed {s}: {k}")
