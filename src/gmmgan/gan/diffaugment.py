"""DiffAugment: differentiable augmentation of the images D sees (Zhao et al., NeurIPS 2020).

"Differentiable Augmentation for Data-Efficient GAN Training" augments real *and* generated images
with the same random, differentiable transformation ``T`` every time D sees them (D step on
``D(T(real))`` and ``D(T(fake))``, G step on ``D(T(fake))``), so D cannot memorise a small training
set while G still gets a gradient through ``T``. The policy is a comma list of the paper's three
transformation groups, applied in the order given:

- ``color``: brightness (add U(-0.5, 0.5)), saturation (scale each pixel's deviation from its mean
  over the channels by U(0, 2)) and contrast (scale the deviation from the image's mean by
  U(0.5, 1.5)), one draw per sample each;
- ``translation``: shift by an integer number of pixels, up to 1/8 of the image size in each
  direction (drawn per sample), filling the uncovered border with zeros;
- ``cutout``: set a square of half the image size, centred at a random pixel per sample (it may
  reach over the border), to zero.

gmmgan's images lie in [-1, 1], as in the paper's code, so the paper's constants apply unchanged:
brightness moves an image by up to a quarter of its range, contrast and saturation are relative to
a mean and do not depend on the range, and the zeros of translation and cutout are mid-grey (not
black). Nothing is clipped back to [-1, 1] (neither does the paper; D sees the values as they are).

Every transformation is made of elementwise arithmetic, ``gather`` and masks, so it is
differentiable w.r.t. its input, works on any device, treats the whole batch at once (no Python
loop over samples) and has no data-dependent shapes (it can be captured in a CUDA graph). Random
numbers come from ``generator``, or from torch's default generator of ``x``'s device when it is
None (what training uses: a CUDA graph replay then draws new numbers each step).

>>> x = torch.zeros(2, 1, 8, 8)
>>> diff_augment(x, "color,translation,cutout", torch.Generator().manual_seed(0)).shape
torch.Size([2, 1, 8, 8])
>>> diff_augment(x, "") is x
True
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

__all__ = ["POLICIES", "TRANSLATION_RATIO", "CUTOUT_RATIO", "brightness", "check_data", "contrast", "cutout",
           "diff_augment", "parse_policy", "saturation", "translation"]

TRANSLATION_RATIO = 0.125  # the paper's: shifts of up to 1/8 of the image size
CUTOUT_RATIO = 0.5  # the paper's: a square of half the image size


def _uniform(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """One U(0, 1) number per sample, shape (N, 1, 1, 1), in x's dtype (drawn in float32 so that the
    random stream does not depend on the dtype, e.g. a bf16 fake under autocast)."""
    u = torch.rand(x.shape[0], 1, 1, 1, generator=generator, device=x.device)
    return u.to(x.dtype)


def brightness(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """``x + U(-0.5, 0.5)``, one offset per sample. x : (N, C, H, W) -> (N, C, H, W)."""
    return x + (_uniform(x, generator) - 0.5)


def saturation(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Each pixel's deviation from its mean over the channels scaled by U(0, 2), one factor per sample.

    x : (N, C, H, W) -> (N, C, H, W). For a grey image (C = 1) the deviation is zero, so this is the
    identity: ``x`` itself is returned and nothing is drawn.
    """
    if x.shape[1] == 1:
        return x
    mean = x.mean(dim=1, keepdim=True)
    return (x - mean) * (_uniform(x, generator) * 2) + mean


def contrast(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """The deviation from the image's mean (over C, H, W) scaled by U(0.5, 1.5), one factor per sample.
    x : (N, C, H, W) -> (N, C, H, W)."""
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_uniform(x, generator) + 0.5) + mean


def _shift_limit(size: int, ratio: float) -> int:
    return int(size * ratio + 0.5)


def translation(x: torch.Tensor, generator: torch.Generator | None = None,
                ratio: float = TRANSLATION_RATIO) -> torch.Tensor:
    """Shift each image by integers ``(dy, dx)``, each uniform in ``[-s, s]`` with ``s = round(size * ratio)``.

    ``out[n, :, i, j] = x[n, :, i - dy[n], j - dx[n]]`` where that pixel exists, else 0 (zero padding:
    mid-grey for images in [-1, 1]). ``dy`` is drawn first (N integers), then ``dx``.

    x : (N, C, H, W) -> (N, C, H, W). Gradients flow to every pixel that stays in the image.
    """
    N, C, H, W = x.shape
    sy, sx = _shift_limit(H, ratio), _shift_limit(W, ratio)
    dy = torch.randint(-sy, sy + 1, (N, 1), generator=generator, device=x.device)
    dx = torch.randint(-sx, sx + 1, (N, 1), generator=generator, device=x.device)
    # Pad one pixel of zeros on each side and read from there: a source index outside the image is
    # clamped onto the padding, so every out-of-range read gives 0 without a data-dependent mask.
    padded = F.pad(x, (1, 1, 1, 1))
    rows = (torch.arange(H, device=x.device) - dy + 1).clamp(0, H + 1)  # (N, H), indices into the padded rows
    cols = (torch.arange(W, device=x.device) - dx + 1).clamp(0, W + 1)  # (N, W)
    # gather (backward: scatter_add) rather than advanced indexing: shapes are fixed, no copy of x per sample.
    out = padded.gather(2, rows[:, None, :, None].expand(N, C, H, W + 2))
    return out.gather(3, cols[:, None, None, :].expand(N, C, H, W))


