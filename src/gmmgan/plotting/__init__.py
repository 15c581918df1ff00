"""Pictures: fitted 2-D mixtures, model-selection curves, training curves and generated samples.

matplotlib (and Pillow, for image grids) are imported only when a picture is drawn.
"""

from gmmgan.plotting.curves import plot_training_curves, read_training_log
from gmmgan.plotting.mixture_2d import full_covariances, plot_gmm_2d
from gmmgan.plotting.samples import plot_comparison, plot_points, save_image_grid
from gmmgan.plotting.selection import plot_criterion

__all__ = [
    "full_covariances",
    "plot_comparison",
    "plot_criterion",
    "plot_gmm_2d",
    "plot_points",
    "plot_training_curves",
    "read_training_log",
    "save_image_grid",
]
