"""checkpoint.pt files that are not gmmgan's: a pickle of Python objects is refused unread, and never called corrupt."""

from __future__ import annotations

import os
import pickle

import pytest
import torch

from gmmgan.gan.checkpoint import CHECKPOINT_NAME, load_checkpoint


class _RunsACommand:
    """Unpickling this would call os.system: only its pickle bytes are ever made (``__reduce__`` returns a tuple)."""

    def __reduce__(self):
        return (os.system, ("echo this must never run",))


class _PlainObject:
    pass


def _guard_os_system(monkeypatch) -> list:
    """Record calls of os.system from now on (set after the pickle is made, which refers to the real one)."""
    calls = []
    monkeypatch.setattr(os, "system", lambda *a: calls.append(a))
    return calls


def _assert_refused_as_not_ours(path, what: str) -> None:
    with pytest.raises(ValueError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert message.startswith(f"'{path}' is not a gmmgan checkpoint: it holds Python objects other than tensors")
    assert what in message and "never runs code from a file" in message
    for hint in ("weights_only", "will likely succeed", "corrupt", "truncated", "trust"):
        assert hint not in message, hint


def test_a_checkpoint_holding_a_call_to_os_system_is_refused_and_not_unpickled(tmp_path, monkeypatch):
    path = tmp_path / CHECKPOINT_NAME
    torch.save({"format": "gmmgan.gan.training_loop-state", "version": 1, "G": _RunsACommand()}, path)
    no_system = _guard_os_system(monkeypatch)
    _assert_refused_as_not_ours(path, "(posix.system)" if os.name == "posix" else "system")
    assert no_system == []


def test_a_plain_pickle_of_a_custom_class_is_refused_the_same_way(tmp_path, monkeypatch):
    path = tmp_path / CHECKPOINT_NAME
    path.write_bytes(pickle.dumps({"obj": _PlainObject(), "cmd": _RunsACommand()}))  # the old non-zip format
    no_system = _guard_os_system(monkeypatch)
    _assert_refused_as_not_ours(path, "test_checkpoint_files._PlainObject")
    assert no_system == []


def test_damaged_pickle_data_are_still_called_corrupt_without_torchs_hint(tmp_path):
    path = tmp_path / CHECKPOINT_NAME
    path.write_bytes(b"\x80\x02\xff\xff\xff")  # a pickle header, then garbage
    with pytest.raises(ValueError, match="is corrupt or truncated") as info:
        load_checkpoint(path)
    assert "weights_only" not in str(info.value) and "will likely succeed" not in str(info.value)


def test_resuming_from_such_a_file_is_one_error_line(tmp_path, monkeypatch, capsys):
    from gmmgan.cli import main
    from gmmgan.gan.config import load_config, save_config

    run = tmp_path / "run"
    save_config(load_config(None, ["data.name=ring", "device=cpu"]), run / "config.yaml")
    torch.save({"G": _RunsACommand()}, run / CHECKPOINT_NAME)
    no_system = _guard_os_system(monkeypatch)
    assert main(["train", "--resume", str(run), "-q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert "is not a gmmgan checkpoint: it holds Python objects" in err and "weights_only" not in err
    assert no_system == []
