"""`gmmgan sample -o FILE.npy` streams: samples are generated and written block by block.

Memory stays at a block or two, whatever -n is, and the file holds exactly the samples that one
in-memory call of ``generate`` gives (same seed).
"""

import weakref

import numpy as np
import pytest
import torch

from gmmgan.cli import main
from gmmgan.commands import sample as sample_cmd
from gmmgan.gan import sampling
from gmmgan.gan.sampling import generate, load_generator


def _cli(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize("n, component", [(5003, None), (2500, None), (7, 3)])
def test_streamed_samples_are_those_of_one_block(ring_run, tmp_path, capsys, n, component):
    out = tmp_path / "s.npy"
    extra = [] if component is None else ["--component", component]
    rc, _, err = _cli(capsys, "sample", ring_run, "-n", n, "--seed", 11, "-o", out, *extra)
    assert rc == 0, err
    G, prior, _ = load_generator(ring_run)
    whole = generate(G, prior, n, 11, torch.device("cpu"), component=component).numpy()
    got = np.load(out)
    assert got.dtype == np.float32 and got.shape == (n, 2)
    np.testing.assert_array_equal(got, whole)


@pytest.mark.parametrize("block", [1, 7, 64, 1000])
def test_the_writer_gives_the_same_array_for_any_block_size(tmp_path, monkeypatch, block):
    monkeypatch.setattr(sample_cmd, "_FLUSH_BYTES", 100)  # flush often, too
    data = torch.arange(1000 * 3, dtype=torch.float32).reshape(1000, 3) / 7
    path = tmp_path / f"b{block}.npy"
    sample_cmd._write_npy(path, (data[i : i + block] for i in range(0, 1000, block)), (1000, 3))
    np.testing.assert_array_equal(np.load(path), data.numpy())
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_at_most_two_blocks_are_alive_at_once(ring_run, tmp_path, capsys, monkeypatch):
    real = sampling.generate_blocks
    alive, most = [], [0]

    def counted(*args, **kwargs):
        for block in real(*args, batch=100, **{k: v for k, v in kwargs.items() if k != "batch"}):
            alive.append(weakref.ref(block))
            most[0] = max(most[0], sum(r() is not None for r in alive))
            yield block

    def whole(*args, **kwargs):
        raise AssertionError("the .npy output must not be generated in one piece")

    monkeypatch.setattr(sampling, "generate_blocks", counted)
    monkeypatch.setattr(sampling, "generate", whole)
    rc, _, err = _cli(capsys, "sample", ring_run, "-n", 3000, "-o", tmp_path / "s.npy")
    assert rc == 0, err
    assert len(alive) == 30 and most[0] <= 2


def test_an_interrupted_write_leaves_no_file(tmp_path):
    def blocks():
        yield torch.zeros(10, 2)
        raise KeyboardInterrupt

    path = tmp_path / "s.npy"
    with pytest.raises(KeyboardInterrupt):
        sample_cmd._write_npy(path, blocks(), (20, 2))
    assert list(tmp_path.iterdir()) == []
