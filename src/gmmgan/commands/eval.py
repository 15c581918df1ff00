"""``gmmgan eval``: the metrics of docs/protocols.md on a trained run, and the feature classifiers."""

from __future__ import annotations

import argparse
import difflib
import json
import math
from pathlib import Path

from gmmgan._device import resolve_device
from gmmgan._seeds import parse_seeds
from gmmgan._stats import mean_se
from gmmgan.commands._args import device_name, positive_int
from gmmgan.commands._outputs import check_output_path
from gmmgan.commands.sample import _run_path

__all__ = ["add_parser", "run"]

_EPILOG = """\
what is measured, by the run's data set (--metrics picks a subset):
  ring, grid        modes: modes captured, high-quality %, reverse KL on -n samples (default
                    2,500) per seed, mean +- standard error over --seeds (docs/protocols.md)
  stacked-mnist     modes: modes (of 1,000) and KL on -n samples (default 26,000) per seed, each
                    channel classified by the MNIST feature classifier
                    (an -n under 5 samples per mode gets a warning: the KL is then mostly noise)
  mnist, fashion-mnist (and their -limited subsets)
                    fid, kid, prdc: FID, KID, precision/recall/density/coverage of -n samples
                    (default 10,000) per seed against the full train split, beside the same
                    metrics of as many real test images (the real-vs-real reference);
                    clustering: accuracy (Hungarian) and NMI of the classifier's labels against
                    the mixture component each image came from (mixture priors, K >= 2)
  folder            fid, kid, prdc in the feature space of an autoencoder trained on the run's
                    image folder (once per folder, resolution and channels; cached in --cache-dir),
                    against half of the folder, beside the other half (the real-vs-real
                    reference; -n defaults to that half's size, at most 10,000). Comparable only
                    between runs on the same folder, never with Inception or MNIST-classifier FIDs
Results go to RUN/eval.json (or -o FILE) and are printed; the metrics.json that training
wrote at its end is left as it is. The curves of RUN/log.jsonl (losses, images/s against kimg)
are plotted next to it as <name>_curves.png (--no-plots: not).
Image metrics need the feature classifier, trained once per data set (train-classifier).
An existing eval.json, or a cached classifier, is not replaced without --force.

examples:
  gmmgan eval train-classifier --dataset mnist --data-root DIR
  gmmgan eval runs/00000-grid-fitted_gmm --seeds 0-9
  gmmgan eval runs/00003-stacked-mnist-fitted_gmm --device cuda
  gmmgan eval runs/00004-mnist-limited-fitted_gmm --metrics fid,clustering --data-root DIR
  gmmgan eval runs/00005-folder-fitted_gmm -n 2000
"""

# data set of a run -> (kind of evaluation, feature classifier)
_DATASETS = {
    "ring": ("2d", None), "grid": ("2d", None), "stacked-mnist": ("stacked", "mnist"),
    "mnist": ("images", "mnist"), "mnist-limited": ("images", "mnist"),
    "fashion-mnist": ("images", "fashion-mnist"), "fashion-mnist-limited": ("images", "fashion-mnist"),
    "folder": ("folder", None),
}
_METRICS = {"2d": ("modes",), "stacked": ("modes",), "images": ("fid", "kid", "prdc", "clustering"),
            "folder": ("fid", "kid", "prdc")}
_ALL_METRICS = tuple(dict.fromkeys(m for names in _METRICS.values() for m in names))
_DEFAULT_N = {"2d": 2500, "stacked": 26_000, "images": 10_000, "folder": None}  # folder: its held-out half
_NEAREST_K = 5  # PRDC's k (docs/protocols.md, section 'Image metrics')


