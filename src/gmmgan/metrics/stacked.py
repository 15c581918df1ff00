"""Stacked-MNIST mode coverage: distinct digit triples and KL to the uniform over 1,000 modes.

The protocol of Metz et al. (Unrolled GANs, 2017), VEEGAN (Srivastava et al., 2017, Table 2) and
PacGAN (Lin et al., 2018, Tables 2-3), as fixed in docs/protocols.md, section 'Stacked MNIST': generate 26,000 images of
3 x 28 x 28, classify each channel with a pretrained MNIST classifier (>= 99.2% test accuracy),
take the digit triple as the mode (1,000 possible), report the number of distinct modes and
KL(p_hat || uniform over 1,000) of the mode histogram of all samples.

Because the uniform over 1,000 modes is the product of three uniforms over 10 digits, that KL splits
exactly into the three channels' own KLs (is each channel's digit mix even?) plus the total
correlation of the channels (do the channels' digits depend on each other?). The split says where a
generator's unevenness lives, which one number cannot.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from gmmgan.metrics._common import kl_floor, kl_to_uniform
from gmmgan.metrics.classifier import prepare_images

__all__ = ["StackedModes", "classify_channels", "modes_from_digits", "stacked_mnist_modes"]

N_MODES = 1000


@dataclass(frozen=True)
class StackedModes:
    """Result of :func:`stacked_mnist_modes`.

    Attributes
    ----------
    modes : int
        Number of distinct digit triples among the samples (out of 1,000).
    reverse_kl : float
        KL(p_hat || uniform over 1,000) in nats.
    kl_floor : float
        999 / (2 N): expected ``reverse_kl`` of a perfect sampler (0.0192 at N = 26,000).
    n_samples : int
    counts : list of int, length 1000
        Histogram of modes; mode index = 100 * digit(channel 0) + 10 * digit(channel 1) + digit(channel 2).
    channel_kl : list of float, length 3
        KL(digit histogram of channel c || uniform over 10), nats. A perfect sampler's expected
        value is 9 / (2 N) each; MNIST's own digit frequencies (1 is 11.2%, 5 is 9.0%) put real
        data at about 0.0015 each (benchmarks/stacked_real_reference.py).
    total_correlation : float
        ``reverse_kl - sum(channel_kl)`` (>= 0): the KL between the mode histogram and the product
        of its channel marginals. A perfect sampler's expected value is 972 / (2 N) (0.0187 at
        N = 26,000), so nearly all of ``kl_floor`` lives here.
    """

    modes: int
    reverse_kl: float
    kl_floor: float
    n_samples: int
    counts: list[int]
    channel_kl: list[float]
    total_correlation: float

    def as_dict(self) -> dict:
        """Plain-Python dict (JSON-serialisable)."""
        return asdict(self)


@torch.no_grad()
def classify_channels(images, classifier: nn.Module, batch_size: int = 1024) -> torch.Tensor:
    """The digit in each channel of Stacked-MNIST images.

    Parameters
    ----------
    images : Tensor or array of shape (n_samples, 3, 28, 28)
        uint8 in [0, 255] or float in [0, 1] (map generator outputs in [-1, 1] with (x + 1) / 2).
    classifier : nn.Module
        Maps float images (B, 1, 28, 28) in [0, 1] to logits (B, 10), e.g. the
        :class:`~gmmgan.metrics.classifier.FeatureClassifier` from ``load_classifier('mnist')``.
        Run in eval mode (its mode is restored afterwards), on its own device.
    batch_size : int, default=1024
        Images per forward pass (each gives 3 classifier inputs).

    Returns
    -------
    digits : int64 Tensor of shape (n_samples, 3), on CPU
    """
    x = images if isinstance(images, torch.Tensor) else torch.as_tensor(images)
    if x.ndim != 4 or tuple(x.shape[1:]) != (3, 28, 28):
        raise ValueError(
            f"Stacked-MNIST images must have shape (n_samples, 3, 28, 28), got {tuple(x.shape)}."
        )
    if x.shape[0] == 0:
        raise ValueError("images is empty; the protocol evaluates 26,000 samples.")
    if not isinstance(classifier, nn.Module):
        raise ValueError(  # noqa: TRY004 - the CLI reports ValueErrors as bad input
            f"classifier must be a torch.nn.Module mapping images to logits, got {type(classifier).__name__}."
        )
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    params = list(classifier.parameters()) + list(classifier.buffers())
    device = params[0].device if params else torch.device("cpu")
    was_training = classifier.training
    classifier.eval()
    out = []
    try:
        for i in range(0, x.shape[0], batch_size):
            chunk = x[i : i + batch_size]
            flat = prepare_images(chunk.reshape(-1, 28, 28)).to(device)  # (3B, 1, 28, 28), channel-major per image
            logits = classifier(flat)
            if logits.ndim != 2 or logits.shape != (flat.shape[0], 10):
                raise ValueError(
                    f"classifier must return logits of shape (batch, 10), got {tuple(logits.shape)} "
                    f"for a batch of {flat.shape[0]} images."
                )
            out.append(logits.argmax(dim=1).reshape(-1, 3).cpu())
    finally:
        classifier.train(was_training)
    return torch.cat(out)


def modes_from_digits(digits) -> StackedModes:
    """Mode count and reverse KL from per-channel digits of shape (n_samples, 3), values 0..9."""
    d = torch.as_tensor(digits)
    if d.ndim != 2 or d.shape[1] != 3:
        raise ValueError(f"digits must have shape (n_samples, 3), got {tuple(d.shape)}.")
    if d.shape[0] == 0:
        raise ValueError("digits is empty.")
    if d.is_floating_point() or int(d.min()) < 0 or int(d.max()) > 9:
        raise ValueError("digits must be integers in 0..9.")
    d = d.long()
    mode = d[:, 0] * 100 + d[:, 1] * 10 + d[:, 2]
    counts = torch.bincount(mode, minlength=N_MODES)
    n = int(d.shape[0])
    reverse_kl = kl_to_uniform(counts)
    channel_kl = [kl_to_uniform(torch.bincount(d[:, c], minlength=10)) for c in range(3)]
    return StackedModes(
        modes=int((counts > 0).sum()),
        reverse_kl=reverse_kl,
        kl_floor=kl_floor(n, N_MODES),
        n_samples=n,
        counts=counts.tolist(),
        channel_kl=channel_kl,
        # Clamped at 0: the identity is exact, only the float sum of the parts can overshoot by ~1e-16.
        total_correlation=max(reverse_kl - sum(channel_kl), 0.0),
    )


def stacked_mnist_modes(images, classifier: nn.Module, batch_size: int = 1024) -> StackedModes:
    """Number of modes (distinct digit triples) and KL(p_hat || uniform over 1,000).

    Parameters
    ----------
    images : Tensor or array of shape (n_samples, 3, 28, 28)
        Generated Stacked-MNIST images, uint8 or float in [0, 1]. The protocol uses
        n_samples = 26,000; fewer samples lower the mode count and raise the KL floor.
    classifier : nn.Module
        The MNIST classifier (``gmmgan.metrics.load_classifier('mnist')``) or any module mapping
        (B, 1, 28, 28) floats in [0, 1] to (B, 10) logits.
    batch_size : int, default=1024

    Returns
    -------
    StackedModes

    References
    ----------
    Metz et al., "Unrolled generative adversarial networks", ICLR 2017. Srivastava et al.,
    "VEEGAN", NeurIPS 2017. Lin et al., "PacGAN", NeurIPS 2018.
    """
    return modes_from_digits(classify_channels(images, classifier, batch_size))
