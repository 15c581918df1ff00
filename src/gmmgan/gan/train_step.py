"""One GAN training step (D step, G step, EMA update), eager or replayed as a CUDA graph.

Why a CUDA graph: the reference nets are small (DCGAN on 28x28 at batch 64, MLPs on 2-D points), so
on a GPU a step is bound by kernel launches, not arithmetic: a plain PyTorch loop spends most of its
time in Python and the CUDA driver. Capturing the whole step once (forward, backward, all-reduce of
the gradients, fused Adam, EMA) and replaying it costs one launch per step.

What stays outside the graph is everything random or data-dependent in size: the real batch, the
latent vectors and the gradient-penalty weights are drawn by the caller from its own generators and
copied into static input buffers, so the random streams (and exact resume) are the same in every
mode. On the CPU, or when a graph cannot be used (a learnable prior, whose latent vectors carry
gradients; ``cuda_graphs=false``), the same step function runs eagerly.

Data-parallel training (:mod:`gmmgan.distributed`): after each backward the gradients are averaged
over ranks with one all-reduce per network, inside the graph. This is what
``DistributedDataParallel`` does, written out because a GAN step does not fit DDP's assumptions
(D runs twice before its backward, R1 differentiates through D's input gradient, only one of the
two networks has gradients in each half, and the whole step is captured as one graph).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import torch
from torch import nn
from torch.func import vmap

from gmmgan import distributed
from gmmgan.gan.diffaugment import diff_augment, parse_policy
from gmmgan.gan.losses import gradient_penalty, r1_penalty
from gmmgan.gan.stacked import StackedModule

__all__ = ["TrainStep", "adam", "load_optimizer_state", "lr_scale", "match_optimizer_state"]

WARMUP_STEPS = 3  # eager steps on a side stream before capture: lets Adam and cuDNN allocate and pick


def _full(x: torch.Tensor) -> torch.Tensor:
    """``x`` in float32 if autocast made it half precision; float32 and float64 stay as they are."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def adam(params, device: torch.device, graph: bool, **kw) -> torch.optim.Adam:
    """Adam as the step needs it: fused on CUDA, capturable when the step is a CUDA graph."""
    if device.type == "cuda":
        return torch.optim.Adam(params, fused=True, capturable=graph, **kw)
    return torch.optim.Adam(params, **kw)


def lr_scale(sched, nimg: int) -> float:
    """Factor of the ``optim`` learning rates at ``nimg`` images shown: 1 up to ``lr_decay_start_kimg``,
    then falling (linearly or along half a cosine) to ``lr_decay_final`` at ``total_kimg`` (and after).

    >>> from gmmgan.gan.config import ScheduleConfig
    >>> s = ScheduleConfig(total_kimg=10, lr_decay="linear", lr_decay_start_kimg=2, lr_decay_final=0.2)
    >>> [round(lr_scale(s, n), 6) for n in (0, 2000, 6000, 10000, 12000)]
    [1.0, 1.0, 0.6, 0.2, 0.2]
    """
    if sched.lr_decay == "none":
        return 1.0
    start, end = round(sched.lr_decay_start_kimg * 1000), round(sched.total_kimg * 1000)  # as the loop counts
    t = min(max((nimg - start) / (end - start), 0.0), 1.0) if end > start else float(nimg >= end)
    f = sched.lr_decay_final
    if sched.lr_decay == "linear":
        return 1.0 - (1.0 - f) * t
    return f + (1.0 - f) * 0.5 * (1.0 + math.cos(math.pi * t))


def match_optimizer_state(saved: dict, opt: torch.optim.Optimizer) -> dict:
    """A saved optimizer state dict with this optimizer's execution flags (fused, capturable, foreach).

    A checkpoint written by a CUDA-graph run on a GPU must resume on the CPU (and vice versa); the
    flags describe how the update runs here, not the optimisation state, so they are taken from
    ``opt`` before loading.
    """
    flags = ("fused", "capturable", "foreach", "differentiable")
    groups = []
    for mine, theirs in zip(opt.param_groups, saved["param_groups"]):
        groups.append({**theirs, **{k: mine[k] for k in flags if k in mine}})
    groups.extend(saved["param_groups"][len(groups):])
    return {"state": saved["state"], "param_groups": groups}


