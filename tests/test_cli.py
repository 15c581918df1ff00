"""The gmmgan command line as a whole: ``gmmgan --help`` (and every command's) starts without torch."""

import subprocess
import sys

import pytest

from gmmgan.cli import _COMMANDS

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
