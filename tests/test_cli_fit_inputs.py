"""`gmmgan fit` inputs: text files with a byte-order mark, and fits too large for memory."""

import numpy as np
import pytest

from gmmgan.cli import main
from gmmgan.commands.fit import load_data

BOM = "\ufeff"


def _cli(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


# ------------------------------------------------------------------------- byte-order mark
@pytest.mark.parametrize("name, text", [
    ("rows.csv", "1.5,2\n3,4\n5,6.25\n"),
    ("rows.txt", "1.5 2\n3 4\n5 6.25\n"),
    ("comment.csv", "# exported\n1.5,2\n3,4\n5,6.25\n"),
])
def test_a_byte_order_mark_does_not_eat_the_first_row(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(BOM + text, encoding="utf-8")
    X, description = load_data(str(path))
    np.testing.assert_array_equal(X, [[1.5, 2], [3, 4], [5, 6.25]])
    assert "header" not in description


def test_a_byte_order_mark_before_a_header(tmp_path):
    path = tmp_path / "with_header.csv"
    path.write_text(BOM + "x,y\n1,2\n3,4\n", encoding="utf-8")
    X, description = load_data(str(path))
    np.testing.assert_array_equal(X, [[1, 2], [3, 4]])
    assert "header line skipped" in description


def test_fit_of_a_csv_with_a_byte_order_mark_uses_every_row(tmp_path, capsys):
    rows = np.random.default_rng(0).normal(size=(12, 2))
    path = tmp_path / "excel.csv"
    path.write_bytes(BOM.encode() + "\n".join(",".join(f"{v:.6f}" for v in r) for r in rows).encode() + b"\n")
    rc, out, err = _cli(capsys, "fit", path, "-k", 2, "-o", tmp_path / "m.safetensors", "--no-plot")
    assert rc == 0, err
    assert "12 × 2" in out and "header" not in out
