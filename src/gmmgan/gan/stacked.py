"""N networks of one architecture run as one: the engine of a seed sweep (``gmmgan train --seeds``).

Why: the reference nets are small, so one run leaves a GPU mostly idle, and two processes sharing it
take as long as running them one after the other. Stacking the N seeds' weights along a new leading
axis and running the architecture under :func:`torch.func.vmap` turns each layer into one batched
kernel (a linear layer into a batched matrix product, a convolution into a grouped convolution with
N groups), so N GANs cost little more than one.

Why it is still N separate trainings: every operation of the nets acts on one sample of one seed
(BatchNorm normalises over the batch of its own seed; spectral norm's power iteration runs on its
own seed's weight), Adam and the EMA act element by element, and the losses are summed over seeds,
so seed s's gradient is exactly the gradient of its own loss. The arithmetic per seed is that of a
single run up to float rounding of the batched kernels (``tests/test_sweep.py`` checks the weights).

The per-seed modules and optimizers stay the truth at rest: :class:`StackedModule` and
:func:`stacked_adam` copy them in, :meth:`StackedModule.unstack_into` and :func:`unstack_adam`
copy the state back, so each seed's checkpoint, snapshot and samples are written by the single-run
code, unchanged.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.func import functional_call, vmap

from gmmgan.nets.wide import stack_like, supports_wide, wide_forward

__all__ = ["StackedModule", "stacked_adam", "unstack_adam"]


def _stack(tensors: list[torch.Tensor]) -> torch.Tensor:
    """The seeds' tensors on a new leading axis, in the default (contiguous) layout whatever theirs."""
    return torch.stack([t.contiguous() for t in tensors])


@torch.no_grad()
def _stack_as(like: torch.Tensor, tensors: list[torch.Tensor]) -> torch.Tensor:
    """The seeds' tensors stacked in the layout of ``like`` (fused Adam needs a moment laid out as its parameter)."""
    out = torch.empty_like(like, dtype=tensors[0].dtype)
    for s, t in enumerate(tensors):
        out[s].copy_(t)
    return out


class StackedModule(nn.Module):
    """N modules of one architecture as one module whose tensors have a leading seed axis.

    Parameters
    ----------
    modules : sequence of nn.Module
        Same class and shapes (N >= 1); their parameters and buffers are copied, not shared.

    wide : 'auto' or bool, default='auto'
        Run the nets as one wide net (:mod:`gmmgan.nets.wide`: grouped convolutions, the seeds'
        activations side by side in one layout) instead of under :func:`torch.func.vmap`. 'auto'
        takes it where it applies (DCGAN nets without spectral norm); the arithmetic is the same.

    ``forward(x)`` takes ``x`` of shape (N, B, ...) and returns (N, ...): module s applied to
    ``x[s]``. Train/eval mode and ``requires_grad_`` act on the stacked tensors as on one module.
    """

    def __init__(self, modules, wide: str | bool = "auto"):
        super().__init__()
        modules = list(modules)
        if not modules:
            raise ValueError("StackedModule needs at least one module.")
        shapes = [[(n, t.shape) for n, t in m.state_dict().items()] for m in modules]
        if any(s != shapes[0] for s in shapes):
            raise ValueError("the modules of a StackedModule must share their architecture (same names and shapes).")
        self.n = len(modules)
        if wide not in ("auto", True, False):
            raise ValueError(f"wide must be 'auto', True or False, got {wide!r}.")
        self.wide = supports_wide(modules[0]) if wide == "auto" else wide
        if self.wide and not supports_wide(modules[0]):
            raise ValueError(f"wide=True runs DCGAN nets without spectral norm only, got {type(modules[0]).__name__}; "
                             "use wide='auto'.")
        # The template whose forward is run; kept out of the module tree so that its own tensors
        # are never trained, saved or moved (functional_call replaces every one of them).
        self.__dict__["template"] = copy.deepcopy(modules[0])
        if not self.wide:
            for m in self.template.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.register_forward_pre_hook(_full_precision_input)
        self.param_names = [n for n, _ in modules[0].named_parameters()]
        self.buffer_names = [n for n, _ in modules[0].named_buffers()]
        per_seed = [dict(m.named_parameters()) for m in modules]
        # vmap cannot run BatchNorm on channels-last weights (the seeds' nets are NHWC on CUDA,
        # TrainConfig.channels_last): stacked in the default layout for it; the wide net keeps NHWC.
        # unstack_into copies back either way.
        stack = stack_like if self.wide else _stack
        self.stacked_params = nn.ParameterList(
            nn.Parameter(stack([p[n].detach() for p in per_seed]), requires_grad=per_seed[0][n].requires_grad)
            for n in self.param_names)
        bufs = [dict(m.named_buffers()) for m in modules]
        for i, name in enumerate(self.buffer_names):
            self.register_buffer(f"stacked_buffer_{i}", stack([b[name].detach() for b in bufs]))
        self.train(modules[0].training)

    def _tensors(self) -> dict[str, torch.Tensor]:
        tensors = dict(zip(self.param_names, self.stacked_params))
        tensors.update((name, getattr(self, f"stacked_buffer_{i}")) for i, name in enumerate(self.buffer_names))
        return tensors

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] != self.n:
            raise ValueError(f"expected a leading seed axis of {self.n}, got input of shape {tuple(x.shape)}.")
        template = self.template
        if self.wide:
            return wide_forward(template, self._tensors(), x)

        def one(tensors, xs):
            return functional_call(template, tensors, (xs,))

        # randomness='error': every random draw comes from the caller's per-seed generators.
        return vmap(one, randomness="error")(self._tensors(), x)

    def train(self, mode: bool = True) -> StackedModule:
        super().train(mode)
        self.template.train(mode)
        return self

    @torch.no_grad()
    def unstack_into(self, modules) -> None:
        """Copy seed s's parameters and buffers into ``modules[s]`` (same architecture, any device)."""
        tensors = self._tensors()
        for s, module in enumerate(modules):
            mine = dict(module.named_parameters())
            mine.update(module.named_buffers())
            for name, t in tensors.items():
                mine[name].copy_(t[s])


    @torch.no_grad()
    def restack_buffers_from(self, modules) -> None:
        """Copy every buffer of ``modules[s]`` into seed s's slice of the stacked buffers, in place.

        The stacked buffers keep their storage (a captured CUDA graph reads them at its next replay);
        for state changed outside the step on the per-seed modules, e.g. a refitted mixture head
        (:func:`gmmgan.gan.density_head.refresh_head`).
        """
        modules = list(modules)
        if len(modules) != self.n:
            raise ValueError(f"restack_buffers_from: {len(modules)} modules for {self.n} stacked seeds.")
        for s, module in enumerate(modules):
            mine = dict(module.named_buffers())
            for i, name in enumerate(self.buffer_names):
                getattr(self, f"stacked_buffer_{i}")[s].copy_(mine[name])


