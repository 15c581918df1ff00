"""schedule.keep_snapshots: copies of the generator snapshot for the last N snapshot times, in RUN/snapshots/."""

from __future__ import annotations

import pytest
from _helpers import TINY_RING

from gmmgan.cli import main
from gmmgan.gan.checkpoint import SNAPSHOT_NAME, load_snapshot
from gmmgan.gan.config import load_config
from gmmgan.gan.run_folder import SNAPSHOTS_DIR, snapshot_path
from gmmgan.gan.training_loop import load_generator, train


def tiny(*extra):  # snapshots at 0, 0.1, 0.2, 0.3, 0.4 kimg
    return load_config(None, [*TINY_RING, "schedule.sample_kimg=0", "schedule.total_kimg=0.4", *extra])


def kept(run) -> list[str]:
    return sorted(p.name for p in (run / SNAPSHOTS_DIR).iterdir())


def test_the_last_n_snapshots_are_kept_and_older_ones_deleted(tmp_path):
    run = tmp_path / "run"
    train(tiny("schedule.keep_snapshots=2"), run_dir=run, quiet=True)
    assert kept(run) == ["generator-000000.300kimg.safetensors", "generator-000000.400kimg.safetensors"]
    for kimg in (0.3, 0.4):
        assert load_snapshot(snapshot_path(run, kimg))[2]["kimg"] == kimg
    assert snapshot_path(run, 0.4).read_bytes() == (run / SNAPSHOT_NAME).read_bytes()
    meta = load_generator(snapshot_path(run, 0.3))[2]  # gmmgan sample / eval read them too
    assert meta["kimg"] == 0.3 and meta["step"] == 6


def test_a_resumed_run_goes_on_keeping_and_pruning(tmp_path):
    run = tmp_path / "run"
    train(tiny("schedule.keep_snapshots=3", "schedule.total_kimg=0.2"), run_dir=run, quiet=True)
    assert kept(run) == [f"generator-000000.{k}00kimg.safetensors" for k in (0, 1, 2)]
    train(tiny("schedule.keep_snapshots=3"), run_dir=run, resume=True, quiet=True)
    assert kept(run) == [f"generator-000000.{k}00kimg.safetensors" for k in (2, 3, 4)]


def test_by_default_only_the_latest_snapshot_is_kept(tmp_path):
    run = tmp_path / "run"
    train(tiny(), run_dir=run, quiet=True)
    assert not (run / SNAPSHOTS_DIR).exists() and load_snapshot(run)[2]["kimg"] == 0.4


def test_sampling_from_a_kept_snapshot_through_the_cli(tmp_path, capsys):
    run = tmp_path / "run"
    train(tiny("schedule.keep_snapshots=1", "schedule.total_kimg=0.1"), run_dir=run, quiet=True)
    out = tmp_path / "s.npy"
    assert main(["sample", str(snapshot_path(run, 0.1)), "-n", "10", "-o", str(out)]) == 0
    assert out.is_file()


@pytest.mark.parametrize("value, message", [("-1", "schedule.keep_snapshots must be >= 0"),
                                            ("1.5", "schedule.keep_snapshots must be an integer")])
def test_keep_snapshots_is_checked(value, message):
    with pytest.raises(ValueError, match=message):
        load_config(None, [f"schedule.keep_snapshots={value}"])
    assert load_config(None, ["schedule.keep_snapshots=5"]).schedule.keep_snapshots == 5
