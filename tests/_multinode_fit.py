"""One rank of a distributed ``GaussianMixture.fit``, for tests/test_distributed_multinode.py.

    torchrun --nnodes 2 --nproc_per_node 1 --rdzv_backend c10d --rdzv_endpoint HOST:PORT \
        tests/_multinode_fit.py X.npy OUT.npz MEANS_INIT.npy

Every rank joins the process group torchrun describes (gloo on the CPU), memory-maps the shared
``X.npy``, fits its own shard (:func:`gmmgan.distributed.shard_range`) twice with :func:`estimator`
(float64, a fixed random_state): initialised by k-means++, then from ``MEANS_INIT.npy``. Rank 0
saves the fitted parameters, ``n_iter_`` and ``lower_bound_`` of each (keys ``k-means++.means_``,
``means_init.means_``, ...) and ``layout``: (RANK, LOCAL_RANK, GROUP_RANK, GROUP_WORLD_SIZE) of
every rank, as torchrun set them, to ``OUT.npz``. The test compares the fits with one process's
fit of :func:`estimator` on all the rows.
"""

from __future__ import annotations

import os
import sys
import warnings

import numpy as np

PARAMS = ("weights_", "means_", "covariances_", "precisions_cholesky_")


def estimator(means_init=None):
    """The mixture fitted in every process and in the one-process reference (k-means++ without means_init)."""
    from gmmgan import GaussianMixture

    return GaussianMixture(4, covariance_type="full", dtype="float64", random_state=3, max_iter=200, tol=1e-6,
                           chunk_size=64, means_init=means_init)


def main(argv: list[str]) -> int:
    import torch
    import torch.distributed as dist

    from gmmgan import distributed

    data, out, means_init = argv
    torch.set_num_threads(1)
    distributed.init_from_env("cpu")
    try:
        layout = [None] * distributed.world_size()
        dist.all_gather_object(layout, [int(os.environ[k]) for k in ("RANK", "LOCAL_RANK", "GROUP_RANK",
                                                                     "GROUP_WORLD_SIZE")])
        X = np.load(data, mmap_mode="r")
        rows = distributed.shard_range(len(X))
        shard = np.array(X[rows.start : rows.stop])
        saved = {"layout": np.array(layout)}
        for name, init in (("k-means++", None), ("means_init", np.load(means_init))):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # a ConvergenceWarning would be the one-process fit's too
                gm = estimator(init).fit(shard)
            saved.update({f"{name}.n_iter_": gm.n_iter_, f"{name}.lower_bound_": gm.lower_bound_})
            saved.update({f"{name}.{p}": np.asarray(getattr(gm, p)) for p in PARAMS})
        if distributed.is_main():
            np.savez(out, **saved)
        distributed.shutdown(synchronize=True)
    finally:
        distributed.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
