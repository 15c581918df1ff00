"""What a perfect model of the Stacked-MNIST training set scores: the real data's own modes and KL.

The protocol's KL(p_hat || uniform over 1,000) has two parts a generator cannot remove: the
sampling floor of 26,000 draws (999 / (2 N) = 0.0192) and MNIST's own uneven digit frequencies (1
is 11.2% of the digits, 5 is 9.0%), which every triple inherits. This script measures both on real
data, as a generator that reproduced its training set exactly would be measured: for each data seed
(the run seed, which picks the 128,000 training triples), 26,000 real training images drawn without
replacement, each channel labelled once by its true digit and once by the project's MNIST classifier
(what ``gmmgan eval`` uses), reported as modes, KL and its split into the channels' KLs and their
total correlation (``gmmgan.metrics.modes_from_digits``).

    PYTHONPATH=src python -m benchmarks.stacked_real_reference --data-root DATA --seeds 0-9 \\
        -o benchmarks/results/stacked_real_reference_cpu.json
"""

from __future__ import annotations

import argparse

from benchmarks._common import machine_info, write_json

N_EVAL = 26_000


def _mean_se(values) -> dict:
    from gmmgan._stats import mean_se

    return mean_se([float(v) for v in values])


def reference(data_root, seeds, classifier, n_train: int = 128_000, n_eval: int = N_EVAL) -> dict:
    """Per seed and over seeds: modes, KL, channel KLs and total correlation of real training triples."""
    import torch

    from gmmgan.data import stack_digits
    from gmmgan.data.mnist import load_mnist
    from gmmgan.metrics import classify_channels, modes_from_digits

    mnist_images, mnist_labels = load_mnist(data_root, "all", "mnist")  # once: load_stacked_mnist would re-read and re-check it per seed
    rows = []
    for seed in seeds:
        images, triples = stack_digits(mnist_images, mnist_labels, n_train, seed)  # as load_stacked_mnist(data_root, n_train, seed)
        pick = torch.randperm(n_train, generator=torch.Generator().manual_seed(seed))[:n_eval]
        row = {"seed": seed}
        for label, digits in (("true_digits", triples[pick]), ("classifier", None)):
            if digits is None:
                digits = classify_channels(images[pick], classifier)
            r = modes_from_digits(digits)
            row[label] = {"modes": r.modes, "reverse_kl": r.reverse_kl, "channel_kl": r.channel_kl,
                          "total_correlation": r.total_correlation}
        rows.append(row)
        print(f"seed {seed}: KL {row['true_digits']['reverse_kl']:.4f} (true digits), "
              f"{row['classifier']['reverse_kl']:.4f} (classifier); modes {row['classifier']['modes']}")
    summary = {}
    for label in ("true_digits", "classifier"):
        summary[label] = {
            "modes": _mean_se(r[label]["modes"] for r in rows),
            "reverse_kl": _mean_se(r[label]["reverse_kl"] for r in rows),
            "channel_kl": [_mean_se(r[label]["channel_kl"][c] for r in rows) for c in range(3)],
            "total_correlation": _mean_se(r[label]["total_correlation"] for r in rows),
        }
    return {"n_train": n_train, "n_eval": n_eval, "kl_floor": 999 / (2 * n_eval), "summary": summary, "per_seed": rows}


def main(argv=None) -> int:
    from gmmgan._seeds import parse_seeds
    from gmmgan.data.root import resolve_data_root
    from gmmgan.metrics import load_classifier

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", default=None, help="folder with MNIST/raw (default: $GMMGAN_DATA, else ./data)")
    p.add_argument("--cache-dir", default=None, help="where the MNIST classifier is cached (default: gmmgan's)")
    p.add_argument("--seeds", default="0-9", help="data seeds, e.g. 0-9 or 0,3 (default: 0-9)")
    p.add_argument("--device", default="cpu", help="device of the classifier (default: cpu)")
    p.add_argument("-o", "--output", default=None, help="JSON output (default: print only)")
    a = p.parse_args(argv)
    root = resolve_data_root(a.data_root)
    clf = load_classifier("mnist", a.cache_dir, a.device)
    out = reference(root, parse_seeds(a.seeds), clf)
    s = out["summary"]
    for label in ("true_digits", "classifier"):
        print(f"{label:11s}: modes {s[label]['modes']['mean']:.1f}, KL {s[label]['reverse_kl']['mean']:.4f} "
              f"± {s[label]['reverse_kl']['se']:.4f} (channels "
              + " ".join(f"{c['mean']:.4f}" for c in s[label]["channel_kl"])
              + f", total correlation {s[label]['total_correlation']['mean']:.4f}); floor {out['kl_floor']:.4f}")
    if a.output:
        out["machine"] = machine_info()
        out["classifier"] = {k: clf.info.get(k) for k in ("test_accuracy", "sha256")}
        write_json(a.output, out)
        print(f"wrote {a.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
