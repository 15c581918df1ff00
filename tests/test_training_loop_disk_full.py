"""A full disk (ENOSPC) during `gmmgan train` and `gmmgan fit -o`: one line naming the file and the intact checkpoint, exit 2.

The writers are made to fail at their Nth call with OSError(ENOSPC), as a full disk would (or with
the error types torch and safetensors raise then); nothing saved before is lost, no temporary file
is left behind, and the run resumes from the checkpoint the message names.
"""

from __future__ import annotations

import errno
import os

import pytest
import torch
from _helpers import TINY_RING  # the tiny ring run: steps of 50 images, snapshots and logs every 0.1 kimg

from gmmgan._files import DiskFullError, atomic_write, atomic_write_text, is_disk_full
from gmmgan.cli import main
from gmmgan.gan import run_folder
from gmmgan.gan.checkpoint import CHECKPOINT_NAME, SNAPSHOT_NAME, load_checkpoint, load_snapshot
from gmmgan.gan.config import load_config
from gmmgan.gan.training_loop import train

ENOSPC = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def fail_at(monkeypatch, owner, name: str, n: int, *, partial_file: bool = False) -> dict:
    """Make ``owner.name`` raise ENOSPC at its ``n``-th call (after writing half a file, if asked)."""
    real, calls = getattr(owner, name), {"n": 0}

    def writer(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == n:
            if partial_file:  # the temporary file the atomic writer gave, half written
                with open(args[1], "wb") as f:
                    f.write(b"half a file")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, writer)
    return calls


def train_cli(tmp_path, capsys, *extra) -> tuple[int, str, object]:
    out = tmp_path / "runs"
    code = main(["train", "--out", str(out), *TINY_RING, *extra, "-q"])
    err = capsys.readouterr().err
    runs = sorted(out.iterdir()) if out.is_dir() else []
    return code, err, runs[0] if runs else None


def temp_files(folder):
    return sorted(p.name for p in folder.rglob("*.tmp"))


def assert_one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: no space left on the device while writing '"), err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize("case", ["checkpoint", "snapshot", "log", "samples"])
def test_a_full_disk_during_training_names_the_file_and_the_intact_checkpoint(tmp_path, capsys, monkeypatch, case):
    import matplotlib.figure
    import safetensors.torch

    if case == "checkpoint":  # the 3rd checkpoint (0.2 kimg); the one at 0.1 kimg is kept
        fail_at(monkeypatch, torch, "save", 3, partial_file=True)
        file, kimg = CHECKPOINT_NAME, 0.1
    elif case == "snapshot":  # the snapshot at 0.1 kimg, right after that checkpoint was written
        fail_at(monkeypatch, safetensors.torch, "save_file", 2, partial_file=True)
        file, kimg = SNAPSHOT_NAME, 0.1
    elif case == "log":  # the log line at 0.2 kimg (written before that checkpoint)
        fail_at(monkeypatch, run_folder, "_append", 2)
        file, kimg = "log.jsonl", 0.1
    else:  # the sample plot at 0.15 kimg
        fail_at(monkeypatch, matplotlib.figure.Figure, "savefig", 1)
        file, kimg = "samples-000000.150kimg.png", 0.1
    code, err, run = train_cli(tmp_path, capsys)
    assert code == 2
    line = assert_one_line(err)
    assert file in line and "(No space left on device)" in line
    assert f"The last checkpoint, {run / CHECKPOINT_NAME}, is intact at {kimg:.3f} kimg" in line
    assert line.endswith(f"continue with: gmmgan train --resume {run}")
    # What the message says is on disk, and nothing half-written.
    assert load_checkpoint(run / CHECKPOINT_NAME)["cur_nimg"] == round(kimg * 1000)
    assert load_snapshot(run)[2]["kimg"] == (0.0 if case == "snapshot" else kimg)
    assert temp_files(run) == []
    # Space freed: the run continues from that checkpoint to the end.
    monkeypatch.undo()
    assert main(["train", "--resume", str(run), "-q"]) == 0
    assert load_checkpoint(run / CHECKPOINT_NAME)["cur_nimg"] == 300


def test_a_full_disk_before_the_first_checkpoint_removes_the_new_run_folder(tmp_path, capsys, monkeypatch):
    fail_at(monkeypatch, torch, "save", 1, partial_file=True)
    code, err, run = train_cli(tmp_path, capsys)
    assert code == 2 and run is None
    line = assert_one_line(err)
    assert CHECKPOINT_NAME in line and "before the first checkpoint: nothing to resume" in line
    assert "was removed. Free some space and start the run again." in line