def _seeds(text: str) -> list[int]:
    """--seeds as train's: ``0-9``, ``0,1,5`` or ``0-4,10`` (:func:`gmmgan._seeds.parse_seeds`)."""
    try:
        return parse_seeds(text, "--seeds")
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _metric_names(text: str) -> list[str]:
    if any(not s.strip() for s in text.split(",")):
        raise argparse.ArgumentTypeError(f"empty item in {text!r}; give comma-separated names such as fid,kid")
    names = [s.strip().lower() for s in text.split(",") if s.strip()]
    unknown = [s for s in names if s not in _ALL_METRICS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown metric {', '.join(map(repr, unknown)) or repr(text)}; choose from {', '.join(_ALL_METRICS)}")
    return list(dict.fromkeys(names))


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "eval", help="evaluate a trained run, or train the metrics' feature classifier",
        description="Evaluate a run folder written by 'gmmgan train' (TARGET = the run folder), or "
        "train the feature classifier the image metrics use (TARGET = train-classifier).",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("target", metavar="TARGET", help="a run folder, or 'train-classifier'")
    p.add_argument("-n", "--n-samples", type=positive_int, default=None, metavar="N",
                   help="samples per seed (default: 2,500 for ring/grid, 26,000 for stacked-mnist, 10,000 for images, "
                   "the held-out half of the folder (at most 10,000) for folder runs)")
    p.add_argument("--seeds", type=_seeds, default=[0], metavar="SEEDS",
                   help="sampling seeds: 0-9, 0,1,5 or 0-4,10 (default: 0)")
    p.add_argument("--metrics", type=_metric_names, default=None, metavar="NAME,...",
                   help=f"what to compute, from {', '.join(_ALL_METRICS)} (default: all that apply to the run)")
    p.add_argument("--device", type=device_name, default="cpu", metavar="DEVICE", help="auto, cpu, cuda or cuda:N (default: cpu)")
    p.add_argument("--data-root", default=None, metavar="DIR",
                   help="folder with MNIST/raw and FashionMNIST/raw, or a folder run's image folder (default: the "
                   "run's data.root, else $GMMGAN_DATA, else ./data)")
    p.add_argument("--cache-dir", default=None, metavar="DIR",
                   help="feature-classifier cache, also of folder runs' encoders (default: $GMMGAN_CACHE, "
                   "else ~/.cache/gmmgan/classifiers)")
    p.add_argument("-o", "--output", default=None, metavar="FILE", help="metrics JSON (default: RUN/eval.json)")
    p.add_argument("--no-plots", dest="plots", action="store_false",
                   help="do not plot the training curves of RUN/log.jsonl")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="print only warnings and errors (the metrics still go to the JSON)")
    p.add_argument("--force", action="store_true",
                   help="replace an existing eval.json (or -o FILE); with train-classifier, replace the cached "
                   "classifier (its sha256 changes: FID/KID measured with the old one are no longer comparable)")
    # None, not the real defaults: an option given to the wrong TARGET is an error, not silently ignored.
    p.add_argument("--dataset", choices=("mnist", "fashion-mnist"), default=None,
                   help="train-classifier only: which classifier (default: mnist)")
    p.add_argument("--epochs", type=positive_int, default=None,
                   help="train-classifier only: epochs (default: the library's)")
    return p


# Below this many samples per mode the reverse KL is mostly sampling noise, and its perfect-sampler
# floor (K - 1) / 2n, an approximation for many samples per mode, is no longer a good reference.
_MIN_SAMPLES_PER_MODE = 5


def _n_modes(name: str) -> int:
    """The number of modes the mode metrics count for data set ``name`` (ring, grid, stacked-mnist)."""
    if name == "stacked-mnist":
        from gmmgan.metrics.stacked import N_MODES

        return N_MODES
    from gmmgan.data.toy import toy_spec

    return toy_spec(name).n_components


def _few_samples_warning(n: int, modes: int, name: str, default: int) -> str | None:
    """One line when -n is too small for the mode metrics to mean much (None when it is not)."""
    if n < modes:
        return (f"-n {n} is fewer than the {modes} modes of {name}: at most {n} modes can be captured, and the "
                f"reverse KL and its floor are not meaningful; use -n {default} (the protocol's) or more.")
    if n < _MIN_SAMPLES_PER_MODE * modes:
        return (f"-n {n} is only {n / modes:.1f} samples per mode of {name}: the reverse KL is then mostly "
                f"sampling noise; use -n {default} (the protocol's) or more.")
    return None


