"""``gmmgan quickstart``: both priors trained with the same budget, one figure, one table."""

from __future__ import annotations

from gmmgan.cli import main


def test_quickstart_trains_both_priors_and_writes_the_comparison(tmp_path, capsys):
    out = tmp_path / "qs"
    assert main(["quickstart", "-o", str(out), "--kimg", "1"]) == 0
    printed = capsys.readouterr().out
    for name in ("comparison.png", "comparison.md", "fitted_gmm/generator.safetensors",
                 "gaussian/generator.safetensors", "fitted_gmm/metrics.json", "gaussian/metrics.json"):
        assert (out / name).is_file(), name
    table = (out / "comparison.md").read_text()
    assert "| fitted GMM prior |" in table and "| Gaussian prior |" in table
    assert "fitted GMM prior" in printed and "Gaussian prior" in printed
    # Same budget: both runs stopped at the same kimg.
    import json

    kimg = {k: json.loads((out / k / "metrics.json").read_text())["kimg"] for k in ("fitted_gmm", "gaussian")}
    assert kimg["fitted_gmm"] == kimg["gaussian"]
    # The run folders are ordinary run folders: sample works on them.
    assert main(["sample", str(out / "gaussian"), "-n", "10", "-o", str(tmp_path / "s.npy")]) == 0


def test_quickstart_keeps_earlier_results_without_force(tmp_path, capsys):
    out = tmp_path / "qs"
    out.mkdir()
    (out / "comparison.md").write_text("earlier results")
    assert main(["quickstart", "-o", str(out), "--kimg", "1"]) == 2
    assert "--force" in capsys.readouterr().err
    assert (out / "comparison.md").read_text() == "earlier results"


def test_quickstart_budget_must_be_positive(capsys):
    assert main(["quickstart", "--kimg", "0"]) == 2
    assert "greater than 0" in capsys.readouterr().err
