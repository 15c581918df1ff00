"""Datasets: MNIST/Fashion-MNIST IDX files, 2-D Gaussian mixtures, Stacked MNIST, image folders.

Start with :func:`load_dataset` (every dataset by name, as one tensor) and :class:`TensorBatcher`
(shuffled batches on the device, resumable).
"""

from gmmgan.data.batcher import TensorBatcher
from gmmgan.data.folder import load_image_folder
from gmmgan.data.idx import read_idx, write_idx
from gmmgan.data.mnist import limited_subset, load_mnist
from gmmgan.data.registry import DATASET_NAMES, TensorData, from_unit_range, load_dataset, to_unit_range
from gmmgan.data.root import resolve_data_root
from gmmgan.data.stacked import load_stacked_mnist, mode_ids, stack_digits
from gmmgan.data.toy import GRID, RING, TOY_NAMES, MixtureSpec, grid, ring, toy_spec

__all__ = [
    "load_dataset", "DATASET_NAMES", "TensorData", "TensorBatcher", "to_unit_range", "from_unit_range",
    "load_mnist", "limited_subset", "read_idx", "write_idx",
    "MixtureSpec", "RING", "GRID", "TOY_NAMES", "ring", "grid", "toy_spec",
    "stack_digits", "load_stacked_mnist", "mode_ids",
    "load_image_folder", "resolve_data_root",
]
