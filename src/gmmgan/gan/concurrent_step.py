"""The seeds of a sweep as N single-run steps, replayed together as one CUDA graph with one stream per seed.

Why: a single run's step on the reference nets (DCGAN on 28x28 at batch 64) is a chain of a few
hundred small kernels, each filling a fraction of a large GPU. Stacking the seeds
(:mod:`gmmgan.gan.stacked`) merges each layer into one wide kernel, but the grouped convolutions it
needs are slow in cuDNN (a 10-seed step took 6.6 ms against 1.14 ms for one seed on an H200: 1.73x
for the sweep). Here each seed keeps its own nets, optimizers and step, exactly a single run's, and
the N steps are captured into one graph as N independent branches (each on its own stream, forked
from and joined back to the capture stream), so the GPU runs the seeds' small kernels side by side.

Seed s trains with the kernels of its single run, on its own nets: the same arithmetic, no
stacking, nothing to copy back before a checkpoint. Used on CUDA when every seed's step can be a
graph and the run is on one process: under torchrun each seed's gradient all-reduce would run on
its own stream, and collectives whose order may differ between ranks can deadlock.
"""

from __future__ import annotations

import warnings

import torch

from gmmgan.gan.train_step import WARMUP_STEPS, TrainStep

__all__ = ["ConcurrentSteps"]


class ConcurrentSteps:
    """Callable ``step(per_seed)``: one training step of every seed, ``per_seed[s] = (real, z, gp_eps)``.

    Parameters
    ----------
    steps : list of TrainStep
        One per seed, each built on its seed's own nets and optimizers with ``graph=True`` (so the
        optimizers are capturable), all on the same CUDA device.

    The first ``WARMUP_STEPS`` calls run eagerly (each seed on its stream, as capture requires);
    the next captures all the seeds' steps as one graph, which every later call replays. With lazy
    regularization (``loss.reg_interval``) there are two such graphs, with and without R1/R2, each
    captured after it has run eagerly once. A failed capture leaves the steps eager (still one
    stream per seed), with a warning.
    """

    def __init__(self, steps: list[TrainStep]):
        if not steps or any(not s.use_graph for s in steps):
            raise ValueError("ConcurrentSteps needs at least one TrainStep, each built with graph=True on CUDA.")
        self.steps = list(steps)
        self.device = self.steps[0].device
        self.streams = [torch.cuda.Stream(self.device) for _ in self.steps]
        self.use_graph = True
        self.graphed = False
        self._graphs: dict[bool, torch.cuda.CUDAGraph] = {}  # regularized or not (TrainStep.regularize_next)
        self._warmed: set[bool] = set()
        self._static: list[tuple[torch.Tensor, ...]] | None = None
        self._eager_steps = 0

    # The loss settings every seed shares (the training loop builds a new engine from them).
    @property
    def gan(self):
        return self.steps[0].gan

    @property
    def ema_beta(self) -> float:
        return self.steps[0].ema_beta

    @property
    def autocast(self):
        return self.steps[0].autocast

    def __call__(self, per_seed) -> None:
        if len(per_seed) != len(self.steps):
            raise ValueError(f"{len(per_seed)} batches for {len(self.steps)} seeds.")
        regs = {step.regularize_next() for step in self.steps}
        if len(regs) != 1:
            raise RuntimeError("the seeds of a sweep are at different steps: they cannot share a graph.")
        (reg,) = regs
        if self._static is None:
            self._static = [tuple(t.detach().clone() for t in inputs if t is not None) for inputs in per_seed]
        for bufs, inputs in zip(self._static, per_seed):
            for buf, t in zip(bufs, inputs):
                buf.copy_(t)
        if reg in self._graphs:
            self._graphs[reg].replay()
            return
        if not self.use_graph or self._eager_steps < WARMUP_STEPS or reg not in self._warmed:
            self._fan_out(reg)
            self._eager_steps += 1
            self._warmed.add(reg)
            return
        self._capture(reg)

    def _fan_out(self, reg: bool) -> None:
        """Every seed's step on its own stream, each waiting for the work queued before it, all joined after."""
        here = torch.cuda.current_stream(self.device)
        for step, stream, inputs in zip(self.steps, self.streams, self._static):
            stream.wait_stream(here)
            with torch.cuda.stream(stream):
                step._step(*(*inputs, None)[:3], reg)
        for stream in self.streams:
            here.wait_stream(stream)

    def _capture(self, reg: bool) -> None:
        graph = torch.cuda.CUDAGraph()
        saved = [step._snapshot_tensors() for step in self.steps]
        try:
            with torch.cuda.graph(graph):
                self._fan_out(reg)
        except Exception as e:  # noqa: BLE001 - any capture failure means: carry on eagerly, say why
            for step, state in zip(self.steps, saved):
                step._restore_tensors(state)
            self.use_graph, self.graphed = False, False
            self._graphs.clear()
            warnings.warn(f"could not capture the sweep's steps as one CUDA graph ({type(e).__name__}: {e}); "
                          "training continues eagerly (slower). Set cuda_graphs=false to silence this.",
                          RuntimeWarning, stacklevel=3)
            self._fan_out(reg)
            return
        self._graphs[reg], self.graphed = graph, True
        graph.replay()

    def set_lr_scale(self, scale: float) -> None:
        for step in self.steps:
            step.set_lr_scale(scale)

    def pop_means(self) -> list[tuple[float, float]]:
        """Per seed, mean loss_d and loss_g since the last call (one device-to-host copy for all seeds)."""
        sums = torch.cat([step.sums for step in self.steps]).tolist()
        for step in self.steps:
            step.sums.zero_()
        return [(ld / max(n, 1), lg / max(n, 1)) for ld, lg, n in sums]

    def first_bad_step(self) -> list[int]:
        """Per seed, the first step with a non-finite loss, or -1."""
        return torch.cat([step.bad_step for step in self.steps]).tolist()
