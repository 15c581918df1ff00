"""``gmmgan sample``: draw samples from a trained generator, optionally from one mixture component."""

from __future__ import annotations

import argparse
from pathlib import Path

from gmmgan._device import resolve_device
from gmmgan.commands._args import device_name, non_negative_int, positive_int

__all__ = ["add_parser", "run"]

_FLUSH_BYTES = 64 << 20  # a .npy output is flushed to disk every this many bytes

_EPILOG = """\
outputs:
  2-D data: a .npy array (N, 2) (default samples.npy), or a .png scatter plot.
  Images: a .png grid (default samples.png) or a .npy array (N, C, H, W) with values in [-1, 1].
  Existing files are not overwritten without --force.

examples:
  gmmgan sample runs/00000-grid-fitted_gmm -n 2500 -o grid.npy
  gmmgan sample runs/00003-mnist-fitted_gmm --component 7 -n 64 -o seven.png
"""


def _run_path(text: str) -> Path:
    """RUN of sample and eval, checked: an existing run folder, or a generator snapshot file."""
    from gmmgan.gan.checkpoint import SNAPSHOT_NAME

    path = Path(text)
    if not path.exists():
        raise FileNotFoundError(f"run folder '{path}' does not exist; give a run folder written by 'gmmgan train'.")
    # Another file of the run (config.yaml, checkpoint.pt) is a wrong path, not a corrupt snapshot.
    if path.is_file() and path.suffix != ".safetensors":
        run = (f"the run folder ('{path.parent}')" if (path.parent / SNAPSHOT_NAME).is_file()
               else "a run folder written by 'gmmgan train'")
        raise ValueError(f"'{path}' is not a generator snapshot; give {run} or its {SNAPSHOT_NAME}.")
    return path


def _write_npy(path: Path, blocks, shape: tuple[int, ...]) -> None:
    """Write the float32 array of ``shape`` made of ``blocks`` (tensors, in order) to the .npy file ``path``.

    Block by block into a memory map of a temporary file next to ``path``, renamed over it at the
    end (as :func:`gmmgan._files.atomic_write`): memory stays at one block however large the
    array, and an interrupted write leaves no truncated file behind.
    """
    import numpy as np

    from gmmgan._files import atomic_write

    def write(tmp: str) -> None:
        array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=shape)
        every = max(1, _FLUSH_BYTES // max(1, array[:1].nbytes))  # rows between flushes
        start = 0
        for block in blocks:
            rows = block.shape[0]
            array[start : start + rows] = block.detach().cpu().numpy()
            start += rows
            if start % every < rows:  # hand the written pages to the OS, so they need not stay in memory
                array.flush()
        if start != shape[0]:  # pragma: no cover - generate_blocks yields exactly n rows
            raise RuntimeError(f"wrote {start} of {shape[0]} rows")
        array.flush()
        del array

    atomic_write(path, write)


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "sample", help="draw samples from a trained generator",
        description="Draw samples from the EMA generator of a run folder written by 'gmmgan train'.",
        epilog=_EPILOG,
    )
    p.add_argument("run", metavar="RUN", help="run folder (or its generator.safetensors)")
    p.add_argument("-n", "--n-samples", type=positive_int, default=None, metavar="N",
                   help="number of samples (default: 2500 for 2-D data, 64 for images)")
    p.add_argument("--component", type=non_negative_int, default=None, metavar="K",
                   help="sample only from mixture component K of a GMM prior")
    p.add_argument("-o", "--output", default=None, metavar="FILE",
                   help="output .npy or .png (default: samples.npy for 2-D data, samples.png for images)")
    p.add_argument("--seed", type=int, default=0, metavar="N", help="random seed (default: 0)")
    p.add_argument("--device", type=device_name, default="cpu", metavar="DEVICE", help="auto, cpu, cuda or cuda:N (default: cpu)")
    p.add_argument("--force", action="store_true", help="overwrite an existing output file")
    return p


def run(args) -> int:
    from gmmgan.cli import EXIT_OK, console
    from gmmgan.gan.sampling import generate, generate_blocks
    from gmmgan.gan.training_loop import load_generator
    from gmmgan.plotting.samples import plot_points, save_image_grid

    device = resolve_device(args.device)
    G, prior, meta = load_generator(_run_path(args.run), device)
    points = len(meta["data_shape"]) == 1
    out = Path(args.output or ("samples.npy" if points else "samples.png"))
    if out.suffix.lower() not in (".npy", ".png"):
        raise ValueError(f"output '{out}' must end in .npy or .png.")
    if out.exists() and not args.force:
        raise ValueError(f"'{out}' exists; use --force to overwrite it or choose another -o.")
    k = args.component
    if k is not None and k >= prior.n_components:
        raise ValueError(
            f"--component {k} is out of range: this run's prior has {prior.n_components} component(s) (0.."
            f"{prior.n_components - 1})." if prior.n_components > 1 else
            f"--component needs a GMM prior, but this run used prior.kind={meta['config']['prior']['kind']}."
        )
    n = args.n_samples or (2500 if points else 64)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".npy":  # streamed: memory stays at one block, whatever n is
        _write_npy(out, generate_blocks(G, prior, n, args.seed, device, component=k), (n, *meta["data_shape"]))
    elif points:
        x = generate(G, prior, n, args.seed, device, component=k).cpu()
        from gmmgan.data import toy_spec
        from gmmgan.gan.config import config_from_dict

        name = config_from_dict(meta["config"]).data.name
        spec = toy_spec(name)
        means = spec.means if spec is not None else None
        plot_points(out, x, means, f"{name}, {meta['kimg']:.1f} kimg" + (f", component {k}" if k is not None else ""))
    else:
        save_image_grid(out, generate(G, prior, n, args.seed, device, component=k).cpu())
    what = f"component {k} of the prior" if k is not None else "the prior"
    console.print(f"wrote {n} samples from {what} ({meta['kimg']:.1f} kimg generator) to {out}", soft_wrap=True)
    return EXIT_OK
