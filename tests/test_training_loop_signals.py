"""SIGTERM (timeout, docker stop, SLURM) is handled as Ctrl-C while train() runs; stale temporary files are removed.

Exit status 143 (128 + SIGTERM) with Ctrl-C's message and clean-up; the previous SIGTERM handler is
restored after train(). A checkpoint write killed by ``kill -9`` leaves ``.checkpoint.pt.XXXXXXXX.tmp``:
the next training of the folder removes it (and only such files of its own).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from _helpers import TINY_RING

import gmmgan
from gmmgan.cli import EXIT_TERMINATED, main
from gmmgan.gan import seed_run, train_step
from gmmgan.gan.checkpoint import CHECKPOINT_NAME, load_checkpoint
from gmmgan.gan.config import load_config
from gmmgan.gan.training_loop import TrainingInterrupted, train

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGTERM") or os.name != "posix", reason="POSIX signals")


def tiny(*extra):
    return load_config(None, [*TINY_RING, "schedule.sample_kimg=0", *extra])


@pytest.fixture
def outer_handler():
    """A SIGTERM handler of the test's own, as a program calling train() might have: restored after train()."""
    seen = []

    def handler(signum, frame):
        seen.append(signum)

    previous = signal.signal(signal.SIGTERM, handler)
    yield handler, seen
    signal.signal(signal.SIGTERM, previous)


def _sigterm_self(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGTERM)
    for _ in range(1000):  # the handler runs between bytecodes, at once
        time.sleep(0.001)
    raise AssertionError("SIGTERM did not interrupt training")


def test_gmmgan_train_stopped_by_sigterm_says_how_to_resume_and_exits_143(tmp_path):
    out = tmp_path / "runs"
    env = {**os.environ, "PYTHONPATH": str(Path(gmmgan.__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, "-m", "gmmgan", "train", "--out", str(out), *TINY_RING,
                             "schedule.total_kimg=1000", "schedule.sample_kimg=0", "-q"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not list(out.glob(f"*/{CHECKPOINT_NAME}")):
            assert proc.poll() is None and time.time() < deadline, proc.communicate()
            time.sleep(0.05)
        time.sleep(0.5)  # into the training loop, past the first checkpoint
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    (run,) = out.iterdir()
    assert proc.returncode == EXIT_TERMINATED == 143, stderr
    line = stderr.strip()
    assert len(line.splitlines()) == 1 and line.startswith("error: interrupted by SIGTERM at "), stderr
    assert f"the last checkpoint, {run / CHECKPOINT_NAME}, is at " in line
    assert line.endswith(f"Continue with: gmmgan train --resume {run}")
    assert not list(run.glob(".*.tmp"))
    kimg = load_checkpoint(run / CHECKPOINT_NAME)["cur_nimg"] / 1000
    resumed = train(load_config(run / "config.yaml", [f"schedule.total_kimg={kimg + 0.1:.3f}"]), run_dir=run,
                    resume=True, quiet=True)
    assert resumed["kimg"] == pytest.approx(kimg + 0.1)


def test_sigterm_before_the_first_checkpoint_removes_the_new_folder_and_the_handler_comes_back(
        tmp_path, monkeypatch, outer_handler):
    handler, seen = outer_handler
    monkeypatch.setattr(seed_run, "_warm_start", _sigterm_self)
    with pytest.raises(TrainingInterrupted) as info:
        train(tiny(f"out={tmp_path / 'runs'}"), quiet=True)
    assert info.value.signum == signal.SIGTERM
    assert str(info.value).startswith("interrupted by SIGTERM before the first checkpoint: nothing to resume; "
                                      "the new run folder ")
    assert list((tmp_path / "runs").iterdir()) == []
    assert signal.getsignal(signal.SIGTERM) is handler and seen == []


def test_sigterm_during_training_through_the_cli_is_ctrl_c_with_exit_143(tmp_path, monkeypatch, capsys, outer_handler):
    handler, seen = outer_handler
    real_call, calls = train_step.TrainStep.__call__, {"n": 0}

    def step(self, *args):
        calls["n"] += 1
        if calls["n"] == 5:  # after the checkpoint at 0.2 kimg (4 steps of 50)
            _sigterm_self()
        return real_call(self, *args)

    monkeypatch.setattr(train_step.TrainStep, "__call__", step)
    code = main(["train", "--out", str(tmp_path / "runs"), *TINY_RING, "-q"])
    (run,) = (tmp_path / "runs").iterdir()
    err = capsys.readouterr().err
    assert code == 143
    assert f"interrupted by SIGTERM at 0.2 kimg; the last checkpoint, {run / CHECKPOINT_NAME}, is at 0.2 kimg" in err
    assert signal.getsignal(signal.SIGTERM) is handler and seen == []
    monkeypatch.setattr(train_step.TrainStep, "__call__", real_call)
    assert main(["train", "--resume", str(run), "-q"]) == 0


def test_an_ignored_sigterm_stays_ignored(tmp_path):
    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        train(tiny("schedule.total_kimg=0.05"), run_dir=tmp_path / "run", quiet=True)
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_stale_temporary_files_of_the_run_are_removed_on_resume_and_on_start(tmp_path):
    run = tmp_path / "run"
    train(tiny("schedule.total_kimg=0.1"), run_dir=run, quiet=True)
    stale = [run / ".checkpoint.pt.k3j4h5g6.tmp", run / ".generator.safetensors.ab_cd9ef.tmp",
             run / ".log.jsonl.0123abcd.tmp", run / ".config.yaml.zzzzzzzz.tmp",
             run / "samples" / ".samples-000000.150kimg.png.a1b2c3d4.tmp"]
    foreign = [run / ".notes.txt.abcdefgh.tmp", run / ".checkpoint.pt.tmp", run / "checkpoint.pt.abcdefgh.tmp",
               run / ".checkpoint.pt.ABCDEFGH.tmp", run / "samples" / ".mine.png.abcdefgh.tmp"]
    # And one named exactly as the atomic writer names its temporary file (a checkpoint write killed by kill -9).
    fd, killed = tempfile.mkstemp(prefix=f".{CHECKPOINT_NAME}.", suffix=".tmp", dir=run)
    os.close(fd)
    stale.append(Path(killed))
    for p in stale + foreign:
        p.write_bytes(b"half a file")
    train(tiny("schedule.total_kimg=0.2"), run_dir=run, resume=True, quiet=True)
    assert [p for p in stale if p.exists()] == []
    assert all(p.exists() for p in foreign)
    # A new run in a folder given by the caller clears them too.
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / ".checkpoint.pt.k3j4h5g6.tmp").write_bytes(b"x")
    train(tiny("schedule.total_kimg=0.05"), run_dir=mine, quiet=True)
    assert not (mine / ".checkpoint.pt.k3j4h5g6.tmp").exists()
