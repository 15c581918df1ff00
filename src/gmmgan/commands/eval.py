"""``gmmgan eval``: the metrics of DESIGN.md section 6 on a trained run, and the feature classifiers."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

__all__ = ["add_parser", "run"]

_EPILOG = """\
what is measured, by the run's data set:
  ring, grid        modes captured, high-quality %, reverse KL on -n samples (default 2,500) per
                    seed, mean +- standard error over --seeds (DESIGN section 5)
  stacked-mnist     modes (of 1,000) and KL on -n samples (default 26,000), each channel classified
                    by the MNIST feature classifier
  mnist, fashion-mnist (and their -limited subsets)
                    FID, KID, precision, recall, density, coverage on -n samples (default 10,000)
                    against the train set, beside the real-test vs real-train reference
Results go to RUN/eval.json (or -o FILE) and are printed; the metrics.json that training
wrote at its end is left as it is.

examples:
  gmmgan eval train-classifier --dataset mnist --data-root ../shared/data
  gmmgan eval runs/00000-grid-fitted_gmm --seeds 0,1,2,3,4,5,6,7,8,9
  gmmgan eval runs/00003-stacked_mnist-fitted_gmm --device cuda
"""

_IMAGE_SETS = {"mnist": "mnist", "mnist-limited": "mnist", "fashion-mnist": "fashion-mnist",
               "fashion-mnist-limited": "fashion-mnist"}


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not seeds:
        raise argparse.ArgumentTypeError("give at least one seed")
    return seeds


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "eval", help="evaluate a trained run, or train the metrics' feature classifier",
        description="Evaluate a run folder written by 'gmmgan train' (TARGET = the run folder), or "
        "train the feature classifier the image metrics use (TARGET = train-classifier).",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("target", metavar="TARGET", help="a run folder, or 'train-classifier'")
    p.add_argument("-n", "--n-samples", type=int, default=None, metavar="N", help="samples per seed (default: by data set)")
    p.add_argument("--seeds", type=_seeds, default=[0], metavar="S,S,...", help="sampling seeds (default: 0)")
    p.add_argument("--device", default="cpu", metavar="DEVICE", help="cpu, cuda or cuda:N (default: cpu)")
    p.add_argument("--data-root", default=None, metavar="DIR",
                   help="folder with MNIST/ and FashionMNIST/ (default: $GMMGAN_DATA_ROOT, else the run's data.root)")
    p.add_argument("--cache-dir", default=None, metavar="DIR",
                   help="feature-classifier cache (default: $GMMGAN_CACHE/classifiers)")
    p.add_argument("-o", "--output", default=None, metavar="FILE", help="metrics JSON (default: RUN/eval.json)")
    p.add_argument("--dataset", choices=("mnist", "fashion-mnist"), default="mnist",
                   help="train-classifier only: which classifier (default: mnist)")
    p.add_argument("--epochs", type=int, default=None, help="train-classifier only: epochs (default: the library's)")
    return p


def _mean_se(values: list[float]) -> tuple[float, float]:
    m = sum(values) / len(values)
    if len(values) < 2:
        return m, float("nan")
    var = sum((v - m) ** 2 for v in values) / (len(values) - 1)
    return m, math.sqrt(var / len(values))


def run(args) -> int:
    from gmmgan.cli import EXIT_OK, console

    if args.target == "train-classifier":
        from gmmgan.metrics import train_classifier

        result = train_classifier(args.dataset, root=args.data_root, out_dir=args.cache_dir,
                                  epochs=args.epochs, device=args.device, seed=args.seeds[0])
        console.print(f"trained the {args.dataset} classifier: {result}", soft_wrap=True)
        return EXIT_OK

    from gmmgan.config import config_from_dict
    from gmmgan.train import _generate, load_generator, resolve_device

    device = resolve_device(args.device)
    G, prior, meta = load_generator(args.target, device)
    name = config_from_dict(meta["config"]).data.name
    report: dict = {"run": str(args.target), "data": name, "kimg": meta["kimg"], "seeds": args.seeds}
    if name in ("ring", "grid"):
        from gmmgan.data.toy import GRID, RING
        from gmmgan.metrics import mode_coverage

        spec = RING if name == "ring" else GRID
        n = args.n_samples or 2500
        rows = [mode_coverage(_generate(G, prior, n, s, device).cpu(), spec) for s in args.seeds]
        for field in ("modes_captured", "hq_fraction", "reverse_kl"):
            m, se = _mean_se([float(getattr(r, field)) for r in rows])
            report[field] = {"mean": m, "se": se, "per_seed": [float(getattr(r, field)) for r in rows]}
            console.print(f"{field:15s} {m:.4f} +- {se:.4f}  (n={n}, {len(rows)} seed(s))")
        report["kl_floor"] = float(rows[0].kl_floor)
    elif name == "stacked-mnist":
        from gmmgan.metrics import load_classifier, stacked_mnist_modes

        clf = load_classifier("mnist", args.cache_dir, device=device)
        n = args.n_samples or 26_000
        modes = [stacked_mnist_modes((_generate(G, prior, n, s, device) + 1) / 2, clf) for s in args.seeds]
        for field in ("modes", "reverse_kl"):
            m, se = _mean_se([float(getattr(r, field)) for r in modes])
            report[field] = {"mean": m, "se": se}
            console.print(f"{field:11s} {m:.4f} +- {se:.4f}  (n={n}, {len(modes)} seed(s))")
    elif name in _IMAGE_SETS:
        import os

        from gmmgan.data.mnist import load_mnist
        from gmmgan.metrics import image_metrics, load_classifier

        dataset = _IMAGE_SETS[name]
        root = args.data_root or os.environ.get("GMMGAN_DATA_ROOT") or meta["config"]["data"].get("root") or "data"
        clf = load_classifier(dataset, args.cache_dir, device=device)
        train, _ = load_mnist(root, "train", dataset)
        test, _ = load_mnist(root, "test", dataset)
        n = args.n_samples or 10_000
        fake = (_generate(G, prior, n, args.seeds[0], device).clamp(-1, 1) + 1) / 2
        result = image_metrics(fake.cpu(), train.unsqueeze(1), clf, reference_images=test.unsqueeze(1))
        console.print(result.format(), soft_wrap=True)
        report["metrics"] = json.loads(json.dumps(result, default=lambda o: getattr(o, "__dict__", str(o))))
    else:
        raise ValueError(f"gmmgan eval does not know how to evaluate data set {name!r} yet.")
    run_dir = Path(args.target) if Path(args.target).is_dir() else Path(args.target).parent
    out = Path(args.output) if args.output else run_dir / "eval.json"
    if out.is_dir():
        out = out / "eval.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    console.print(f"wrote {out}")
    return EXIT_OK
