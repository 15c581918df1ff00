"""Multi-GPU training throughput: ``torchrun --nproc_per_node N -m gmmgan train`` for N = 1, 2, 4.

Runs the Stacked-MNIST DCGAN config for a fixed number of images at each N and reads images/s from
the run's log (median of the log lines after the first quarter: start-up excluded). Two batch
settings, since they answer different questions:

- ``global``: schedule.batch_size stays 64 (the protocol): the same training at every N, each GPU
  gets 64/N images a step (strong scaling);
- ``per-gpu``: 64 images per GPU a step, global batch 64 N (weak scaling, what "N GPUs give N times
  the throughput" usually means; the training is then not the same as on one GPU).

    PYTHONPATH=src python -m benchmarks.scaling_train --data-root DATA --gpus 1,2,4 --json scaling_train.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks._common import machine_info, write_json

ROOT = Path(__file__).resolve().parents[1]


def run(n: int, batch: int, kimg: float, data_root: str, config: str, extra: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}", "-m",
               "gmmgan", "train", "--config", config, "-q", "--out", tmp, f"data.root={data_root}",
               f"schedule.batch_size={batch}", f"schedule.total_kimg={kimg}", f"schedule.log_kimg={kimg / 40}",
               f"schedule.snapshot_kimg={kimg}", "schedule.sample_kimg=0", *extra]
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        proc = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            return {"error": proc.stderr[-2000:]}
        (folder,) = [p for p in Path(tmp).iterdir() if p.is_dir()]
        log = [json.loads(line) for line in (folder / "log.jsonl").read_text().splitlines()]
    rate = statistics.median(e["images_per_s"] for e in log[len(log) // 4 :])
    warned = "CUDA graph" in proc.stderr
    return {"images_per_s": rate, "graph_failed": warned, "stderr_tail": proc.stderr[-500:] if warned else ""}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", required=True)
    p.add_argument("--gpus", default="1,2,4")
    p.add_argument("--kimg", type=float, default=640)
    p.add_argument("--config", default=str(ROOT / "configs" / "stacked_mnist_gaussian.yaml"))
    p.add_argument("--settings", default="global,per-gpu")
    p.add_argument("--json", default=None)
    p.add_argument("extra", nargs="*", default=[],
                   help="more KEY=VALUE overrides for gmmgan train (device=cuda is always set first)")
    args = p.parse_args(argv)
    # device=cuda first, so that other overrides add to it and an explicit device= still wins.
    args.extra = ["device=cuda", *args.extra]
    machine = machine_info(cuda=True)
    gpu = machine.get("gpu", "no GPU")
    out = {"gpu": gpu, "torch": machine["torch"], "machine": machine, "config": Path(args.config).name,
           "kimg": args.kimg, "rows": []}
    print(f"# {gpu} x {machine.get('gpu_count', 0)}, torch {machine['torch']}", flush=True)
    for setting in args.settings.split(","):
        base = None
        for n in [int(g) for g in args.gpus.split(",")]:
            batch = 64 if setting == "global" else 64 * n
            r = run(n, batch, args.kimg * (1 if setting == "global" else n), args.data_root, args.config, args.extra)
            r.update({"setting": setting, "gpus": n, "batch": batch})
            if "images_per_s" in r:
                base = base or r["images_per_s"]
                r["speedup"] = r["images_per_s"] / base
                print(f"{setting:8s} N={n} batch {batch:4d}: {r['images_per_s']:>9,.0f} images/s, "
                      f"{r['speedup']:.2f}x N=1{' (graph capture failed: eager)' if r['graph_failed'] else ''}",
                      flush=True)
            else:
                print(f"{setting:8s} N={n}: FAILED\n{r['error']}", flush=True)
            out["rows"].append(r)
    if args.json:
        write_json(args.json, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
