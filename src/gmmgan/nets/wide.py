"""N DCGAN nets of one architecture run as one wide net: grouped convolutions and batched products.

The seed-sweep engine (:class:`gmmgan.gan.stacked.StackedModule`) holds N seeds' weights on a
leading axis. :func:`torch.func.vmap` runs any architecture on them, but its batching rules move the
seed axis into the channels and back around every layer (a copy before and after each one), and
they cannot run BatchNorm on channels-last tensors. For the DCGAN nets this module writes the wide
net out instead: the activations stay in one layout, (batch, N * channels, H, W), for the whole net,
a convolution is one grouped convolution (groups = N), BatchNorm over N * C channels is exactly each
seed's BatchNorm over its own batch, and the linear layers are batched matrix products. So N seeds
cost about the kernels of one net, in the channels-last layout cuDNN's bf16 kernels use.

The weights are views of the stacked tensors (no copies), so autograd, Adam and the EMA act on the
stacked tensors as before; BatchNorm's running statistics are updated in place in them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gmmgan.nets.dcgan import DCGANDiscriminator, DCGANGenerator

__all__ = ["supports_wide", "wide_forward", "stack_like"]

_ELEMENTWISE = (nn.ReLU, nn.LeakyReLU, nn.Tanh)


def supports_wide(template: nn.Module) -> bool:
    """Whether :func:`wide_forward` can run ``template``: a DCGAN G or D without spectral norm."""
    if not isinstance(template, (DCGANGenerator, DCGANDiscriminator)):
        return False
    for m in template.modules():
        if hasattr(m, "parametrizations"):  # spectral norm: its power iteration is not written out here
            return False
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and (m.momentum is None or not m.track_running_stats):
            return False
    return True


def stack_like(tensors: list[torch.Tensor]) -> torch.Tensor:
    """The seeds' tensors on a new leading axis, laid out so that merging it into the next axis keeps their layout.

    A channels-last conv weight (C_out, C_in, k, k) of each seed becomes (N, C_out, C_in, k, k)
    stored as (N, C_out, k, k, C_in): its view (N * C_out, C_in, k, k), the grouped convolution's
    weight, is channels-last again. Other tensors are stacked contiguous. (Adam's moments are stacked
    into the stacked parameter's own layout by :func:`gmmgan.gan.stacked.stacked_adam`.)
    """
    t0 = tensors[0]
    if t0.ndim == 4 and t0.is_contiguous(memory_format=torch.channels_last) and not t0.is_contiguous():
        return torch.stack([t.permute(0, 2, 3, 1) for t in tensors]).permute(0, 1, 4, 2, 3)
    return torch.stack([t.contiguous() for t in tensors])


def wide_forward(template: nn.Module, tensors: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Run the N nets stacked in ``tensors`` (names of ``template``'s state, each (N, ...)) on ``x`` (N, B, ...).

    Returns what ``template`` returns for one seed, with a leading seed axis: G images
    (N, B, C, R, R); D logits (N, B // pack) or embeddings (N, B // pack, out_dim).
    """
    if not isinstance(template, (DCGANGenerator, DCGANDiscriminator)):
        raise TypeError(f"wide_forward runs DCGAN nets only, got {type(template).__name__}; check supports_wide first.")
    n = x.shape[0]
    nhwc = _channels_last(template)
    if isinstance(template, DCGANGenerator):
        if x.ndim != 3 or x.shape[2] != template.z_dim:
            raise ValueError(f"expected z of shape (N, B, {template.z_dim}), got {tuple(x.shape)}.")
        b = x.shape[1]
        h = _linear(tensors, "fc.0", x)  # (N, B, F)
        h = h.transpose(0, 1).reshape(b, -1)  # (B, N * F): BatchNorm1d over N * F features
        h = _sequential(template.fc, "fc", tensors, h, n, first=1)
        c, s, _ = template.start
        h = h.view(b, n * c, s, s)
        if nhwc:
            h = h.contiguous(memory_format=torch.channels_last)
        h = _sequential(template.conv, "conv", tensors, h, n)
        return h.view(b, n, template.channels, *h.shape[2:]).transpose(0, 1)  # a view, in either layout
    expected = (template.channels, template.resolution, template.resolution)
    if x.ndim != 5 or tuple(x.shape[2:]) != expected:
        raise ValueError(f"expected images of shape (N, B, {', '.join(map(str, expected))}), got {tuple(x.shape)}.")
    b, p = x.shape[1], template.pack
    if b % p:
        raise ValueError(f"batch of {b} samples cannot be split into packs of {p}; use a multiple of {p}.")
    # PacGAN packs per seed (consecutive samples along channels), then the seeds side by side.
    h = x.reshape(n, b // p, p * x.shape[2], *x.shape[3:]).transpose(0, 1).reshape(b // p, -1, *x.shape[3:])
    h = h.contiguous(memory_format=torch.channels_last) if nhwc else h.contiguous()
    h = _sequential(template.conv, "conv", tensors, h, n)
    h = h.reshape(b // p, n, -1).transpose(0, 1)  # (N, B', C * H * W) in each seed's (c, y, x) order
    out = _linear(tensors, "fc", h)
    return out.squeeze(2) if template.out_dim == 1 else out


def _channels_last(template: nn.Module) -> bool:
    w = next(m.weight for m in template.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)))
    return w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous()


def _linear(tensors, name: str, x: torch.Tensor) -> torch.Tensor:
    """(N, B, in) -> (N, B, out) with each seed's weight (N, out, in) and bias (N, out)."""
    w = tensors[f"{name}.weight"]
    bias = tensors.get(f"{name}.bias")
    if bias is None:
        return torch.bmm(x, w.transpose(1, 2))
    return torch.baddbmm(bias.unsqueeze(1), x, w.transpose(1, 2))


def _sequential(seq: nn.Sequential, prefix: str, tensors, h: torch.Tensor, n: int, first: int = 0) -> torch.Tensor:
    """Apply ``seq[first:]`` to the wide activations ``h`` (B, N * C, ...)."""
    for i in range(first, len(seq)):
        m, name = seq[i], f"{prefix}.{i}"
        if isinstance(m, nn.Conv2d):
            h = F.conv2d(h, _merge(tensors[f"{name}.weight"]), _merge(tensors.get(f"{name}.bias")), m.stride,
                         m.padding, m.dilation, n)
        elif isinstance(m, nn.ConvTranspose2d):
            h = F.conv_transpose2d(h, _merge(tensors[f"{name}.weight"]), _merge(tensors.get(f"{name}.bias")), m.stride,
                                   m.padding, m.output_padding, n, m.dilation)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            if m.training:
                tensors[f"{name}.num_batches_tracked"].add_(1)
            h = F.batch_norm(h, _merge(tensors[f"{name}.running_mean"]), _merge(tensors[f"{name}.running_var"]),
                             _merge(tensors[f"{name}.weight"]), _merge(tensors[f"{name}.bias"]), m.training,
                             m.momentum, m.eps)
        elif isinstance(m, _ELEMENTWISE):
            h = m(h)
        else:
            raise TypeError(f"wide_forward has no rule for {type(m).__name__} ({name}).")
    return h


def _merge(t: torch.Tensor | None) -> torch.Tensor | None:
    """(N, C, ...) -> (N * C, ...) as a view (the stacked layout of :func:`stack_like` allows it)."""
    return None if t is None else t.view(-1, *t.shape[2:])
