"""The seeds of a sweep as N single-run steps, run one after the other in one process.

Why: on the CPU the seeds' arithmetic adds up however it is arranged, and the stacked engine's
merged layers are not free there: N DCGAN seeds as one grouped-convolution net took 1.6 s per
pass against 1.1 s for the N nets one after the other (2-core CPU, ``benchmarks/wide_nets.py``),
because CPU grouped convolutions are slower than N plain ones. Stepping each seed's own single-run
step in turn costs what N single runs cost, while the sweep still shares one process, one start-up
and one folder. Seed s trains with exactly its single run's step; nothing to copy back before a
checkpoint.
"""

from __future__ import annotations

from gmmgan.gan.train_step import TrainStep

__all__ = ["SequentialSteps"]


class SequentialSteps:
    """Callable ``step(per_seed)``: one training step of every seed in turn, ``per_seed[s] = (real, z, gp_eps)``.

    Parameters
    ----------
    steps : list of TrainStep
        One per seed, each built on its seed's own nets and optimizers (eager or CUDA-graph steps
        alike; each replays its own graph where it has one).
    """

    def __init__(self, steps: list[TrainStep]):
        if not steps:
            raise ValueError("SequentialSteps needs at least one TrainStep.")
        self.steps = list(steps)

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

    @property
    def graphed(self) -> bool:
        return all(step.graphed for step in self.steps)

    def __call__(self, per_seed) -> None:
        if len(per_seed) != len(self.steps):
            raise ValueError(f"{len(per_seed)} batches for {len(self.steps)} seeds.")
        for step, (real, z, gp_eps) in zip(self.steps, per_seed):
            step(real, z, gp_eps)

    def set_lr_scale(self, scale: float) -> None:
        for step in self.steps:
            step.set_lr_scale(scale)

    # Each seed's own collectives, in seed order on every rank (so torchrun sweeps stay in step).
    def pop_means(self) -> list[tuple[float, float]]:
        """Per seed, mean loss_d and loss_g since the last call."""
        return [step.pop_means()[0] for step in self.steps]

    def first_bad_step(self) -> list[int]:
        """Per seed, the first step with a non-finite loss, or -1."""
        return [step.first_bad_step()[0] for step in self.steps]
