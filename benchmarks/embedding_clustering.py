"""How well each embedding lets a Gaussian mixture cluster real images, before any GAN is trained.

For each data set and each ``prior.embed`` (PCA, the autoencoder, ...), this fits the fitted
prior exactly as ``gmmgan train`` does (:func:`gmmgan.gan.priors.build_prior`, then
``fit_embedding`` and ``fit_mixture`` on the training images: the embedding, then a K-component
GMM in it) and scores the mixture's clusters on
the real test images against their labels (accuracy with Hungarian matching, NMI;
:func:`benchmarks.gmm_real_clustering.gmm_real_clustering`). The labels are used for the score
only. It prints the time of each embedding's fit, for the "well under a minute" goal.

    PYTHONPATH=src python -m benchmarks.embedding_clustering --datasets mnist,fashion-mnist \\
        --embeds pca,autoencoder,manifold,contrastive --seeds 100-102 --device cuda --data-root DATA --json out.json

On a CPU, train on a subset and skip the 60,000 training images' score (``--n``, ``--epochs``,
``--threads``, ``--no-train-score``), e.g. 10,000 images, 25 epochs, one thread:

    PYTHONPATH=src python -m benchmarks.embedding_clustering --embeds contrastive --n 10000 --epochs 25 \\
        --threads 1 --no-train-score --seeds 0 --device cpu --set fit_n_init=5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from benchmarks._common import machine_info, write_json


def score_embedding(dataset: str, embed: str, seed: int, device, data_root, overrides: dict,
                    train_score: bool = True) -> dict:
    import torch

    from benchmarks.gmm_real_clustering import gmm_real_clustering
    from gmmgan.data import load_dataset
    from gmmgan.data.mnist import load_mnist
    from gmmgan.gan.config import PriorConfig
    from gmmgan.gan.priors import build_prior

    train = load_dataset(dataset, data_root, "train", device=device)
    cfg = PriorConfig(**{"kind": "fitted_gmm", "embed": embed, "embed_dim": 32, "n_components": 10,
                         "covariance_type": "full", "reg_covar": 1e-4, "fit_samples": 60_000, **overrides})
    torch.manual_seed(seed)
    prior = build_prior(cfg, train.shape, seed).to(device)
    t0 = time.perf_counter()
    codes = prior.fit_embedding(train.data)  # as gmmgan train does: a learned embedding trains here
    if device.type == "cuda":
        torch.cuda.synchronize()
    t_embed = time.perf_counter() - t0
    prior.fit_mixture(codes)
    t_total = time.perf_counter() - t0
    images, labels = load_mnist(data_root, "test", dataset=dataset.replace("-limited", ""))
    test = gmm_real_clustering(prior, images, labels, device)
    on_train = {"accuracy": None, "nmi": None}  # not scored
    if train_score:
        train_images, train_labels = load_mnist(data_root, "train", dataset=dataset.replace("-limited", ""))
        on_train = gmm_real_clustering(prior, train_images, train_labels, device)
    return {"dataset": dataset, "embed": embed, "seed": seed, "embed_seconds": t_embed, "fit_seconds": t_total,
            "test_accuracy": test["accuracy"], "test_nmi": test["nmi"], "train_accuracy": on_train["accuracy"],
            "train_nmi": on_train["nmi"], "prior": {k: v for k, v in vars(cfg).items()}}


def main(argv=None) -> int:
    import torch

    from gmmgan._device import resolve_device
    from gmmgan._seeds import parse_seeds
    from gmmgan._stats import mean_se
    from gmmgan.data.root import resolve_data_root

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", default="mnist")
    p.add_argument("--embeds", default="pca,autoencoder,manifold")
    p.add_argument("--seeds", default="100")
    p.add_argument("--device", default="auto")
    p.add_argument("--data-root", default=None)
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="PriorConfig fields for every embedding, e.g. embed_epochs=20 covariance_type=diag")
    p.add_argument("--n", type=int, default=None,
                   help="train the embedding and the GMM on this many training images (prior.fit_samples; default 60000)")
    p.add_argument("--epochs", type=int, default=None, help="prior.embed_epochs (default: the config's, 10)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--no-train-score", action="store_true", help="score the test images only (saves time on a CPU)")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    data_root = str(resolve_data_root(args.data_root))  # --data-root, else $GMMGAN_DATA, else ./data
    overrides = {}
    for item in args.set:
        key, value = item.split("=", 1)
        overrides[key] = int(value) if value.lstrip("-").isdigit() else value
    for key, value in (("fit_samples", args.n), ("embed_epochs", args.epochs)):
        if value is not None:
            overrides[key] = value
    rows = []
    for dataset in args.datasets.split(","):
        for embed in args.embeds.split(","):
            runs = []
            for seed in parse_seeds(args.seeds):
                runs.append(score_embedding(dataset, embed, seed, device, data_root, overrides, not args.no_train_score))
                r = runs[-1]
                print(f"  seed {seed}: test accuracy {r['test_accuracy']:.4f} NMI {r['test_nmi']:.4f}; embedding "
                      f"trained in {r['embed_seconds']:.1f} s, prior fitted in {r['fit_seconds']:.1f} s in all", flush=True)
            rows += runs
            acc, nmi = mean_se([r["test_accuracy"] for r in runs]), mean_se([r["test_nmi"] for r in runs])
            secs = statistics.mean(r["embed_seconds"] for r in runs)
            on_train = ("" if runs[0]["train_accuracy"] is None else
                        f"train acc {statistics.mean(r['train_accuracy'] for r in runs):.4f}; ")
            print(f"{dataset:14s} {embed:12s} test accuracy {acc['mean']:.4f} ± {acc['se'] or 0:.4f}  "
                  f"NMI {nmi['mean']:.4f} ± {nmi['se'] or 0:.4f}  ({on_train}embedding {secs:.1f} s; {len(runs)} seeds)",
                  flush=True)
    if args.json:
        write_json(args.json, {"machine": machine_info(cuda=torch.cuda.is_available()), "rows": rows,
                               "command": " ".join(["python -m benchmarks.embedding_clustering",
                                                      *(sys.argv[1:] if argv is None else argv)])})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