def _generate(G, prior, n, seed, device, component=None):
    """n samples of G from a generator seeded with ``seed`` (training's sampler)."""
    # Imported on use: the CLI imports every command before it needs torch.
    from gmmgan.gan.sampling import generate

    return generate(G, prior, n, seed, device, component=component)


def _fmt(stat: dict) -> str:
    return f"{stat['mean']:.4f}" + ("" if stat["se"] is None else f" +- {stat['se']:.4f}")


def _data_root(args, meta: dict):
    """Where the IDX files are: as training looked for them, unless --data-root says otherwise."""
    from gmmgan.data.root import resolve_data_root

    return resolve_data_root(args.data_root or meta["config"]["data"].get("root"))


def _check_28px(shape: tuple[int, ...], channels: int, name: str) -> None:
    if tuple(shape) != (channels, 28, 28):
        raise ValueError(
            f"the {name} metrics classify {channels}x28x28 images with the 28-pixel feature classifier, but "
            f"this run generates {'x'.join(map(str, shape))} images (data.resolution); evaluate a 28-pixel run.")


def _classifier(dataset: str, args, device):
    from gmmgan.metrics import load_classifier

    try:
        return load_classifier(dataset, args.cache_dir, device=device)
    except FileNotFoundError as e:
        if not args.cache_dir:
            raise
        raise FileNotFoundError(f"{e} (add --cache-dir {args.cache_dir} to train-classifier to train it there)") from None


def _eval_2d(name, G, prior, n, args, device, say) -> dict:
    from gmmgan.data.toy import toy_spec
    from gmmgan.metrics import mode_coverage

    spec = toy_spec(name)
    rows = [mode_coverage(_generate(G, prior, n, s, device).cpu(), spec) for s in args.seeds]
    out = {}
    for field in ("modes_captured", "hq_fraction", "reverse_kl"):
        out[field] = mean_se([float(getattr(r, field)) for r in rows])
        say(f"{field:15s} {_fmt(out[field])}")
    out["n_modes"] = rows[0].n_modes
    out["kl_floor"] = float(rows[0].kl_floor)
    say(f"(n={n} per seed, {len(rows)} seed(s); perfect-sampler KL floor {rows[0].kl_floor:.4f})")
    return out


def _eval_stacked(G, prior, shape, n, args, device, say) -> dict:
    from gmmgan.metrics import stacked_mnist_modes

    _check_28px(shape, 3, "Stacked-MNIST")
    clf = _classifier("mnist", args, device)
    rows = [stacked_mnist_modes((_generate(G, prior, n, s, device).clamp(-1, 1) + 1) / 2, clf) for s in args.seeds]
    out = {}
    for field in ("modes", "reverse_kl"):
        out[field] = mean_se([float(getattr(r, field)) for r in rows])
        say(f"{field:11s} {_fmt(out[field])}")
    out["kl_floor"] = float(rows[0].kl_floor)
    # reverse_kl = sum(channel_kl) + total_correlation: which part is uneven, each channel's digits or their pairing.
    out["channel_kl"] = [mean_se([float(r.channel_kl[c]) for r in rows]) for c in range(3)]
    out["total_correlation"] = mean_se([float(r.total_correlation) for r in rows])
    say(f"{'channel KL':11s} " + "  ".join(f"{c['mean']:.4f}" for c in out["channel_kl"])
        + f"  (channels 0-2); total correlation {out['total_correlation']['mean']:.4f}")
    out["feature_network"] = {k: clf.info.get(k) for k in ("dataset", "test_accuracy", "sha256")}
    say(f"(n={n} per seed, {len(rows)} seed(s), of 1,000 modes; perfect-sampler KL floor {rows[0].kl_floor:.4f}; "
        f"MNIST classifier test accuracy {clf.info.get('test_accuracy', float('nan')):.4f})")
    return out