def test_a_full_disk_at_the_final_plot_says_the_run_is_complete(tmp_path, capsys, monkeypatch):
    import matplotlib.figure

    fail_at(monkeypatch, matplotlib.figure.Figure, "savefig", 3)  # samples at 0.15 and 0.3, then final.png
    code, err, run = train_cli(tmp_path, capsys)
    assert code == 2
    line = assert_one_line(err)
    assert "final.png" in line and "after training ended. The run is complete" in line
    assert line.endswith(f"measure it with: gmmgan eval {run}")
    assert load_checkpoint(run / CHECKPOINT_NAME)["cur_nimg"] == 300 and temp_files(run) == []


def test_a_full_disk_on_resume_keeps_the_config_and_names_the_checkpoint(tmp_path, monkeypatch):
    run = tmp_path / "run"
    cfg = load_config(None, [*TINY_RING, "schedule.total_kimg=0.1"])
    train(cfg, run_dir=run, quiet=True)
    before = (run / "config.yaml").read_bytes()
    import gmmgan._files

    fail_at(monkeypatch, gmmgan._files, "_write_text", 1)  # record_config rewrites config.yaml first
    with pytest.raises(DiskFullError, match=r"config.yaml.*is intact at 0\.100 kimg.*--resume") as info:
        train(load_config(None, [*TINY_RING, "schedule.total_kimg=0.2"]), run_dir=run, resume=True, quiet=True)
    assert info.value.errno == errno.ENOSPC and info.value.filename.endswith("config.yaml")
    assert (run / "config.yaml").read_bytes() == before and temp_files(run) == []


def test_fit_output_on_a_full_disk_keeps_the_old_model(tmp_path, capsys, monkeypatch):
    import safetensors.torch

    model = tmp_path / "model.safetensors"
    assert main(["fit", "ring", "-k", "8", "--n-samples", "500", "--max-iter", "5", "-o", str(model), "--no-plot",
                 "-q"]) == 0
    before = model.read_bytes()
    capsys.readouterr()
    fail_at(monkeypatch, safetensors.torch, "save_file", 1, partial_file=True)
    code = main(["fit", "ring", "-k", "8", "--n-samples", "500", "--max-iter", "5", "-o", str(model), "--no-plot",
                 "--force", "-q"])
    err = capsys.readouterr().err
    assert code == 2
    line = assert_one_line(err)
    assert str(model) in line and "the file as it was before is unchanged" in line
    assert model.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]


def test_an_unlabelled_full_disk_error_of_a_command_is_one_line(tmp_path, capsys, monkeypatch):
    # A writer that is not atomic (a plot) fails with the OS's own error: still one line, exit 2.
    import gmmgan.commands.fit as fit_cmd

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "fit.png"))

    monkeypatch.setattr(fit_cmd, "_plot", full)
    code = main(["fit", "ring", "-k", "8", "--n-samples", "500", "--max-iter", "5", "-o", str(tmp_path / "m"),
                 "--plot", str(tmp_path / "fit.png"), "-q"])
    line = assert_one_line(capsys.readouterr().err)
    assert code == 2 and f"while writing '{tmp_path / 'fit.png'}'" in line and "free some space" in line


def test_the_atomic_writer_recognises_a_full_disk_whatever_raised_it(tmp_path, monkeypatch):
    path = tmp_path / "f.bin"
    atomic_write_text(path, "old")

    def safetensors_style(tmp):  # safetensors keeps only the OS's words
        raise RuntimeError("Error while serializing: I/O error: No space left on device (os error 28)")

    def torch_style(tmp):  # torch.save raises its own error while handling the OSError of a file object
        try:
            raise ENOSPC
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598") from None

    for write in (safetensors_style, torch_style):
        with pytest.raises(DiskFullError, match=r"f\.bin' \(No space left on device\); the file as it was before"):
            atomic_write(path, write)
    # torch.save given a path says only "unexpected pos": a file system with no block left tells.
    class Full:
        f_bavail = 0

    def cryptic(tmp):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")

    monkeypatch.setattr(os, "statvfs", lambda folder: Full())
    with pytest.raises(DiskFullError):
        atomic_write(path, cryptic)
    monkeypatch.undo()
    with pytest.raises(RuntimeError, match="unexpected pos"):  # with space left it is another failure
        atomic_write(path, cryptic)
    assert path.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]
    assert not is_disk_full(OSError(errno.EACCES, "Permission denied")) and is_disk_full(ENOSPC)
