"""The gmmgan command line as a whole (gmmgan.cli): help without torch, options and overrides in any
order, hints, OS errors."""

import subprocess
import sys

import pytest
from _helpers import TINY_RING, assert_clean_error, cli

import gmmgan
from gmmgan.cli import _COMMANDS
from gmmgan.gan.config import load_config

# torch (and matplotlib) take seconds to import; help texts must not wait for them.
HEAVY = ("torch", "matplotlib")

PROBE = """
import sys
from gmmgan.cli import main
rc = main(sys.argv[1:])
heavy = [m for m in {heavy!r} if m in sys.modules]
print("imported:", ",".join(heavy) or "-")
sys.exit(rc if not heavy else 99)
"""


@pytest.mark.parametrize("argv", [["--help"], ["--version"], *([c, "--help"] for c in _COMMANDS)],
                         ids=lambda argv: " ".join(argv))
def test_help_does_not_import_torch(argv):
    # A fresh interpreter: in this one, other tests have imported torch long ago.
    proc = subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY), *argv],
                          capture_output=True, text=True, timeout=120, check=False)
    assert "imported: -" in proc.stdout, f"gmmgan {' '.join(argv)} imported {proc.stdout.splitlines()[-1:]}"
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_unknown_option_points_at_the_subcommand_help(capsys):
    rc, _, err = cli(capsys, "fit", "ring", "--covarance-type", "full")
    assert rc == 2 and "--covarance-type" in err and "gmmgan fit --help" in err


def test_overrides_on_both_sides_of_an_option_are_all_applied(tmp_path, capsys):
    # Both groups are read: the unknown key after --out is reported as a config key, not as an argument.
    rc, _, err = cli(capsys, "train", "seed=1", "--out", tmp_path, "bogus.key=1")
    assert_clean_error(rc, err, "unknown config key 'bogus.key'")
    rc, _, err = cli(capsys, "train", "seed=1", "--out", tmp_path, "--not-an-option")
    assert_clean_error(rc, err, "unrecognized arguments: --not-an-option")
    rc, _, err = cli(capsys, "fit", "ring", "k=3")
    assert_clean_error(rc, err, "unrecognized arguments: k=3")


def test_split_overrides_reach_the_saved_config(tmp_path, capsys):
    half = len(TINY_RING) // 2
    rc, _, err = cli(capsys, "train", *TINY_RING[:half], "--out", tmp_path, "-q", *TINY_RING[half:], "seed=5")
    assert rc == 0, err
    (run,) = tmp_path.iterdir()
    cfg = load_config(run / "config.yaml")
    assert cfg.seed == 5 and cfg.eval_samples == 300 and cfg.data.name == "ring"


def test_os_errors_name_the_path_and_the_fix(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    rc, _, err = cli(capsys, "fit", "ring", "-k", "2", "--n-samples", "200", "--no-plot", "-q",
                     "-o", tmp_path / "afile" / "m.safetensors")
    assert_clean_error(rc, err, "cannot use", "afile", "choose another path")
    assert "[Errno" not in err
    assert (tmp_path / "afile").read_text() == "x"


def test_help_and_version(capsys):
    rc, out, _ = cli(capsys, "--help")
    assert rc == 0 and "fit" in out and "--version" in out and "examples:" in out
    rc, out, _ = cli(capsys, "--version")
    assert rc == 0 and out.strip() == f"gmmgan {gmmgan.__version__}"
    rc, out, _ = cli(capsys)  # no command: help, usage error status
    assert rc == 2 and "COMMAND" in out
