"""gmmgan.gan.sampling and gmmgan.plotting.samples: seeded sampling, image grids, 2-D scatter plots."""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch
from _helpers import png_size
from PIL import Image
from torch import nn

from gmmgan.data import load_dataset
from gmmgan.gan.embed import IdentityEmbedding
from gmmgan.gan.priors import FixedGMMPrior, GaussianPrior, GMMRegularizedPrior
from gmmgan.gan.sampling import generate, image_grid, write_samples
from gmmgan.plotting.samples import plot_points, save_image_grid

SCATTER_SIZE = (500, 500)  # plot_points: a 5 x 5 inch figure at 100 dpi


def _image_generator(z_dim: int, size: int = 4) -> nn.Module:
    """z (N, z_dim) -> images (N, 1, size, size) in [-1, 1], with fixed weights."""
    lin = nn.Linear(z_dim, size * size)
    with torch.no_grad():
        lin.weight.copy_(torch.linspace(-2, 2, size * size * z_dim).view(size * size, z_dim))
        lin.bias.zero_()
    return nn.Sequential(lin, nn.Tanh(), nn.Unflatten(1, (1, size, size))).eval()


# ----------------------------------------------------------------------------------- generate
def test_generate_is_deterministic_per_seed_and_leaves_the_global_rng_alone():
    G, prior = nn.Identity(), FixedGMMPrior(2, 3)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = generate(G, prior, 50, seed=7, device="cpu")
    assert torch.equal(torch.get_rng_state(), state), "generate drew from the global RNG"
    b = generate(G, prior, 50, seed=7, device="cpu")
    c = generate(G, prior, 50, seed=8, device="cpu")
    assert a.shape == (50, 2)
    assert torch.equal(a, b) and not torch.equal(a, c)
    # What it draws is the prior's own stream from a fresh generator with that seed.
    torch.testing.assert_close(a, prior.sample(50, torch.Generator().manual_seed(7)), rtol=0, atol=0)


def test_generate_in_batches_returns_n_float32_samples_of_the_component():
    prior = FixedGMMPrior(2, 3, sigma=0.01)
    x = generate(lambda z: z.double(), prior, 7, seed=0, device="cpu", component=1, batch=3)
    assert x.shape == (7, 2) and x.dtype == torch.float32
    assert (x - prior.means[1]).abs().max() < 0.1  # every sample from component 1, none from the others


# --------------------------------------------------------------------------------- image grids
@pytest.mark.parametrize("prior, rows", [
    (GaussianPrior(2), 8),  # 64 images, 8 per row
    (FixedGMMPrior(2, 3), 3),  # a row of 8 per component
    (FixedGMMPrior(2, 20), 8),  # too many components for a row each: 64 images
    (GMMRegularizedPrior(2, IdentityEmbedding((16,)), 3), 8),  # a regulariser, not a mixture to sample from
])
def test_image_grid_writes_a_png_of_the_right_size(tmp_path, prior, rows):
    image_grid(tmp_path / "g.png", _image_generator(2), prior, seed=0, device="cpu")
    # 8 columns of 4-pixel images with 2-pixel gaps, one row per 8 images.
    assert png_size(tmp_path / "g.png") == (8 * (4 + 2), rows * (4 + 2))


def test_image_grid_rows_are_the_components(tmp_path):
    G, prior = _image_generator(2), FixedGMMPrior(2, 3, sigma=0.01)
    image_grid(tmp_path / "g.png", G, prior, seed=0, device="cpu")
    grid = np.asarray(Image.open(tmp_path / "g.png")).astype(int)
    cells = [[grid[r * 6 + 1 : r * 6 + 5, q * 6 + 1 : q * 6 + 5] for q in range(8)] for r in range(3)]
    for r in range(3):  # within a row the images barely differ (sigma 0.01); between rows they do
        assert max(np.abs(cell - cells[r][0]).max() for cell in cells[r]) <= 8
    assert min(np.abs(cells[r][0] - cells[s][0]).max() for r in range(3) for s in range(r)) > 20


def test_save_image_grid_maps_minus_one_to_black_and_one_to_white(tmp_path):
    images = torch.stack([torch.full((1, 3, 3), -1.0), torch.full((1, 3, 3), 1.0)])
    save_image_grid(tmp_path / "g.png", images, nrow=2)
    grid = np.asarray(Image.open(tmp_path / "g.png"))
    assert grid.shape == (5, 10)
    assert (grid[1:4, 1:4] == 0).all() and (grid[1:4, 6:9] == 255).all()
    assert (grid[0] == 0).all() and (grid[:, 4:6] == 0).all()  # the gaps
    rgb = tmp_path / "rgb.png"
    save_image_grid(rgb, torch.zeros(3, 3, 2, 2))  # nrow defaults to ceil(sqrt(n)): 2 x 2 cells
    assert Image.open(rgb).mode == "RGB" and png_size(rgb) == (8, 8)
    with pytest.raises(ValueError, match="1 or 3 channels"):
        save_image_grid(tmp_path / "bad.png", torch.zeros(2, 2, 3, 3))


# ------------------------------------------------------------------------------ write_samples
def test_write_samples_plots_2d_data_over_its_modes(tmp_path):
    data = load_dataset("ring", n=100)
    write_samples(tmp_path / "s.png", nn.Identity(), GaussianPrior(2), data, seed=0, device="cpu", kimg=1.0,
                  n_points=300)
    assert png_size(tmp_path / "s.png") == SCATTER_SIZE


def test_write_samples_writes_an_image_grid_for_images(tmp_path):
    images = types.SimpleNamespace(name="images", info={})  # no mixture spec: not 2-D toy data
    write_samples(tmp_path / "s.png", _image_generator(2), FixedGMMPrior(2, 3), images, seed=0, device="cpu",
                  kimg=1.0, n_points=300)
    assert png_size(tmp_path / "s.png") == (48, 18)


def test_plot_points_without_means(tmp_path):
    plot_points(tmp_path / "p.png", torch.randn(50, 2, generator=torch.Generator().manual_seed(0)), title="t")
    assert png_size(tmp_path / "p.png") == SCATTER_SIZE
