"""One training at a time in a run folder: an exclusive lock on RUN/.lock, refused at once, released on every exit."""

from __future__ import annotations

import errno
import os
import subprocess
import sys

import pytest
from _helpers import TINY_RING

from gmmgan.cli import main
from gmmgan.gan.config import load_config
from gmmgan.gan.run_folder import LOCK_NAME, RunFolderInUseError, RunFolderLock
from gmmgan.gan.training_loop import train

fcntl = pytest.importorskip("fcntl")  # POSIX; elsewhere nothing is locked

HOLD = ("import fcntl, os, socket, sys\n"
        "f = open(sys.argv[1], 'a+')\n"
        "fcntl.flock(f, fcntl.LOCK_EX)\n"
        "f.truncate(0); f.write(f'{os.getpid()} {socket.gethostname()}\\n'); f.flush()\n"
        "print('locked', flush=True)\n"
        "sys.stdin.read()\n")


def tiny(*extra):
    return load_config(None, [*TINY_RING, "schedule.sample_kimg=0", *extra])


@pytest.fixture
def finished_run(tmp_path):
    run = tmp_path / "run"
    train(tiny("schedule.total_kimg=0.1"), run_dir=run, quiet=True)
    return run


def test_a_second_training_of_a_run_folder_in_use_refuses_at_once(finished_run, capsys):
    run = finished_run
    before = {name: (run / name).read_bytes() for name in ("config.yaml", "log.jsonl", "checkpoint.pt")}
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run / LOCK_NAME)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunFolderInUseError) as info:
            train(tiny("schedule.total_kimg=0.2"), run_dir=run, resume=True, quiet=True)
        message = str(info.value)
        assert message.startswith(f"run folder '{run}' is in use by another training (PID {holder.pid})")
        # Through the command line: one line, exit 2, and the run as it was.
        assert main(["train", "--resume", str(run), "schedule.total_kimg=0.2", "-q"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and f"(PID {holder.pid})" in err and str(run) in err
        assert {name: (run / name).read_bytes() for name in before} == before
    finally:
        holder.kill()  # as kill -9: the lock goes with the process, the file stays
        holder.wait()
    assert (run / LOCK_NAME).is_file()
    assert train(tiny("schedule.total_kimg=0.2"), run_dir=run, resume=True, quiet=True)["kimg"] == 0.2


def test_the_lock_is_released_however_train_ends(finished_run, monkeypatch):
    run = finished_run
    with RunFolderLock(run) as lock:  # a second lock in the same process conflicts too (flock is per open file)
        assert lock.locked
        with pytest.raises(RunFolderInUseError, match=f"PID {os.getpid()}"):
            train(tiny("schedule.total_kimg=0.2"), run_dir=run, resume=True, quiet=True)
    # Refused after taking the lock (already finished): released.
    with pytest.raises(ValueError, match="already at 0.1 kimg"):
        train(tiny("schedule.total_kimg=0.1"), run_dir=run, resume=True, quiet=True)
    with RunFolderLock(run) as lock:
        assert lock.locked
    # Stopped by an error in the middle of training: released.
    from gmmgan.gan import train_step

    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(train_step.TrainStep, "__call__", boom)
    with pytest.raises(RuntimeError, match="boom"):
        train(tiny("schedule.total_kimg=0.2"), run_dir=run, resume=True, quiet=True)
    monkeypatch.undo()
    with RunFolderLock(run) as lock:
        assert lock.locked
    # Finished normally: released.
    train(tiny("schedule.total_kimg=0.2"), run_dir=run, resume=True, quiet=True)
    with RunFolderLock(run) as lock:
        assert lock.locked


def test_a_new_run_into_a_folder_in_use_is_refused_and_the_folder_kept(tmp_path):
    run = tmp_path / "mine"
    run.mkdir()
    with RunFolderLock(run), pytest.raises(RunFolderInUseError, match="is in use by another training"):
        train(tiny(), run_dir=run, quiet=True)
    assert sorted(p.name for p in run.iterdir()) == [LOCK_NAME]


def test_where_the_file_system_cannot_lock_training_goes_on(finished_run, monkeypatch):
    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", no_locks)
    lock = RunFolderLock(finished_run).acquire()
    assert not lock.locked
    assert train(tiny("schedule.total_kimg=0.2"), run_dir=finished_run, resume=True, quiet=True)["kimg"] == 0.2
