"""`gmmgan train` with a learned embedding (prior.embed=autoencoder): its file, its reuse, resume, bad options."""

from __future__ import annotations

import pytest
import torch
from _helpers import TINY_RING, assert_clean_error, cli

from gmmgan.gan.checkpoint import load_snapshot
from gmmgan.gan.embedding_file import EMBEDDING_NAME

AE = ("data.name=mnist-limited", "data.per_class=4", "prior.embed=autoencoder", "prior.embed_dim=4",
      "prior.embed_epochs=2", "prior.embed_width=4", "prior.n_components=3", "prior.noise_dim=2",
      "prior.warm_start_steps=2", "nets.g_width=4", "nets.d_width=4", "schedule.batch_size=8",
      "schedule.total_kimg=0.016", "schedule.snapshot_kimg=0.008", "schedule.sample_kimg=0", "device=cpu")


def embedding_state(run):
    from safetensors.torch import load_file

    return load_file(str(run / EMBEDDING_NAME))


@pytest.fixture
def ae_run(mnist_root, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("GMMGAN_DATA", str(mnist_root))
    rc, out, err = cli(capsys, "train", "--out", tmp_path / "a", *AE)
    assert rc == 0, err
    assert "embedding: AutoencoderEmbedding trained" in out
    (run,) = (tmp_path / "a").iterdir()
    return run


def test_the_run_keeps_its_embedding_and_the_snapshot_samples_from_it(ae_run, tmp_path, capsys):
    saved = embedding_state(ae_run)
    _, prior_state, _ = load_snapshot(ae_run)
    for name, tensor in saved.items():
        assert torch.equal(prior_state[f"embedding.{name}"], tensor), name
    rc, _, err = cli(capsys, "sample", ae_run, "-n", 4, "--component", 1, "-o", tmp_path / "g.npy")
    assert rc == 0, err


def test_a_second_run_reuses_the_embedding_instead_of_training_one(ae_run, tmp_path, capsys):
    rc, out, err = cli(capsys, "train", "--out", tmp_path / "b", *AE, "seed=3", f"prior.embed_from={ae_run}")
    assert rc == 0, err
    assert "reusing" in out and "AutoencoderEmbedding trained" not in out
    (run,) = (tmp_path / "b").iterdir()
    for name, tensor in embedding_state(ae_run).items():
        assert torch.equal(embedding_state(run)[name], tensor), name
    assert str(ae_run / EMBEDDING_NAME) in (run / "config.yaml").read_text()  # which file, on record


def test_resume_never_trains_the_embedding_again(ae_run, capsys):
    before = embedding_state(ae_run)
    rc, out, err = cli(capsys, "train", "--resume", ae_run, "schedule.total_kimg=0.032")
    assert rc == 0, err
    assert "resumed" in out and "embedding" not in out
    for name, tensor in before.items():
        assert torch.equal(embedding_state(ae_run)[name], tensor), name


def test_an_embedding_of_other_data_is_refused_before_a_folder_is_made(ae_run, fashion_mnist_root, tmp_path, capsys,
                                                                       monkeypatch):
    monkeypatch.setenv("GMMGAN_DATA", str(fashion_mnist_root))
    other = [a.replace("mnist-limited", "fashion-mnist-limited") for a in AE]
    rc, _, err = cli(capsys, "train", "--out", tmp_path / "c", *other, f"prior.embed_from={ae_run}")
    assert_clean_error(rc, err, "trained on other data", "fashion-mnist-limited")
    assert not (tmp_path / "c").exists() or not any((tmp_path / "c").iterdir())
    rc, _, err = cli(capsys, "train", "--out", tmp_path / "c", *AE, "prior.embed_width=8", f"prior.embed_from={ae_run}")
    assert_clean_error(rc, err, "width=4", "width=8")


def test_an_autoencoder_on_2d_points_is_a_clean_error(tmp_path, capsys):
    rc, _, err = cli(capsys, "train", "--out", tmp_path, *TINY_RING, "prior.embed=autoencoder")
    assert_clean_error(rc, err, "needs images", "prior.embed=identity")
    assert not any(tmp_path.iterdir())
