"""The seed-sweep engine's nets: N DCGAN seeds as one wide net, under vmap, and one after the other.

Times one training pass of the Stacked-MNIST nets (DCGAN G and D, 3 channels, width 64, batch 64
per seed): z -> G -> D -> loss -> backward through both, for N seeds three ways, in the same run:
the N nets one after the other (what N single runs compute), the stacked nets under
``torch.func.vmap``, and the stacked nets as one wide net (``gmmgan.nets.wide``: grouped
convolutions, the default of ``sweep_mode=stacked`` for DCGAN nets). Prints milliseconds per pass
and each side's ratio to the N separate nets. On CUDA: bf16 autocast and channels-last nets, as training uses.

    PYTHONPATH=src python -m benchmarks.wide_nets --seeds 10 --device cuda --json wide_nets.json
"""

from __future__ import annotations

import argparse
import copy
import time

from benchmarks._common import machine_info, write_json


def _time(fn, device, repeats: int) -> float:
    import torch

    fn()  # warm-up: cuDNN's algorithm choice, allocations
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / repeats * 1e3


def main(argv=None) -> int:
    import torch

    from gmmgan.gan.stacked import StackedModule
    from gmmgan.nets import DCGANDiscriminator, DCGANGenerator

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=10, help="N, the seeds side by side (default: 10)")
    p.add_argument("--batch", type=int, default=64, help="images per seed (default: 64)")
    p.add_argument("--width", type=int, default=64, help="DCGAN width of G and D (default: 64)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    device = torch.device(a.device)
    cuda = device.type == "cuda"
    torch.manual_seed(0)
    layout = torch.channels_last if cuda else torch.contiguous_format
    gs = [DCGANGenerator(100, 3, 28, a.width).to(device, memory_format=layout) for _ in range(a.seeds)]
    ds = [DCGANDiscriminator(3, 28, a.width).to(device, memory_format=layout) for _ in range(a.seeds)]
    z = torch.randn(a.seeds, a.batch, 100, device=device)

    def autocast():
        return torch.autocast("cuda", torch.bfloat16) if cuda else torch.autocast("cpu", enabled=False)

    def separate():
        with autocast():
            loss = sum(d(g(z[s])).float().square().mean() for s, (g, d) in enumerate(zip(gs, ds)))
        loss.backward()

    def stacked(wide):
        g, d = StackedModule(copy.deepcopy(gs), wide=wide), StackedModule(copy.deepcopy(ds), wide=wide)

        def step():
            with autocast():
                loss = d(g(z)).float().square().mean(dim=1).sum()
            loss.backward()
        return step

    rows = {"separate": _time(separate, device, a.repeats),
            "vmap": _time(stacked(False), device, a.repeats),
            "wide": _time(stacked(True), device, a.repeats)}
    for name, ms in rows.items():
        print(f"{name:9s} {ms:9.2f} ms per pass of {a.seeds} seeds   {rows['separate'] / ms:5.2f}x the separate nets")
    if a.json:
        write_json(a.json, {"seeds": a.seeds, "batch": a.batch, "width": a.width, "device": str(device),
                            "ms_per_pass": rows, "machine": machine_info(cuda=cuda)})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