def _eval_images(name, dataset, G, prior, meta, shape, n, metrics, args, device, say) -> dict:
    import torch

    from gmmgan.data.mnist import load_mnist
    from gmmgan.gan.priors import GMMRegularizedPrior
    from gmmgan.metrics import component_clustering, feature_metrics

    _check_28px(shape, 1, "image")
    k = prior.n_components
    clusterable = k >= 2 and not isinstance(prior, GMMRegularizedPrior)  # gmm_reg samples z ~ N(0, I)
    if "clustering" in metrics and not clusterable:
        if args.metrics is not None:
            raise ValueError(
                f"clustering scores the mixture component of each image, but this run's prior "
                f"({meta['config']['prior']['kind']}, {k} component(s)) has no components to generate from; "
                "use fitted_gmm, fixed_gmm or learnable_gmm with 2 or more components.")
        metrics = [m for m in metrics if m != "clustering"]
        say(f"(no clustering: the {meta['config']['prior']['kind']} prior has no mixture components to generate from)")
    distribution = [m for m in metrics if m != "clustering"]
    if distribution and n <= _NEAREST_K:
        raise ValueError(f"-n {n} is too few for FID/KID/PRDC: give more than {_NEAREST_K} samples per seed.")
    clf = _classifier(dataset, args, device)
    out: dict = {"metric_names": metrics}

    def fake(seed, component=None, count=n):
        return (_generate(G, prior, count, seed, device, component=component).clamp(-1, 1) + 1) / 2

    if distribution:
        root = _data_root(args, meta)
        train, _ = load_mnist(root, "train", dataset)
        test, _ = load_mnist(root, "test", dataset)
        real_f = clf.features(train).cpu()
        # The reference is as many real test images as generated ones: FID/KID depend on the count.
        n_ref = min(n, test.shape[0])
        pick = torch.randperm(test.shape[0], generator=torch.Generator().manual_seed(0))[:n_ref]
        ref = feature_metrics(real_f, clf.features(test[pick]).cpu(), nearest_k=_NEAREST_K)
        rows = [feature_metrics(real_f, clf.features(fake(s)).cpu(), nearest_k=_NEAREST_K, seed=s) for s in args.seeds]
        fields = [f for m, fs in (("fid", ("fid",)), ("kid", ("kid_mean", "kid_std")),
                                  ("prdc", ("precision", "recall", "density", "coverage"))) if m in metrics for f in fs]
        stats = {f: mean_se([float(getattr(r, f)) for r in rows]) for f in fields}
        out["metrics"] = _model_vs_reference(stats, rows, ref, fields, say)
        note = "" if n_ref == n else f" (the test split has only {n_ref}: FID/KID of model and reference not comparable)"
        say(f"n: {n} generated per seed ({len(rows)} seed(s)), {n_ref} real test images{note}, against "
            f"{train.shape[0]} real train images ({dataset} train split)")
    if "clustering" in metrics:
        per = math.ceil(n / k)
        scores = []
        for s in args.seeds:
            images = torch.cat([fake(s + 1000 * c, component=c, count=per) for c in range(k)])
            comps = torch.arange(k).repeat_interleave(per)
            scores.append(component_clustering(images, comps, clf))
        out["clustering"] = {f: mean_se([float(getattr(r, f)) for r in scores]) for f in ("accuracy", "nmi")}
        out["clustering"]["n_per_component"] = per
        say(f"clustering accuracy {_fmt(out['clustering']['accuracy'])}, NMI {_fmt(out['clustering']['nmi'])} "
            f"({k} components x {per} images per seed)")
    out.setdefault("metrics", {})["feature_network"] = {f: clf.info.get(f) for f in ("dataset", "test_accuracy", "sha256")}
    say(f"features: {dataset} classifier, test accuracy {clf.info.get('test_accuracy', float('nan')):.4f}")
    return out


