"""``gmmgan data download``: fetch MNIST or Fashion-MNIST into the data root, on request only."""

from __future__ import annotations

import argparse

__all__ = ["add_parser", "run"]

_EPILOG = """\
The four .gz files go to ROOT/MNIST/raw/ (or ROOT/FashionMNIST/raw/), torchvision's layout, where
'gmmgan train' and 'gmmgan eval' look for them. Each file is md5-checked against the published value
before it is kept; files already there with the right md5 are not fetched again.

examples:
  gmmgan data download mnist
  gmmgan data download fashion-mnist --root ~/datasets
  gmmgan data download mnist --mirror https://example.org/mnist/
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "data", help="fetch the image data sets (MNIST, Fashion-MNIST)",
        description="Manage gmmgan's data sets. Nothing is downloaded unless you ask for it here "
                    "(or set data.download: true in a training config).",
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True, parser_class=type(p))
    d = actions.add_parser("download", help="download and md5-verify MNIST or Fashion-MNIST",
                           description="Download the four IDX .gz files of MNIST or Fashion-MNIST, md5-verified.",
                           epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    d.add_argument("dataset", choices=("mnist", "fashion-mnist"), help="which data set")
    d.add_argument("--root", default=None, metavar="DIR",
                   help="data root (default: the one training reads: $GMMGAN_DATA, else ./data)")
    d.add_argument("--mirror", default=None, metavar="URL",
                   help="base URL under which the four .gz files sit by their standard names, "
                        "tried instead of the default mirrors")
    return p


def run(args) -> int:
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    from gmmgan.cli import EXIT_OK, console, err_console
    from gmmgan.data.download import download_dataset
    from gmmgan.data.root import resolve_data_root

    root = resolve_data_root(args.root)
    tasks: dict[str, int] = {}
    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  console=err_console, transient=False) as bar:

        def progress(name: str, done: int, total: int | None) -> None:
            if name not in tasks:
                tasks[name] = bar.add_task(name, total=total)
            bar.update(tasks[name], completed=done)

        raw = download_dataset(args.dataset, root, mirror=args.mirror, progress=progress)
    fetched = f"downloaded {len(tasks)} file(s)" if tasks else "all four files were already there"
    console.print(f"{args.dataset}: {fetched}, md5-verified, in {raw}", soft_wrap=True)
    return EXIT_OK
