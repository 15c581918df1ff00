"""Where a seed sweep's step goes: the draw of batches and latents, the step alone, both; and, with
``--profile``, the kernels of one step (how many, how long, how much they overlap).

It trains a config's sweep through the real training loop (``gmmgan.gan.training_loop.train``) and,
after ``--warm-steps`` steps, takes the engine the loop built and times ``--reps`` draws, ``--reps``
steps on one batch and ``--reps`` of both, each between device synchronisations; then it stops the
run. One line per seed count, so a call compares 1 seed (a single run) with a sweep on the same GPU.

    PYTHONPATH=src python -m benchmarks.sweep_step_probe --data-root DATA --seeds 1,5,10 --profile

``--profile`` (CUDA) runs ``torch.profiler`` over 20 more steps and prints, per step: the kernels
launched, their summed GPU time, and that sum divided by the step's wall time (the mean number of
kernels running at once: 1.0 means the seeds' branches do not overlap at all), with the kernels
that take the most time. The mean kernel time tells whether the GPU is filled by work or by the
launches of many tiny kernels.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from benchmarks._common import machine_info, write_json

PROFILE_STEPS = 20


class _ProbeDone(Exception):
    """Raised from inside the training loop once the probe has its numbers."""


def _timed(fn, reps: int, sync) -> float:
    """Milliseconds per call of ``fn``, over ``reps`` calls between two synchronisations."""
    sync()
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    sync()
    return (time.perf_counter() - t0) / reps * 1e3


def _profile(engine, step, batch, sync) -> dict:
    """Kernels per step, their summed GPU time, the overlap, and the 8 costliest kernels."""
    from torch.profiler import ProfilerActivity, profile

    for _ in range(3):
        step(engine, batch)
    sync()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        t0 = time.perf_counter()
        for _ in range(PROFILE_STEPS):
            step(engine, batch)
        sync()
        wall_ms = (time.perf_counter() - t0) / PROFILE_STEPS * 1e3
    kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    gpu_ms = sum(e.device_time for e in kernels) / 1e3 / PROFILE_STEPS  # device_time is in us
    by_name: dict[str, list[float]] = {}
    for e in kernels:
        by_name.setdefault(e.name, []).append(e.device_time)
    top = sorted(by_name.items(), key=lambda kv: -sum(kv[1]))[:8]
    n = len(kernels) / PROFILE_STEPS
    return {
        "kernels_per_step": n,
        "kernel_ms_per_step": gpu_ms,
        "wall_ms_per_step": wall_ms,
        "overlap": gpu_ms / wall_ms if wall_ms else float("nan"),
        "mean_kernel_us": gpu_ms * 1e3 / n if n else float("nan"),
        "top": [{"name": name[:90], "calls_per_step": len(t) / PROFILE_STEPS,
                 "us_per_step": sum(t) / PROFILE_STEPS, "mean_us": sum(t) / len(t)} for name, t in top],
    }


def probe(config: str, overrides: list[str], n_seeds: int, mode: str, warm_steps: int, reps: int,
          profile: bool) -> dict:
    """Train ``config`` as a sweep of seeds 0..n_seeds-1 for ``warm_steps`` steps, then time its engine."""
    import gmmgan.gan.sweep as sweep_module
    from gmmgan.gan.config import load_config
    from gmmgan.gan.training_loop import train

    seeds = [f"seeds=0-{n_seeds - 1}" if n_seeds > 1 else "seed=0"]
    if n_seeds > 1:
        seeds.append(f"sweep_mode={mode}")
    cfg = load_config(config, [*overrides, *seeds, "schedule.total_kimg=100000",
                               "schedule.snapshot_kimg=100000", "schedule.sample_kimg=0"])
    real_step = sweep_module.Engine.step
    result: dict = {"seeds": n_seeds}
    count = {"steps": 0}

    def step(engine, batch):
        real_step(engine, batch)
        count["steps"] += 1
        if count["steps"] < warm_steps:
            return
        dev = engine.runs[0].device
        result["mode"] = engine.mode
        sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
        one = engine.draw()
        result["draw_ms"] = _timed(engine.draw, reps, sync)
        result["step_ms"] = _timed(lambda: real_step(engine, one), reps, sync)
        result["draw_and_step_ms"] = _timed(lambda: real_step(engine, engine.draw()), reps, sync)
        result["images_per_s"] = n_seeds * cfg.schedule.batch_size / result["draw_and_step_ms"] * 1e3
        if profile and dev.type == "cuda":
            result["profile"] = _profile(engine, real_step, one, sync)
        raise _ProbeDone

    sweep_module.Engine.step = step
    try:
        with tempfile.TemporaryDirectory() as tmp:
            train(cfg, run_dir=Path(tmp) / "probe", quiet=True)
    except _ProbeDone:
        pass
    finally:
        sweep_module.Engine.step = real_step
    if "step_ms" not in result:
        raise SystemExit(f"the run ended before {warm_steps} steps: lower --warm-steps")
    return result


def _print(r: dict) -> None:
    print(f"{r['seeds']:>3} seeds {r['mode']:>7}: draw {r['draw_ms']:.3f} ms, step alone {r['step_ms']:.3f} ms, "
          f"both {r['draw_and_step_ms']:.3f} ms per step ({r['images_per_s']:,.0f} images/s in all)", flush=True)
    p = r.get("profile")
    if p:
        print(f"    {p['kernels_per_step']:.0f} kernels per step, {p['kernel_ms_per_step']:.3f} ms of kernel time in "
              f"{p['wall_ms_per_step']:.3f} ms (overlap {p['overlap']:.2f}), mean kernel {p['mean_kernel_us']:.1f} us")
        for t in p["top"]:
            print(f"      {t['us_per_step']:8.1f} us/step  {t['calls_per_step']:5.0f} calls  {t['mean_us']:6.1f} us  {t['name']}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/stacked_mnist_gaussian.yaml")
    ap.add_argument("--data-root", default=None, help="folder with MNIST/raw (data.root)")
    ap.add_argument("--seeds", default="1,10", help="seed counts to probe, comma-separated (default: 1,10)")
    ap.add_argument("--mode", default="auto", choices=["auto", "stacked", "streams"], help="sweep_mode of the sweeps")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--warm-steps", type=int, default=300, help="steps trained before timing (default: 300)")
    ap.add_argument("--reps", type=int, default=200, help="timed calls of each kind (default: 200)")
    ap.add_argument("--profile", action="store_true", help="also profile the kernels of a step (CUDA)")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="more config overrides")
    ap.add_argument("--json", default=None, help="write the results here")
    args = ap.parse_args(argv)
    overrides = [f"device={args.device}", *args.set]
    if args.data_root:
        overrides.append(f"data.root={args.data_root}")
    results = []
    for n in (int(s) for s in args.seeds.split(",")):
        r = probe(args.config, overrides, n, args.mode, args.warm_steps, args.reps, args.profile)
        _print(r)
        results.append(r)
    if args.json:
        write_json(args.json, {"machine": machine_info(cuda=args.device.startswith("cuda")), "config": args.config, "overrides": overrides,
                               "results": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
