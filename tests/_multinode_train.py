"""``gmmgan train`` as one rank of a torchrun job, for tests/test_distributed_multinode.py.

    torchrun --nnodes 2 --nproc_per_node 1 --rdzv_backend c10d --rdzv_endpoint HOST:PORT \
        tests/_multinode_train.py train --out DIR KEY=VALUE...

Runs ``gmmgan.cli.main`` with the arguments given and exits with its status, exactly as
``-m gmmgan`` does, with one test-only addition that leaves the library untouched: with
``GMMGAN_TEST_DIE_RANK=R`` and ``GMMGAN_TEST_DIE_AFTER_STEPS=N`` the process of global rank R,
after its N-th training step, writes the time and its process id to ``GMMGAN_TEST_DIE_STAMP``
and then

- ends itself with ``os._exit(3)`` (no clean-up, no message: as a crashed or killed node would);
- or, with ``GMMGAN_TEST_DIE_HOW=stop``, stops itself (SIGSTOP: as a machine that hangs or drops
  off the network, whose connections stay open).
"""

from __future__ import annotations

import os
import signal
import sys
import time


def _die_after(steps: int, stamp: str | None, how: str) -> None:
    """Make this process's training end (or stop) it after ``steps`` steps (the training loop's Engine builds its TrainStep at call time)."""
    import gmmgan.gan.sweep as sweep

    class DyingStep(sweep.TrainStep):
        done = 0

        def __call__(self, *args, **kwargs):
            super().__call__(*args, **kwargs)
            DyingStep.done += 1
            if DyingStep.done >= steps:
                if stamp:
                    with open(stamp, "w") as f:
                        f.write(f"{time.time()!r} {os.getpid()}")
                if how == "stop":
                    os.kill(os.getpid(), signal.SIGSTOP)
                os._exit(3)

    sweep.TrainStep = DyingStep


def main() -> int:
    die_rank = os.environ.get("GMMGAN_TEST_DIE_RANK")
    if die_rank is not None and os.environ.get("RANK") == die_rank:
        _die_after(int(os.environ["GMMGAN_TEST_DIE_AFTER_STEPS"]), os.environ.get("GMMGAN_TEST_DIE_STAMP"),
                   os.environ.get("GMMGAN_TEST_DIE_HOW", "exit"))
    from gmmgan.cli import main as gmmgan_main

    return gmmgan_main(sys.argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
