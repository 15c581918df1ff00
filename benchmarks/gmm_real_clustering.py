"""The reference beside the clustering table (docs/protocols.md, 'Targets'): the fitted GMM alone on real data.

``gmmgan eval RUN --metrics clustering`` scores the *generator*: images generated from each
mixture component, labelled by the feature classifier, accuracy (Hungarian) and NMI against the
component. This script scores the run's *prior* on real data: each real test image goes to the
component of highest posterior in the prior's embedding (the PCA the GMM was fitted in), compared
with its true label. The two side by side say whether adversarial training kept, lost or improved
the clustering the fitted GMM started from.

    PYTHONPATH=src python -m benchmarks.gmm_real_clustering RUN --data-root DATA --device cuda
"""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmarks._common import write_json


def gmm_real_clustering(prior, images, labels, device, batch: int = 2000) -> dict:
    """Accuracy / NMI of the prior's mixture on ``images`` (uint8, (N, 28, 28)) against ``labels``."""
    import torch

    from gmmgan.data import to_unit_range
    from gmmgan.metrics import clustering_scores

    mix = prior.mixture
    normal = torch.distributions.MultivariateNormal(mix.means, scale_tril=mix.scale_tril, validate_args=False)
    log_w = mix.weights.clamp_min(1e-30).log()
    comps = []
    with torch.no_grad():
        for s in range(0, images.shape[0], batch):
            x = to_unit_range(images[s : s + batch, None]).to(device)  # the [-1, 1] images the prior was fitted on
            e = prior.embedding.encode(x).float()
            comps.append((normal.log_prob(e[:, None, :]) + log_w).argmax(1).cpu())
    scores = clustering_scores(labels, torch.cat(comps))
    return {"accuracy": scores.accuracy, "nmi": scores.nmi, "n_samples": scores.n_samples,
            "n_clusters": scores.n_clusters}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", help="run folder written by 'gmmgan train' with prior.kind=fitted_gmm (MNIST / Fashion-MNIST)")
    p.add_argument("--data-root", default=None,
                   help="folder with MNIST/raw and FashionMNIST/raw (default: the run's data.root, else "
                   "$GMMGAN_DATA, else ./data)")
    p.add_argument("--split", choices=("test", "train"), default="test", help="real images to cluster (default: test)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    p.add_argument("-o", "--output", default=None, help="JSON output (default: RUN/gmm_real_clustering.json)")
    args = p.parse_args(argv)

    from gmmgan._device import resolve_device
    from gmmgan.data import load_mnist
    from gmmgan.data.root import resolve_data_root
    from gmmgan.gan.config import config_from_dict
    from gmmgan.gan.training_loop import load_generator

    device = resolve_device(args.device)
    _, prior, meta = load_generator(args.run, device)
    cfg = config_from_dict(meta["config"])
    if not hasattr(prior, "mixture") or not hasattr(prior, "embedding") or cfg.prior.kind != "fitted_gmm":
        p.error(f"{args.run} has prior.kind={cfg.prior.kind}; this reference needs a fitted GMM prior (fitted_gmm).")
    dataset = cfg.data.name.removesuffix("-limited")
    if dataset not in ("mnist", "fashion-mnist"):
        p.error(f"the reference uses the labels of MNIST / Fashion-MNIST, not of {cfg.data.name}.")
    root = resolve_data_root(args.data_root or cfg.data.root)
    images, labels = load_mnist(root, args.split, dataset)
    report = {"run": str(args.run), "data": cfg.data.name, "split": args.split, "n_components": prior.n_components,
              **gmm_real_clustering(prior, images, labels, device)}
    print(f"fitted GMM ({prior.n_components} components) on the real {args.split} images: "
          f"accuracy {report['accuracy']:.4f}, NMI {report['nmi']:.4f}")
    run_dir = Path(args.run) if Path(args.run).is_dir() else Path(args.run).parent
    out = Path(args.output) if args.output else run_dir / "gmm_real_clustering.json"
    write_json(out, report)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