_FOLDER_REF_MAX = 10_000  # held-out images of a folder, at most (the size of the MNIST test split)


def _eval_folder(G, prior, meta, shape, metrics, args, device, say) -> dict:
    """FID/KID/PRDC of a folder run in the feature space of an autoencoder trained on the folder."""
    import torch

    from gmmgan.data.folder import load_image_folder
    from gmmgan.metrics import feature_metrics
    from gmmgan.metrics.classifier import default_cache_dir
    from gmmgan.metrics.folder_features import load_or_train_folder_encoder

    data = meta["config"]["data"]
    folder = args.data_root or data.get("root")
    if not folder:
        raise ValueError("this folder run records no image folder (data.root); give it with --data-root DIR.")
    images = load_image_folder(folder, shape[-1], channels=shape[0], max_images=data.get("n"))
    n_images = images.shape[0]
    if n_images < 2 * (_NEAREST_K + 1):
        raise ValueError(f"{folder} has {n_images} images; FID/KID/PRDC need more than {2 * _NEAREST_K} "
                         f"(half of them are the held-out reference): at least {2 * (_NEAREST_K + 1)}.")
    # Half of the folder (at most 10,000 images) is held out: real-vs-real is it against the rest.
    n_ref = min(n_images // 2, _FOLDER_REF_MAX)
    perm = torch.randperm(n_images, generator=torch.Generator().manual_seed(0))
    held_out, rest = images[perm[:n_ref]], images[perm[n_ref:]]
    n = args.n_samples or n_ref
    if n <= _NEAREST_K:
        raise ValueError(f"-n {n} is too few for FID/KID/PRDC: give more than {_NEAREST_K} samples per seed.")

    cache = Path(args.cache_dir).expanduser() if args.cache_dir else default_cache_dir()
    say(f"features: an autoencoder trained on this folder ({n_images} images, {'x'.join(map(str, shape))}); "
        f"looking for it in {cache}")
    enc, info, trained = load_or_train_folder_encoder(images, cache, device=device, source=str(folder), log=say)
    if trained:
        say(f"trained it in {info['train_seconds']} s ({info['steps']} steps of {info['batch_size']} images, "
            f"reconstruction MSE {info['recon_mse']:.4f}); cached for the next evaluation of this folder")

    def features(x):
        return enc.features(x.float() / 127.5 - 1.0 if x.dtype == torch.uint8 else x).cpu()

    real_f = features(rest)
    # The reference is as many held-out images as generated ones (when there are): FID/KID depend on the count.
    n_ref = min(n, n_ref)
    ref = feature_metrics(real_f, features(held_out[:n_ref]), nearest_k=_NEAREST_K)
    rows = [feature_metrics(real_f, features(_generate(G, prior, n, s, device).clamp(-1, 1)), nearest_k=_NEAREST_K,
                            seed=s) for s in args.seeds]
    fields = [f for m, fs in (("fid", ("fid",)), ("kid", ("kid_mean", "kid_std")),
                              ("prdc", ("precision", "recall", "density", "coverage"))) if m in metrics for f in fs]
    stats = {f: mean_se([float(getattr(r, f)) for r in rows]) for f in fields}
    out: dict = {"metric_names": metrics, "n_samples": n, "metrics": {
        **_model_vs_reference(stats, rows, ref, fields, say),
        "feature_network": {k: info.get(k) for k in ("kind", "n_images", "channels", "resolution", "recon_mse",
                                                     "source", "key", "sha256")},
    }}
    note = "" if n_ref == n else f" (only {n_ref} held out: FID/KID of model and reference not comparable)"
    say(f"n: {n} generated per seed ({len(rows)} seed(s)), {n_ref} of the {held_out.shape[0]} held-out folder "
        f"images{note}, against the other {rest.shape[0]} images of {folder}")
    say(f"features: encoder of an autoencoder trained on this folder (sha256 {info['sha256'][:12]}); these numbers "
        "compare only with runs on the same folder, resolution and channels, not with Inception FIDs")
    return out


def _model_vs_reference(stats: dict, rows: list, ref, fields, say) -> dict:
    """The feature metrics of the model beside the real-vs-real reference, as eval.json holds them; printed as a table.

    metrics.model / metrics.reference: one number per metric (the model's: mean over seeds), with
    ImageMetrics' names; the spread over seeds is in model_se and model_per_seed.
    """
    counts = ("n_real", "n_fake", "n_prdc")
    metrics = {
        "model": {**{f: stats[f]["mean"] for f in fields}, **{c: getattr(rows[0], c) for c in counts}},
        "model_se": {f: stats[f]["se"] for f in fields},
        "model_per_seed": {f: stats[f]["per_seed"] for f in fields},
        "reference": {**{f: float(getattr(ref, f)) for f in fields}, **{c: getattr(ref, c) for c in counts}},
    }
    say(f"{'metric':<10} {'model':>22} {'real-vs-real':>13}")
    for f in fields:
        say(f"{f:<10} {_fmt(stats[f]):>22} {metrics['reference'][f]:13.4f}")
    return metrics


def _train_classifier(args, say) -> int:
    from gmmgan.data.root import DATA_ENV, resolve_data_root
    from gmmgan.metrics import train_classifier
    from gmmgan.metrics.classifier import ClassifierConfig, default_cache_dir

    given = [flag for flag, value in (("-n", args.n_samples), ("--metrics", args.metrics), ("-o", args.output))
             if value is not None]
    if given:
        raise ValueError(f"{' and '.join(given)} only appl{'ies' if len(given) == 1 else 'y'} to evaluating a run, "
                         "not to train-classifier (it saves to --cache-dir); drop them.")
    dataset = args.dataset or "mnist"
    root = resolve_data_root(args.data_root)
    folder = Path(args.cache_dir).expanduser() if args.cache_dir else default_cache_dir()
    weights = folder / f"{dataset}.safetensors"
    cached = [p.name for p in (weights, folder / f"{dataset}.json") if p.exists()]
    # A new classifier has another sha256: FIDs measured with the cached one stop being comparable.
    if cached and not args.force:
        raise ValueError(
            f"a {dataset} classifier is already cached in {folder} ({', '.join(cached)}); training again would "
            "replace it, and FID/KID measured with it would no longer be comparable. Add --force to replace it, "
            "or give --cache-dir OTHER to keep both.")
    device = resolve_device(args.device)
    say(f"training the {dataset} classifier on {root} ({args.epochs or ClassifierConfig().epochs} epochs, "
        f"{device}, seed {args.seeds[0]}); it will be saved to {weights}")
    try:
        _, info = train_classifier(dataset, root=root, out_dir=folder, epochs=args.epochs,
                                   device=device, seed=args.seeds[0], log=say)
    except FileNotFoundError as e:
        if args.data_root is not None:
            raise
        raise FileNotFoundError(f"{e}\nWithout --data-root the data are read from ${DATA_ENV}, else ./data (here "
                                f"{root}): pass --data-root DIR, the folder holding MNIST/raw and FashionMNIST/raw, "
                                f"or set {DATA_ENV}.") from None
    say(f"saved the {dataset} classifier to {weights} (test accuracy {info['test_accuracy']:.4%}, "
        f"{info['train_seconds']} s)")
    return 0


def run(args) -> int:
    from rich.markup import escape

    from gmmgan.cli import EXIT_OK, console

    def say(text: str) -> None:
        if not args.quiet:
            console.print(text, soft_wrap=True, markup=False)

    if args.target == "train-classifier":
        return _train_classifier(args, say)
    given = [flag for flag, value in (("--dataset", args.dataset), ("--epochs", args.epochs)) if value is not None]
    if given:
        raise ValueError(f"{' and '.join(given)} only appl{'ies' if len(given) == 1 else 'y'} to 'gmmgan eval "
                         "train-classifier'; a run is evaluated with the classifier of its own data set. Drop them.")

    from gmmgan.gan.checkpoint import CHECKPOINT_NAME, SNAPSHOT_NAME
    from gmmgan.gan.config import config_from_dict
    from gmmgan.gan.training_loop import (
        CONFIG_NAME,
        FINAL_PLOT_NAME,
        LOG_NAME,
        METRICS_NAME,
        load_generator,
    )
    from gmmgan.plotting import read_training_log

    device = resolve_device(args.device)
    if not Path(args.target).exists() and difflib.get_close_matches(args.target, ["train-classifier"], cutoff=0.75):
        raise FileNotFoundError(f"run folder '{args.target}' does not exist; did you mean train-classifier?")
    target = _run_path(args.target)
    run_dir = target if target.is_dir() else target.parent
    out = Path(args.output) if args.output else run_dir / "eval.json"
    if out.is_dir():
        out = out / "eval.json"
    # The files training wrote are the run; a report must never replace one of them.
    for name in (CONFIG_NAME, LOG_NAME, METRICS_NAME, FINAL_PLOT_NAME, CHECKPOINT_NAME, SNAPSHOT_NAME):
        if out.resolve() == (run_dir / name).resolve():
            raise ValueError(f"-o {args.output} would overwrite the run's own {name}; choose another file "
                             "(default: RUN/eval.json).")
    if out.exists() and not args.force:
        raise ValueError(f"'{out}' exists (an earlier evaluation); add --force to replace it, or -o OTHER.json "
                         "to keep both.")
    check_output_path(out, True, "evaluation report")  # writable, before the long part (as gmmgan fit)
    log = None
    if args.plots and (run_dir / LOG_NAME).is_file():
        log = read_training_log(run_dir / LOG_NAME)  # read first: a bad log fails before the long part

    G, prior, meta = load_generator(target, device)
    name = config_from_dict(meta["config"]).data.name
    if name not in _DATASETS:
        raise ValueError(f"gmmgan eval has no metrics for data set {name!r} yet; it evaluates "
                         f"{', '.join(_DATASETS)}.")
    kind, dataset = _DATASETS[name]
    metrics = args.metrics or list(_METRICS[kind])
    wrong = [m for m in metrics if m not in _METRICS[kind]]
    if wrong:
        raise ValueError(f"metric {', '.join(wrong)} does not apply to a {name} run; choose from "
                         f"{', '.join(_METRICS[kind])}.")
    n = args.n_samples or _DEFAULT_N[kind]
    shape = tuple(meta["data_shape"])
    report: dict = {"run": str(target), "data": name, "kimg": meta["kimg"], "seeds": args.seeds, "n_samples": n}
    say(f"{target}: {name}, {meta['config']['prior']['kind']} prior, {meta['kimg']:.3f} kimg")
    if "modes" in metrics:
        warning = _few_samples_warning(n, _n_modes(name), name, _DEFAULT_N[kind])
        if warning is not None:
            console.print(f"[yellow]warning:[/] {escape(warning)}", soft_wrap=True)
            report["warnings"] = [warning]
    if kind == "2d":
        report.update(_eval_2d(name, G, prior, n, args, device, say))
    elif kind == "stacked":
        report.update(_eval_stacked(G, prior, shape, n, args, device, say))
    elif kind == "folder":
        report.update(_eval_folder(G, prior, meta, shape, metrics, args, device, say))
    else:
        report.update(_eval_images(name, dataset, G, prior, meta, shape, n, metrics, args, device, say))

    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    say(f"wrote {out}")
    if log is not None:
        from gmmgan.plotting import plot_training_curves

        png = out.with_name(f"{out.stem}_curves.png")
        plot_training_curves(log, png, title=f"{run_dir.name}: training curves")
        say(f"wrote {png}")
    elif args.plots:
        say(f"no {LOG_NAME} in {run_dir}: no training curves to plot")
    return EXIT_OK