def cutout(x: torch.Tensor, generator: torch.Generator | None = None, ratio: float = CUTOUT_RATIO) -> torch.Tensor:
    """Zero a ``round(H * ratio)`` x ``round(W * ratio)`` square per image, as the paper's code places it.

    The square's centre ``(cy, cx)`` is uniform over ``[0, H + 1 - h % 2)`` x ``[0, W + 1 - w % 2)``
    (drawn in that order, N integers each); it covers rows ``cy - h // 2 <= i < cy - h // 2 + h``
    (and likewise columns), clipped to the image, so near the border only part of it is inside.

    x : (N, C, H, W) -> (N, C, H, W). The gradient inside the hole is zero.
    """
    N, _, H, W = x.shape
    h, w = _shift_limit(H, ratio), _shift_limit(W, ratio)
    cy = torch.randint(0, H + (1 - h % 2), (N, 1), generator=generator, device=x.device)
    cx = torch.randint(0, W + (1 - w % 2), (N, 1), generator=generator, device=x.device)
    top, left = cy - h // 2, cx - w // 2
    i, j = torch.arange(H, device=x.device), torch.arange(W, device=x.device)
    in_rows = (i >= top) & (i < top + h)  # (N, H)
    in_cols = (j >= left) & (j < left + w)  # (N, W)
    keep = ~(in_rows[:, :, None] & in_cols[:, None, :])  # (N, H, W)
    # A multiplication, not masked assignment: no in-place write into a tensor autograd needs.
    return x * keep[:, None].to(x.dtype)


_OPS: dict[str, tuple[Callable[..., torch.Tensor], ...]] = {
    "color": (brightness, saturation, contrast),
    "translation": (translation,),
    "cutout": (cutout,),
}
POLICIES = tuple(_OPS)


def parse_policy(policy: str) -> tuple[str, ...]:
    """The names of a policy string, in its order: ``'color,cutout'`` -> ``('color', 'cutout')``; ``''`` -> ().

    Spaces around names are ignored. An unknown or repeated name is a ``ValueError`` naming the valid ones.
    """
    if not isinstance(policy, str):
        raise ValueError(  # noqa: TRY004 - a config value: reported as the config's other errors are
            f"loss.diffaugment must be a comma list of {', '.join(POLICIES)} (or empty), got {policy!r}.")
    names = tuple(p.strip() for p in policy.split(",")) if policy.strip() else ()
    for name in names:
        if name not in _OPS:
            raise ValueError(f"loss.diffaugment: unknown transformation {name!r} in {policy!r}; valid ones: "
                             f"{', '.join(POLICIES)} (a comma list of any of them, e.g. 'color,translation,cutout', "
                             "or empty for none).")
    if len(set(names)) != len(names):
        raise ValueError(f"loss.diffaugment: {policy!r} names a transformation twice; give each of "
                         f"{', '.join(POLICIES)} at most once.")
    return names


def check_data(policy: str, data_name: str) -> None:
    """``ValueError`` if ``policy`` is not empty and ``data_name`` is one of the 2-D point sets."""
    from gmmgan.data.toy import TOY_NAMES

    if parse_policy(policy) and data_name in TOY_NAMES:
        raise ValueError(f"loss.diffaugment={policy!r} augments images, but data.name={data_name} is a set of 2-D "
                         "points; DiffAugment is for images (mnist, stacked-mnist, folder, ...): drop it "
                         "(loss.diffaugment='').")


def diff_augment(x: torch.Tensor, policy: str | tuple[str, ...], generator: torch.Generator | None = None
                 ) -> torch.Tensor:
    """``x`` transformed by every transformation of ``policy``, in order, with fresh random numbers per sample.

    Parameters
    ----------
    x : Tensor of shape (N, C, H, W)
        Images (in [-1, 1] in gmmgan). Flatten extra leading axes (a sweep's seeds) into N first.
    policy : str or tuple of str
        ``'color,translation,cutout'`` or any subset, in any order (see :func:`parse_policy`); ``''``
        (or ``()``) returns ``x`` itself.
    generator : torch.Generator, optional
        On ``x``'s device; None = torch's default generator of that device.

    Returns
    -------
    Tensor of shape (N, C, H, W), differentiable w.r.t. ``x``.
    """
    names = parse_policy(policy) if isinstance(policy, str) else policy
    if not names:
        return x
    if x.dim() != 4:
        raise ValueError(f"diff_augment takes images of shape (N, C, H, W), got shape {tuple(x.shape)}.")
    for name in names:
        for op in _OPS[name]:
            x = op(x, generator)
    return x
