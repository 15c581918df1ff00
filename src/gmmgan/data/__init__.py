"""Datasets: MNIST/Fashion-MNIST IDX files, 2-D Gaussian mixtures, Stacked MNIST, image folders."""

from gmmgan.data.idx import read_idx, write_idx
from gmmgan.data.mnist import load_mnist
from gmmgan.data.toy import GRID, RING, MixtureSpec, grid, ring

__all__ = ["load_mnist", "read_idx", "write_idx", "MixtureSpec", "RING", "GRID", "ring", "grid"]
