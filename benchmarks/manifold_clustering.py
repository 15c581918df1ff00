"""N2D-style clustering of MNIST: codes -> ManifoldMap (UMAP-style) -> GaussianMixture, against the GMM on the codes.

The codes are a PCA of the pixels (``--whiten`` to whiten them) (a stand-in for autoencoder codes), fitted on the
training images. Prints the accuracy (Hungarian) and NMI of a full-covariance GMM with 10
components on the manifold coordinates and on the codes alone, the accuracy of ``transform()`` on
held-out test images, and the wall times.

    PYTHONPATH=src python -m benchmarks.manifold_clustering --n 10000 --n-test 2000 --device cpu
"""

from __future__ import annotations

import argparse
import time


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=10000, help="training images (first N of the train split)")
    p.add_argument("--n-test", type=int, default=2000, help="held-out test images for transform()")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-root", default=None,
                   help="folder holding MNIST/raw (default: $GMMGAN_DATA, else ./data)")
    p.add_argument("--pca-dim", type=int, default=50, help="dimension of the PCA codes (default: 50)")
    p.add_argument("--whiten", action="store_true", help="whiten the PCA codes (default: raw principal components)")
    p.add_argument("--n-components", type=int, default=10, help="manifold dimension (default: 10)")
    p.add_argument("--n-epochs", type=int, default=200)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: 1)")
    args = p.parse_args(argv)

    import torch

    from gmmgan import GaussianMixture
    from gmmgan.data import load_mnist, to_unit_range
    from gmmgan.gan.embed import PCAEmbedding
    from gmmgan.gan.manifold import ManifoldMap
    from gmmgan.metrics.clustering import clustering_accuracy, normalized_mutual_info

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    from gmmgan.data.root import resolve_data_root

    root = resolve_data_root(args.data_root)
    images, labels = load_mnist(root, "train")
    test_images, test_labels = load_mnist(root, "test")
    x = to_unit_range(images[: args.n, None]).to(device)
    xt = to_unit_range(test_images[: args.n_test, None]).to(device)
    y, yt = labels[: args.n].numpy(), test_labels[: args.n_test].numpy()

    pca = PCAEmbedding((1, 28, 28), args.pca_dim, whiten=args.whiten, seed=args.seed).fit(x)
    codes, test_codes = pca.encode(x), pca.encode(xt)

    def gmm_scores(name, z, zt=None):
        gmm = GaussianMixture(10, covariance_type="full", random_state=args.seed).fit(z)
        pred = gmm.predict(z).cpu().numpy()
        line = (f"{name:<28} train acc {clustering_accuracy(y, pred):.4f}  "
                f"NMI {normalized_mutual_info(y, pred):.4f}")
        if zt is not None:
            pt = gmm.predict(zt).cpu().numpy()
            line += f"  | test acc {clustering_accuracy(yt, pt):.4f}  NMI {normalized_mutual_info(yt, pt):.4f}"
        print(line)

    print(f"MNIST: {args.n} train / {args.n_test} test images, PCA {args.pca_dim} codes{' (whitened)' * args.whiten}, "
          f"device {device}, seed {args.seed}, {torch.get_num_threads()} CPU thread(s)")
    gmm_scores("GMM on PCA codes", codes, test_codes)

    mm = ManifoldMap(n_components=args.n_components, n_neighbors=20, min_dist=0.0, n_epochs=args.n_epochs,
                     seed=args.seed)
    sync()
    t0 = time.perf_counter()
    coords = mm.fit_transform(codes)
    sync()
    t_fit = time.perf_counter() - t0
    t0 = time.perf_counter()
    test_coords = mm.transform(test_codes)
    sync()
    t_tr = time.perf_counter() - t0
    gmm_scores(f"GMM on ManifoldMap({args.n_components})", coords, test_coords)
    print(f"ManifoldMap fit {t_fit:.2f} s, transform of {args.n_test} codes {t_tr:.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
