"""Run folders: no empty folder after a failed start, resume checks, log trimmed on resume, Ctrl-C messages."""

from __future__ import annotations

import json

import pytest
from _helpers import TINY_TRAIN as TINY  # the tiny ring run of the training-loop tests
from _helpers import tiny_train_config as tiny

from gmmgan.gan import seed_run, train_step
from gmmgan.gan.checkpoint import CHECKPOINT_NAME
from gmmgan.gan.run_folder import make_run_dir, trim_log
from gmmgan.gan.training_loop import TrainingInterrupted, train


def test_a_bad_config_leaves_no_run_folder(tmp_path):
    out = tmp_path / "runs"
    with pytest.raises(ValueError):
        train(tiny("data.name=folder", f"data.root={tmp_path / 'missing'}", f"out={out}"), quiet=True)
    assert not out.exists() or not any(out.iterdir())


def test_a_failure_before_the_first_checkpoint_removes_the_new_folder(tmp_path, monkeypatch):
    out = tmp_path / "runs"

    def broken_warm_start(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(seed_run, "_warm_start", broken_warm_start)
    with pytest.raises(RuntimeError, match="boom"):
        train(tiny(f"out={out}"), quiet=True)
    assert list(out.iterdir()) == []
    # A folder the caller gave that existed before is never removed, whatever it holds.
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(RuntimeError, match="boom"):
        train(tiny(), run_dir=mine, quiet=True)
    assert (mine / "notes.txt").read_text() == "keep me"


def test_ctrl_c_before_the_first_checkpoint_says_there_is_nothing_to_resume(tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(seed_run, "_warm_start", interrupted)
    with pytest.raises(TrainingInterrupted, match="nothing to resume; the new run folder .* was removed"):
        train(tiny(f"out={tmp_path / 'runs'}"), quiet=True)
    assert list((tmp_path / "runs").iterdir()) == []


def test_ctrl_c_during_training_names_the_checkpoint_and_the_resume_command(tmp_path, monkeypatch):
    run = tmp_path / "run"
    real_call = train_step.TrainStep.__call__
    calls = {"n": 0}

    def step(self, *args):
        calls["n"] += 1
        if calls["n"] == 5:  # after the snapshot at 0.2 kimg (4 steps of 50)
            raise KeyboardInterrupt
        return real_call(self, *args)

    monkeypatch.setattr(train_step.TrainStep, "__call__", step)
    with pytest.raises(TrainingInterrupted) as info:
        train(tiny(), run_dir=run, quiet=True)
    message = str(info.value)
    assert "interrupted at 0.2 kimg" in message and str(run / CHECKPOINT_NAME) in message
    assert f"gmmgan train --resume {run}" in message
    monkeypatch.setattr(train_step.TrainStep, "__call__", real_call)
    assert train(tiny(), run_dir=run, resume=True, quiet=True)["kimg"] == 0.4


def test_ctrl_c_through_the_cli_exits_130_with_the_resume_command(tmp_path, monkeypatch, capsys):
    from gmmgan.cli import main

    def step(self, *args):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_step.TrainStep, "__call__", step)
    code = main(["train", *TINY, "--out", str(tmp_path / "runs"), "-q"])
    err = capsys.readouterr().err
    assert code == 130
    assert "interrupted at 0.0 kimg" in err and "--resume" in err


def test_resuming_a_finished_run_is_an_error_and_writes_nothing(tmp_path):
    run = tmp_path / "run"
    train(tiny(), run_dir=run, quiet=True)
    config = (run / "config.yaml").read_text()
    for total in ("0.4", "0.2"):
        with pytest.raises(ValueError, match=r"already at 0\.4 kimg .* raise it"):
            train(tiny(f"schedule.total_kimg={total}"), run_dir=run, resume=True, quiet=True)
    assert (run / "config.yaml").read_text() == config


def test_resume_drops_log_lines_written_after_the_checkpoint(tmp_path):
    run = tmp_path / "run"
    train(tiny("schedule.total_kimg=0.2"), run_dir=run, quiet=True)
    with open(run / "log.jsonl", "a") as f:  # a run that logged past its checkpoint, then crashed mid-line
        f.write(json.dumps({"kimg": 0.3, "step": 6}) + "\n" + '{"kimg": 0.')
    train(tiny(), run_dir=run, resume=True, quiet=True)
    kimgs = [json.loads(line)["kimg"] for line in (run / "log.jsonl").read_text().splitlines()]
    assert kimgs == [0.1, 0.2, 0.3, 0.4]


def test_trim_log_keeps_lines_up_to_the_checkpoint(tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text("".join(json.dumps({"kimg": k}) + "\n" for k in (0.1, 0.2, 0.3)) + "not json\n")
    assert trim_log(log, 0.2) == 2
    assert [json.loads(line)["kimg"] for line in log.read_text().splitlines()] == [0.1, 0.2]
    assert trim_log(log, 0.2) == 0
    assert trim_log(tmp_path / "missing.jsonl", 1.0) == 0


def test_make_run_dir_numbers_after_existing_runs_and_skips_taken_names(tmp_path):
    assert make_run_dir(tmp_path, "ring").name == "00000-ring"
    assert make_run_dir(tmp_path, "ring").name == "00001-ring"
    (tmp_path / "00002-ring").write_text("a file, not a run: its name is taken")
    assert make_run_dir(tmp_path, "ring").name == "00003-ring"


def test_a_snapshot_whose_weights_do_not_fit_its_config_is_a_clear_error(tmp_path):
    from gmmgan.gan.checkpoint import load_snapshot, save_snapshot
    from gmmgan.gan.training_loop import load_generator

    run = tmp_path / "run"
    train(tiny("schedule.total_kimg=0.1"), run_dir=run, quiet=True)
    g_state, p_state, meta = load_snapshot(run)
    meta["config"]["nets"]["g_width"] = 999  # the weights were trained with width 16
    save_snapshot(run / "generator.safetensors", g_state, p_state, meta)
    with pytest.raises(ValueError, match="corrupt: its weights do not fit its own config"):
        load_generator(run)
