"""GAN training speed: gmmgan's training loop against a plain PyTorch DCGAN loop, same nets, same GPU.

The protocol (docs/protocols.md, section 'Targets', row 'GAN training'; issue "GMM-GANs"): DCGAN on Stacked MNIST, batch 64. The
reference is the loop most code bases have: a ``DataLoader`` over the images, float32, no compile,
one D step and one G step per batch with Adam. Both are measured in this run, on this GPU, and
the ratio is printed. gmmgan variants: eager float32 (what the reference does, with data on the
GPU), CUDA graph float32, CUDA graph bf16 (the default).

    PYTHONPATH=src python -m benchmarks.train_speed --data-root DATA --json train_speed.json
    # seed sweeps (issue "seed sweeps"): 10 seeds in one process against 10 single runs
    PYTHONPATH=src python -m benchmarks.train_speed --data-root DATA --variants graph-bf16,sweep-graph-bf16 --sweep-seeds 10
    # (add sweep-stacked-graph-bf16: the same sweep with sweep_mode=stacked, the seeds' DCGAN nets as one
    #  wide net; sweep-stacked-vmap-graph-bf16: that engine with the nets under vmap, as before the wide net)

Images/s for gmmgan come from its own log (``images_per_s`` of each log line after the first
quarter of the run, median), so start-up (data, prior fit, warm start, capture) is excluded and
reported apart. The projected protocol time is 6,400 kimg at that rate plus the start-up.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path
from unittest import mock

import torch
import torch.nn.functional as F

from benchmarks._common import machine_info, write_json

PROTOCOL_KIMG = 6400  # 50 epochs of 128,000 Stacked-MNIST images


def plain_loop(data_u8: torch.Tensor, device: torch.device, steps: int, warmup: int = 50,
               workers: int = 4) -> float:
    """Images/s of the reference loop: DataLoader, float32, eager, batch 64 (same nets as gmmgan)."""
    from torch.utils.data import DataLoader, TensorDataset

    from gmmgan.nets import (
        DiscriminatorConfig,
        GeneratorConfig,
        build_discriminator,
        build_generator,
    )

    torch.manual_seed(0)
    G = build_generator(GeneratorConfig("dcgan", z_dim=100, channels=3, resolution=28, width=64)).to(device)
    D = build_discriminator(DiscriminatorConfig("dcgan", channels=3, resolution=28, width=64,
                                                batch_norm=True)).to(device)
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    images = data_u8.float().div_(127.5).sub_(1)  # [-1, 1], on the host as a DataLoader expects
    loader = DataLoader(TensorDataset(images), batch_size=64, shuffle=True, drop_last=True,
                        num_workers=workers, pin_memory=True, persistent_workers=workers > 0)
    done, t0 = 0, None
    while done < steps + warmup:
        for (real,) in loader:
            if done == warmup:
                torch.cuda.synchronize(device)
                t0 = time.perf_counter()
            real = real.to(device, non_blocking=True)
            z = torch.randn(real.shape[0], 100, device=device)
            fake = G(z)
            loss_d = F.softplus(-D(real)).mean() + F.softplus(D(fake.detach())).mean()
            opt_d.zero_grad()
            loss_d.backward()
            opt_d.step()
            loss_g = F.softplus(-D(fake)).mean()
            opt_g.zero_grad()
            loss_g.backward()
            opt_g.step()
            done += 1
            if done >= steps + warmup:
                break
    torch.cuda.synchronize(device)
    return steps * 64 / (time.perf_counter() - t0)


def gmmgan_run(config: str, overrides: list[str], kimg: float) -> dict:
    """Train with gmmgan for ``kimg``; steady images/s from the log, start-up time apart."""
    from gmmgan.gan.config import load_config
    from gmmgan.gan.training_loop import LOG_NAME, train

    with tempfile.TemporaryDirectory() as tmp:
        # A short run cannot hold the protocol's late lr decay; the decay costs nothing per step anyway.
        cfg = load_config(config, [*overrides, "schedule.lr_decay=none", f"schedule.total_kimg={kimg}", f"schedule.log_kimg={kimg / 40}",
                                   f"schedule.snapshot_kimg={kimg}", "schedule.sample_kimg=0"])
        t0 = time.perf_counter()
        result = train(cfg, run_dir=Path(tmp) / "run", quiet=True)
        wall = time.perf_counter() - t0
        log = [json.loads(line) for line in (Path(tmp) / "run" / LOG_NAME).read_text().splitlines()]
    rates = [e["images_per_s"] for e in log[len(log) // 4 :]]
    rate = statistics.median(rates)
    train_s = kimg * 1000 / rate
    startup = max(wall - sum(1000 * kimg / len(log) / e["images_per_s"] for e in log), 0.0)
    return {"images_per_s": rate, "wall_s": wall, "startup_s": startup, "train_s_est": train_s,
            "cuda_graph": bool(result["cuda_graph"]), "protocol_min": (PROTOCOL_KIMG * 1000 / rate + startup) / 60}


def sweep_run(config: str, overrides: list[str], kimg: float, n_seeds: int) -> dict:
    """Train ``n_seeds`` seeds as one sweep for ``kimg`` each; per-seed and total images/s from the seeds' logs."""
    from gmmgan.gan.config import load_config
    from gmmgan.gan.sweep import seed_dir
    from gmmgan.gan.training_loop import LOG_NAME, train

    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(config, [*overrides, "schedule.lr_decay=none", f"seeds=0-{n_seeds - 1}", f"schedule.total_kimg={kimg}",
                                   f"schedule.log_kimg={kimg / 40}", f"schedule.snapshot_kimg={kimg}",
                                   "schedule.sample_kimg=0"])
        t0 = time.perf_counter()
        result = train(cfg, run_dir=Path(tmp) / "sweep", quiet=True)
        wall = time.perf_counter() - t0
        log = [json.loads(line) for line in (seed_dir(Path(tmp) / "sweep", 0) / LOG_NAME).read_text().splitlines()]
    rate = statistics.median(e["images_per_s"] for e in log[len(log) // 4 :])  # per seed: each seed sees B per step
    startup = max(wall - sum(1000 * kimg / len(log) / e["images_per_s"] for e in log), 0.0)
    return {"seeds": n_seeds, "images_per_s_per_seed": rate, "images_per_s": rate * n_seeds, "wall_s": wall,
            "startup_s": startup, "cuda_graph": bool(result["cuda_graph"]),
            "protocol_min": (PROTOCOL_KIMG * 1000 / rate + startup) / 60}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", required=True, help="folder with MNIST/raw (torchvision layout)")
    p.add_argument("--kimg", type=float, default=640, help="images (thousands) per gmmgan variant")
    p.add_argument("--plain-steps", type=int, default=2000)
    p.add_argument("--workers", type=int, default=4, help="DataLoader workers of the reference loop")
    p.add_argument("--variants", default="eager-fp32,graph-fp32,graph-bf16,graph-bf16-fitted")
    p.add_argument("--sweep-seeds", type=int, default=10, help="seeds of the sweep-* variants (default 10)")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("benchmarks.train_speed measures GPU training; no CUDA device is visible.")
    device = torch.device("cuda")
    from gmmgan.data.stacked import load_stacked_mnist

    root = Path(__file__).resolve().parents[1] / "configs"
    common = [f"data.root={args.data_root}", "device=cuda"]
    variants = {
        "eager-fp32": ("stacked_mnist_gaussian.yaml", ["cuda_graphs=false", "bf16=false"]),
        "graph-fp32": ("stacked_mnist_gaussian.yaml", ["cuda_graphs=true", "bf16=false"]),
        "graph-bf16": ("stacked_mnist_gaussian.yaml", ["cuda_graphs=true", "bf16=true"]),
        # channels_last=false: the nets in NCHW as before, for the ratio the NHWC layout buys.
        "graph-bf16-nchw": ("stacked_mnist_gaussian.yaml", ["cuda_graphs=true", "bf16=true", "channels_last=false"]),
        "graph-bf16-fitted": ("stacked_mnist_fitted_gmm.yaml", ["cuda_graphs=true", "bf16=true"]),
        "sweep-graph-bf16": ("stacked_mnist_gaussian.yaml", ["cuda_graphs=true", "bf16=true"]),
        # The same sweep on the other engine (the seeds stacked: their DCGAN nets as one wide net), and that
        # engine with its nets under vmap as before the wide net (gmmgan.nets.wide), for the ratios between them.
        "sweep-stacked-graph-bf16": ("stacked_mnist_gaussian.yaml", ["cuda_graphs=true", "bf16=true",
                                                                     "sweep_mode=stacked"]),
        "sweep-stacked-vmap-graph-bf16": ("stacked_mnist_gaussian.yaml", ["cuda_graphs=true", "bf16=true",
                                                                          "sweep_mode=stacked"]),
        "sweep-graph-bf16-nchw": ("stacked_mnist_gaussian.yaml", ["cuda_graphs=true", "bf16=true",
                                                                  "channels_last=false"]),
        "sweep-graph-bf16-fitted": ("stacked_mnist_fitted_gmm.yaml", ["cuda_graphs=true", "bf16=true"]),
    }
    machine = machine_info(cuda=True)
    out = {"gpu": machine["gpu"], "torch": torch.__version__, "machine": machine, "batch": 64}
    data = load_stacked_mnist(args.data_root, n=128_000, seed=0)[0]
    print(f"# {out['gpu']}, torch {out['torch']}", flush=True)
    ref = plain_loop(data, device, args.plain_steps, workers=args.workers)
    out["plain"] = {"images_per_s": ref, "protocol_min": PROTOCOL_KIMG * 1000 / ref / 60}
    print(f"plain PyTorch loop (DataLoader, fp32, eager): {ref:,.0f} images/s "
          f"-> {out['plain']['protocol_min']:.1f} min for the protocol", flush=True)
    for name in args.variants.split(","):
        config, over = variants[name]
        if name.startswith("sweep-"):
            # vmap: StackedModule's 'auto' asks supports_wide whether the wide net runs these nets; say no.
            wide = mock.patch("gmmgan.gan.stacked.supports_wide", lambda _m: False) if "-vmap-" in name else nullcontext()
            with wide:
                r = sweep_run(str(root / config), common + over, args.kimg, args.sweep_seeds)
            single = out.get(name.removeprefix("sweep-").removeprefix("stacked-").removeprefix("vmap-"))
            if single:  # N single runs one after the other take N times the protocol of one
                r["speedup_vs_single_runs"] = args.sweep_seeds * single["protocol_min"] / r["protocol_min"]
            out[name] = r
            print(f"gmmgan {name:18s}: {r['seeds']} seeds x {r['images_per_s_per_seed']:>9,.0f} images/s = "
                  f"{r['images_per_s']:,.0f} images/s in all; start-up {r['startup_s']:.1f} s; protocol for all "
                  f"{r['seeds']} seeds {r['protocol_min']:.2f} min"
                  + (f" = {r['speedup_vs_single_runs']:.2f}x faster than {r['seeds']} single runs" if single else "")
                  + ("" if r["cuda_graph"] else " (graph capture FAILED: eager)"), flush=True)
            continue
        r = gmmgan_run(str(root / config), common + over, args.kimg)
        r["ratio"] = r["images_per_s"] / ref
        out[name] = r
        print(f"gmmgan {name:18s}: {r['images_per_s']:>9,.0f} images/s = {r['ratio']:.2f}x the plain loop; "
              f"start-up {r['startup_s']:.1f} s; protocol {r['protocol_min']:.2f} min"
              f"{'' if r['cuda_graph'] or 'eager' in name else ' (graph capture FAILED: eager)'}", flush=True)
    if args.json:
        write_json(args.json, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