def _full_precision_input(_module, args):
    """BatchNorm under vmap and bf16 autocast: vmap's backward rule wants the input in the statistics' dtype.

    A single run's BatchNorm takes the bf16 activations as they are and computes in float32 inside;
    under vmap the backward fails on the mixed dtypes, so the input is made float32 first (the same
    arithmetic: the statistics were float32 already). float32 and float64 inputs are left alone.
    """
    x = args[0]
    return (x.float(),) + tuple(args[1:]) if x.dtype in (torch.bfloat16, torch.float16) else None


def stacked_adam(make_adam, groups, per_seed_opts) -> torch.optim.Optimizer:
    """One Adam over stacked parameters, with the state of the N per-seed optimizers.

    Parameters
    ----------
    make_adam : callable(param_groups) -> torch.optim.Adam
        Builds the optimizer with the run's settings (fused/capturable flags, lr, betas, eps).
    groups : list of (params, stacked)
        One per param group of the per-seed optimizers, in their order. ``stacked=True``: a
        :class:`StackedModule`'s parameters, in the per-seed order. ``stacked=False``: tensors
        that are not stacked (a learnable prior's: one module per seed), every seed's own
        tensors one seed after the other.
    per_seed_opts : list of torch.optim.Adam
        The seeds' optimizers, each with the same groups (lr and the like are taken from seed 0).

    Adam's update is element by element, so the stacked state is the per-seed state side by side
    and one step of the stacked optimizer is one step of each per-seed optimizer.
    """
    settings = [{k: v for k, v in g.items() if k != "params"} for g in per_seed_opts[0].param_groups]
    opt = make_adam([{**kw, "params": list(params)} for kw, (params, _) in zip(settings, groups)])
    for (_, stacked), pairs in zip(groups, _pairs(groups, per_seed_opts)):
        for wide, seeds in pairs:  # a tensor of the stacked optimizer, and [(opt_s, param_s)] it holds
            states = [o.state.get(p) for o, p in seeds]
            if not states[0]:
                continue  # not stepped yet
            p0 = seeds[0][1]
            opt.state[wide] = {k: _stack_as(wide, [st[k] for st in states]) if stacked and _per_element(v, p0)
                               else v.clone() for k, v in states[0].items()}
    return opt


@torch.no_grad()
def unstack_adam(opt: torch.optim.Optimizer, groups, per_seed_opts) -> None:
    """Copy the stacked optimizer's state back into the per-seed optimizers (``groups`` as for :func:`stacked_adam`)."""
    for (_, stacked), pairs in zip(groups, _pairs(groups, per_seed_opts)):
        for wide, seeds in pairs:
            state = opt.state.get(wide)
            if not state:
                continue
            for s, (o, p) in enumerate(seeds):
                o.state[p] = {k: v[s].clone() if stacked and _per_element(v, wide) else v.clone()
                              for k, v in state.items()}


def _pairs(groups, per_seed_opts):
    """Per group: [(stacked tensor, [(opt_s, param_s) for the seeds whose values it holds])]."""
    out = []
    for gi, (params, stacked) in enumerate(groups):
        seeds_params = [(o, o.param_groups[gi]["params"]) for o in per_seed_opts]
        if stacked:
            out.append([(p, [(o, ps[j]) for o, ps in seeds_params]) for j, p in enumerate(params)])
        else:
            flat = [(o, p) for o, ps in seeds_params for p in ps]
            if len(flat) != len(params):
                raise ValueError(f"group {gi}: {len(params)} tensors for {len(flat)} per-seed tensors.")
            out.append([(p, [pair]) for p, pair in zip(params, flat)])
    return out


def _per_element(state: torch.Tensor, param: torch.Tensor) -> bool:
    """Whether an optimizer state tensor holds one value per parameter element (exp_avg) or not (step)."""
    return torch.is_tensor(state) and state.shape == param.shape and state.ndim > 0