def load_optimizer_state(opt: torch.optim.Optimizer, saved: dict) -> None:
    """Load ``saved`` into ``opt``, with this optimizer's flags and each moment in its parameter's layout.

    The nets are channels-last on CUDA and not on the CPU (``TrainConfig.channels_last``), so a
    checkpoint may hold Adam moments in the other layout; ``load_state_dict`` keeps their strides,
    and the multi-tensor updates are written for a parameter and its moments laid out alike.
    """
    opt.load_state_dict(match_optimizer_state(saved, opt))
    for group in opt.param_groups:
        for p in group["params"]:
            state = opt.state.get(p, {})
            for k, v in state.items():
                if torch.is_tensor(v) and v.shape == p.shape and v.stride() != p.stride():
                    state[k] = torch.empty_like(p, dtype=v.dtype).copy_(v)


class TrainStep:
    """Callable ``step(real, z, gp_eps=None)``: one D step and one G step on this rank's batch.

    A seed sweep passes :class:`gmmgan.gan.stacked.StackedModule` s for G, D and G_ema and a list
    of the seeds' priors; then ``real``, ``z`` and ``gp_eps`` have a leading seed axis, and every
    loss is one seed's own, summed over seeds only for the backward pass (the seeds share nothing).

    Parameters
    ----------
    G, D, G_ema : nn.Module
    prior : gmmgan.gan.priors.Prior, or a list of them (one per seed of a sweep)
        Its ``penalty(fake, z)`` is added to the G loss.
    opt_g, opt_d : torch.optim.Optimizer
        Build them with :func:`adam` (capturable on CUDA when ``graph`` is True).
    gan : gmmgan.gan.losses.GANLoss
    r1_gamma, gp_weight : float
    r2_gamma : float, default=0
        R2: gamma/2 * E|grad D(fake)|^2, R1's penalty at the generated samples D is trained on.
    reg_interval : int, default=1
        Lazy regularization (StyleGAN2's): R1 and R2 only at the steps whose index is a multiple of
        it, weighted by it so their mean weight is unchanged. The step index counts from
        ``first_step``, so a resumed run regularizes at the steps the uninterrupted one would.
    ema_beta : float
        G_ema <- beta * G_ema + (1 - beta) * G after every step.
    autocast : callable
        Returns the autocast context of the nets (bf16 on CUDA or disabled).
    graph : bool
        Capture the step as a CUDA graph after ``WARMUP_STEPS`` eager steps (CUDA only).
    base_lrs : (list of float, list of float), optional
        The learning rate of each param group of ``opt_g`` and of ``opt_d`` that :meth:`set_lr_scale`
        scales (``schedule.lr_decay``); None: the rates are left as the optimizers have them.
    diffaugment : str
        DiffAugment policy (``loss.diffaugment``, :func:`gmmgan.gan.diffaugment.diff_augment`) applied
        to every image batch D sees; '' = off (the step is exactly the one without it).

    Attributes
    ----------
    sums : Tensor of shape (n_seeds, 3)
        This rank's running sums of loss_d, loss_g and the step count since :meth:`pop_means`.
    bad_step : Tensor of shape (n_seeds,)
        Per seed, the first step whose losses were not finite on this rank, or -1 (see :meth:`first_bad_step`).
    graphed : bool
        Whether steps are currently replayed from a CUDA graph.
    """

    def __init__(self, G: nn.Module, D: nn.Module, G_ema: nn.Module, prior, opt_g, opt_d, gan, *,
                 r1_gamma: float, gp_weight: float, ema_beta: float, autocast: Callable, device: torch.device,
                 graph: bool, first_step: int = 0, base_lrs: tuple[list[float], list[float]] | None = None,
                 diffaugment: str = "", r2_gamma: float = 0.0, reg_interval: int = 1):
        self.G, self.D, self.G_ema = G, D, G_ema
        self.stacked = isinstance(G, StackedModule)
        self.priors = list(prior) if self.stacked else [prior]
        self.n_seeds = len(self.priors)
        self.opt_g, self.opt_d, self.gan = opt_g, opt_d, gan
        self.r1_gamma, self.gp_weight, self.ema_beta = float(r1_gamma), float(gp_weight), float(ema_beta)
        self.r2_gamma = float(r2_gamma)
        if int(reg_interval) < 1:
            raise ValueError(f"reg_interval must be >= 1, got {reg_interval!r}.")
        # Lazy only where there is a penalty to skip; otherwise every step is the one (regularized) variant.
        self.reg_interval = int(reg_interval) if (self.r1_gamma > 0 or self.r2_gamma > 0) else 1
        self._next_index = int(first_step)  # host-side: which variant the next step is, without a sync
        self.autocast, self.device = autocast, device
        self.policy = parse_policy(diffaugment)
        self.use_graph = bool(graph) and device.type == "cuda"
        self.graphed = False
        self.sums = torch.zeros(self.n_seeds, 3, device=device)
        self.bad_step = torch.full((self.n_seeds,), -1, dtype=torch.long, device=device)
        self._step_t = torch.full((), first_step, dtype=torch.long, device=device)
        self._graphs: dict[bool, torch.cuda.CUDAGraph] = {}  # one per variant: regularized or not
        self._warmed: set[bool] = set()  # the variants that have run eagerly (capture needs one warm run)
        self._static: tuple[torch.Tensor, ...] | None = None
        self._eager_steps = 0
        self._ema_pairs = (list(G_ema.parameters()), list(G.parameters()))
        self._buffers = (list(G_ema.buffers()), list(G.buffers()))  # copied, not averaged (BatchNorm)
        self._base_lrs = None
        if base_lrs is not None:
            self._base_lrs = [list(map(float, lrs)) for lrs in base_lrs]
            for opt, lrs in zip((opt_g, opt_d), self._base_lrs):
                if len(opt.param_groups) != len(lrs):
                    raise ValueError(f"base_lrs: {len(lrs)} rates for {len(opt.param_groups)} param groups.")
                if self.use_graph:
                    # A replayed graph reads a float lr as the constant it was at capture, a tensor's value
                    # as it is at replay: capturable fused Adam takes lr as a float32 0-dim tensor on the
                    # device, which set_lr_scale changes in place.
                    for group in opt.param_groups:
                        group["lr"] = torch.tensor(float(group["lr"]), dtype=torch.float32, device=device)

    def set_lr_scale(self, scale: float) -> None:
        """Set every param group's learning rate to ``scale`` times its base rate, for the steps that follow.

        Eager: the group's ``lr`` (a float). In a CUDA-graph step: the lr tensor, filled in place
        (an ordinary kernel on the current stream, so it lands before the next replay).
        """
        if self._base_lrs is None:
            raise RuntimeError("set_lr_scale needs the base learning rates (TrainStep(..., base_lrs=...)).")
        for opt, lrs in zip((self.opt_g, self.opt_d), self._base_lrs):
            for group, base in zip(opt.param_groups, lrs):
                if torch.is_tensor(group["lr"]):
                    group["lr"].fill_(base * scale)
                else:
                    group["lr"] = base * scale

    # ------------------------------------------------------------------ the losses of one seed, or of each
    def _per_seed(self, loss, *args) -> torch.Tensor:
        """``loss(*args)``: a scalar for a single run, one value per seed (n_seeds,) for a sweep."""
        return vmap(loss)(*args) if self.stacked else loss(*args)

    def _augment(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` through the DiffAugment policy (``x`` itself when it is off).

        A sweep's batch (S, B, C, H, W) is augmented as S * B images, each with its own draws, outside
        the vmapped nets. The draws come from torch's default generator of the device: inside a CUDA
        graph that is the one generator whose (philox) state capture registers, so each replay draws
        new numbers; on the CPU it is seeded by the run (:func:`gmmgan.gan.seed_run.build_seed_run`).
        """
        if not self.policy:
            return x
        if not self.stacked:
            return diff_augment(x, self.policy)
        return diff_augment(x.flatten(0, 1), self.policy).unflatten(0, x.shape[:2])

    def _r1(self, D: nn.Module, real: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """D's output on real and the R1 penalty of each seed (the gradient of a sum splits by seed).

        Given generated samples instead, the same is R2.

        R1 differentiates ``gan.score`` of D's output: the logit itself, or log p(real) of a Mixture
        Density D's embedding (one number per sample or pack either way)."""
        score = self.gan.score
        if not self.stacked:
            real = real.detach().requires_grad_(True)
            logits = D(real)
            return logits, r1_penalty(score(logits), real)
        flat = real.detach().flatten(0, 1).requires_grad_(True)
        logits = D(flat.unflatten(0, real.shape[:2]))
        return logits, r1_penalty(score(logits).flatten(), flat, reduction="none").view(self.n_seeds, -1).mean(1)

    def _gp(self, D: nn.Module, real, fake, eps) -> torch.Tensor:
        score = self.gan.score
        if not self.stacked:
            return gradient_penalty(lambda x: score(D(x)), real, fake, eps=eps)
        seeds_batch = real.shape[:2]

        def flat_d(x):
            return score(D(x.unflatten(0, seeds_batch))).flatten()

        terms = gradient_penalty(flat_d, real.flatten(0, 1), fake.flatten(0, 1), reduction="none",
                                 eps=None if eps is None else eps.flatten())
        return terms.view(self.n_seeds, -1).mean(1)

    def _penalty(self, fake: torch.Tensor, z: torch.Tensor) -> torch.Tensor | None:
        """The priors' extra G loss (GMM likelihood, sigma penalty, component consistency) of each seed, or None."""
        if not self.stacked:
            return self.priors[0].penalty(fake, z)
        terms = [prior.penalty(f, zs) for prior, f, zs in zip(self.priors, fake, z)]
        return None if terms[0] is None else torch.stack(terms)

    # ------------------------------------------------------------------ the step itself
    def regularize_next(self) -> bool:
        """Whether the next step takes R1/R2 (``reg_interval``); advances the step index."""
        index, self._next_index = self._next_index, self._next_index + 1
        return index % self.reg_interval == 0

    def _step(self, real: torch.Tensor, z: torch.Tensor, gp_eps: torch.Tensor | None, reg: bool = True) -> None:
        G, D, gan, aug = self.G, self.D, self.gan, self._augment
        # D step: real up, fake down (+ R1 on real, R2 on fake / gradient penalty).
        D.requires_grad_(True)
        r1, r2 = self.r1_gamma > 0 and reg, self.r2_gamma > 0 and reg
        lazy = self.reg_interval  # a regularized step stands for reg_interval steps
        with self.autocast():
            fake = G(z)
            # DiffAugment (identity when off): D sees T(real) and T(fake), with fresh draws each time.
            # R1 is the gradient at the augmented reals, the images D is actually trained on (as the
            # paper's StyleGAN2 code does): it keeps D smooth where D's inputs are, and needs no
            # backward through T. WGAN-GP likewise interpolates between the augmented pairs.
            real, fake_d = aug(real), aug(fake.detach())
            real_logits, r1_terms = self._r1(D, real) if r1 else (D(real), None)
            fake_logits, r2_terms = self._r1(D, fake_d) if r2 else (D(fake_d), None)
            loss_d = self._per_seed(gan.d, _full(real_logits), _full(fake_logits))
            if r1:
                loss_d = loss_d + lazy * self.r1_gamma / 2 * r1_terms
            if r2:
                loss_d = loss_d + lazy * self.r2_gamma / 2 * r2_terms
            if self.gp_weight > 0:
                loss_d = loss_d + self.gp_weight * self._gp(D, real, _full(fake_d), gp_eps)
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.sum().backward() if self.stacked else loss_d.backward()
        distributed.all_reduce_mean_grads_(D.parameters())
        self.opt_d.step()
        # G step on the same z, through the updated D (+ the prior's penalty, if any).
        D.requires_grad_(False)
        with self.autocast():
            fake_logits = _full(D(aug(fake)))  # G's gradient flows back through T
            if gan.paired:  # relativistic: each generated sample against the real one of its row
                loss_g = self._per_seed(gan.g, _full(D(real)).detach(), fake_logits)
            else:
                loss_g = self._per_seed(gan.g, fake_logits)
        penalty = self._penalty(_full(fake), z)  # outside autocast: GMM log-densities need float32
        if penalty is not None:
            loss_g = loss_g + penalty
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.sum().backward() if self.stacked else loss_g.backward()
        distributed.all_reduce_mean_grads_([p for group in self.opt_g.param_groups for p in group["params"]])
        self.opt_g.step()
        with torch.no_grad():
            ema, params = self._ema_pairs
            torch._foreach_lerp_(ema, [p.detach() for p in params], 1 - self.ema_beta)
            if self._buffers[0]:
                torch._foreach_copy_(*self._buffers)  # one launch for all of them, not one per buffer
            # This rank's losses; ranks agree at the (rarer) log and NaN checks, not every step.
            losses = torch.stack([loss_d.detach().float(), loss_g.detach().float()], -1).view(self.n_seeds, 2)
            finite = torch.isfinite(losses).all(1)
            self.bad_step.copy_(torch.where(~finite & (self.bad_step < 0), self._step_t, self.bad_step))
            self.sums += torch.cat([losses, torch.ones(self.n_seeds, 1, device=losses.device)], 1)
            self._step_t += 1

    # ------------------------------------------------------------------ driving it
    def __call__(self, real: torch.Tensor, z: torch.Tensor, gp_eps: torch.Tensor | None = None) -> None:
        reg = self.regularize_next()
        if not self.use_graph or (z.requires_grad and torch.is_grad_enabled()):
            # Latents with gradients (learnable prior) must flow into the prior's parameters: eager.
            self._step(real, z, gp_eps, reg)
            return
        if self._static is None:
            self._static = tuple(t.detach().clone() for t in (real, z, gp_eps) if t is not None)
        for buf, t in zip(self._static, (real, z, gp_eps)):
            buf.copy_(t)
        if reg in self._graphs:
            self._graphs[reg].replay()
            return
        real_s, z_s, eps_s = (*self._static, None)[:3]
        if self._eager_steps < WARMUP_STEPS or reg not in self._warmed:
            # Warm-up on a side stream, as CUDA graph capture requires.
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                self._step(real_s, z_s, eps_s, reg)
            torch.cuda.current_stream(self.device).wait_stream(side)
            self._eager_steps += 1
            self._warmed.add(reg)
            return
        self._capture(real_s, z_s, eps_s, reg)

    def _capture(self, real_s, z_s, eps_s, reg: bool) -> None:
        """Capture the step (the ``reg`` variant) as a CUDA graph and run it once; eager from now on if that fails."""
        graph = torch.cuda.CUDAGraph()
        state = self._snapshot_tensors()
        try:
            with torch.cuda.graph(graph):
                self._step(real_s, z_s, eps_s, reg)
        except Exception as e:  # noqa: BLE001 - any capture failure means: carry on eagerly, say why
            self._restore_tensors(state)
            self.use_graph, self.graphed = False, False
            self._graphs.clear()
            warnings.warn(f"could not capture the training step as a CUDA graph ({type(e).__name__}: {e}); "
                          "training continues eagerly (slower). Set cuda_graphs=false to silence this.",
                          RuntimeWarning, stacklevel=3)
            self._step(real_s, z_s, eps_s, reg)
            return
        self._graphs[reg], self.graphed = graph, True
        graph.replay()

    def _snapshot_tensors(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        # Capture runs nothing, but a failed capture may leave tensors half-written: keep copies.
        return [(t, t.detach().clone()) for t in (self.sums, self.bad_step, self._step_t)]

    @staticmethod
    def _restore_tensors(state) -> None:
        for t, saved in state:
            t.copy_(saved)

    def pop_means(self) -> list[tuple[float, float]]:
        """Per seed, mean loss_d and loss_g over ranks and steps since the last call (a collective)."""
        sums = distributed.all_reduce_sum_(self.sums.clone()).tolist()
        self.sums.zero_()
        return [(ld / max(n, 1), lg / max(n, 1)) for ld, lg, n in sums]

    def first_bad_step(self) -> list[int]:
        """Per seed, the first step at which any rank saw a non-finite loss, or -1 (a collective)."""
        none = torch.iinfo(torch.long).max  # -1 means "none": the smallest non-negative step wins
        bad = distributed.all_reduce_min_(torch.where(self.bad_step < 0, none, self.bad_step))
        return [-1 if b == none else b for b in bad.tolist()]
