"""``gmmgan data download`` against a local HTTP server on 127.0.0.1 (tests never reach out)."""

from __future__ import annotations

import functools
import http.server
import shutil
import threading
from pathlib import Path

import pytest

from gmmgan.cli import main
from gmmgan.data.download import download_dataset, files_of
from gmmgan.data.idx import md5sum


def _serve(folder: Path):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *a, **k: None  # keep pytest's output clean
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


@pytest.fixture()
def mirror(tmp_path, mnist_root):
    """A mirror serving MNIST's four files (copied so a test may corrupt one)."""
    src = mnist_root / "MNIST" / "raw"
    folder = tmp_path / "mirror"
    shutil.copytree(src, folder)
    server, url = _serve(folder)
    yield folder, url
    server.shutdown()
    server.server_close()


def test_download_writes_the_four_verified_files_and_skips_them_next_time(mirror, tmp_path, capsys):
    folder, url = mirror
    root = tmp_path / "data"
    assert main(["data", "download", "mnist", "--root", str(root), "--mirror", url]) == 0
    raw = root / "MNIST" / "raw"
    for name, md5 in files_of("mnist"):
        assert md5sum(raw / name) == md5
    assert not list(raw.glob(".*.tmp")), "a temporary file was left behind"
    assert "downloaded 4 file(s)" in capsys.readouterr().out
    # Present and verified: nothing is fetched again, even with the mirror gone.
    shutil.rmtree(folder)
    assert main(["data", "download", "mnist", "--root", str(root), "--mirror", url]) == 0
    assert "already there" in capsys.readouterr().out
    # And the loader reads what was downloaded.
    from gmmgan.data import load_mnist

    images, labels = load_mnist(root, split="test")
    assert images.shape[0] == 10000 and labels.shape == (10000,)


def test_a_corrupted_file_is_refused_and_not_kept(mirror, tmp_path, capsys):
    folder, url = mirror
    name = files_of("mnist")[1][0]  # the small train-labels file
    data = bytearray((folder / name).read_bytes())
    data[100] ^= 0xFF
    (folder / name).write_bytes(bytes(data))
    root = tmp_path / "data"
    assert main(["data", "download", "mnist", "--root", str(root), "--mirror", url]) == 2
    err = capsys.readouterr().err
    assert "md5" in err and name in err and "nothing was kept" in err
    raw = root / "MNIST" / "raw"
    assert not (raw / name).exists()
    assert not list(raw.glob(".*")), "the refused file's temporary copy was kept"
    # The file fetched before the bad one is intact and verified.
    first, md5 = files_of("mnist")[0]
    assert md5sum(raw / first) == md5


def test_offline_names_the_url_tried_and_the_files_to_place_by_hand(tmp_path):
    server, url = _serve(tmp_path)  # a server that has none of the files (404)
    server.shutdown()
    server.server_close()  # now nothing listens there: connection refused, as offline
    with pytest.raises(OSError) as info:
        download_dataset("fashion-mnist", tmp_path / "data", mirror=url)
    message = str(info.value)
    assert url + "train-images-idx3-ubyte.gz" in message
    assert "t10k-labels-idx1-ubyte.gz" in message and str(tmp_path / "data" / "FashionMNIST" / "raw") in message


def test_a_missing_file_on_the_mirror_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    server, url = _serve(tmp_path / "empty")
    try:
        assert main(["data", "download", "mnist", "--root", str(tmp_path / "d"), "--mirror", url]) == 2
    finally:
        server.shutdown()
        server.server_close()
    err = capsys.readouterr().err
    assert "404" in err or "Not Found" in err
    assert "could not download train-images-idx3-ubyte.gz" in err


def test_unknown_dataset_is_a_usage_error(capsys):
    assert main(["data", "download", "cifar10"]) == 2
    assert "invalid choice" in capsys.readouterr().err


def test_training_with_data_download_fetches_the_files_first(mirror, tmp_path, monkeypatch):
    from gmmgan.data import download as download_module
    from gmmgan.gan.config import load_config
    from gmmgan.gan.training_loop import load_training_data

    _, url = mirror
    monkeypatch.setattr(download_module, "MIRRORS", {"mnist": (url,), "fashion-mnist": (url,)})
    root = tmp_path / "data"
    cfg = load_config(None, ["data.name=mnist-limited", "data.per_class=2", f"data.root={root}",
                             "data.download=true"])
    data = load_training_data(cfg, __import__("torch").device("cpu"))
    assert tuple(data.shape) == (1, 28, 28) and len(data.data) == 20
    assert (root / "MNIST" / "raw" / "train-images-idx3-ubyte.gz").is_file()


def test_without_data_download_nothing_is_fetched(tmp_path):
    from gmmgan.gan.config import load_config
    from gmmgan.gan.training_loop import load_training_data

    cfg = load_config(None, ["data.name=mnist", f"data.root={tmp_path}"])
    with pytest.raises(FileNotFoundError, match="not found"):
        load_training_data(cfg, __import__("torch").device("cpu"))
    assert not (tmp_path / "MNIST").exists()
