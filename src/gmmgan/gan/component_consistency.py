"""Component consistency: G is penalised when the image of a latent drawn from component k does not look like k.

The fitted prior gives G a latent z whose first coordinates come from mixture component k of a
GMM fitted in an embedding of the real images. The warm start teaches G to map component k to
the decoder's images of k, but the adversarial phase has nothing that keeps it so: D only asks
for realistic images, and G is free to morph one component's images into another class (MNIST,
contrastive embedding, 300 kimg: the embedding's own GMM clusters the real test digits at 0.96,
the generator's components only at 0.73-0.84; docs/results.md). InfoGAN (Chen et al. 2016) and
ClusterGAN (Mukherjee et al. 2019) add a loss that recovers the latent's category from the
image; here the recovering network is not trained with G, it is the fixed embedding and its
mixture:

    loss = weight * CE( p(k | z_mix),  p(k | embed(G(z))) )

the cross-entropy between the component posterior of the latent's mixture part (the target,
no gradient) and the component posterior of the generated image's embedding (differentiable
through the frozen embedding into G). Where ``encode`` is differentiable (PCA, the autoencoder,
a contrastive code without the manifold step) the mixture's own posterior
(:meth:`gmmgan.gan.fitted_mixture.FittedMixture.log_posterior`) is used. A manifold
step's coordinates are a neighbour average with no gradient, so there a :class:`ComponentHead`,
a softmax regression from the embedding's differentiable ``features`` (the codes the layout is
made from) to the mixture's posterior on the training images, stands in for it.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from gmmgan.gan.embed import ResizableBuffersMixin

__all__ = ["ComponentHead", "consistency_loss"]


def consistency_loss(target_log: torch.Tensor, pred_log: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy between two (n, K) log posteriors; only ``pred_log`` carries a gradient."""
    return -(target_log.detach().exp() * pred_log).sum(1).mean()


class ComponentHead(ResizableBuffersMixin, nn.Module):
    """Softmax regression from an embedding's features (n, F) to the mixture's component posterior (n, K).

    Fitted once, by full-batch L-BFGS on the cross-entropy against the mixture's posterior on the
    real training images (soft targets), then frozen; its weights are buffers, so they travel with
    the prior's state (checkpoints, snapshots) and a resumed run never refits it.
    """

    def __init__(self):
        super().__init__()
        self.register_buffer("weight", torch.empty(0))
        self.register_buffer("bias", torch.empty(0))
        self.agreement: float | None = None  # fraction of training rows whose argmax matches the target's

    @property
    def fitted(self) -> bool:
        return self.weight.numel() > 0

    def fit(self, features: torch.Tensor, target_log: torch.Tensor, *, max_iter: int = 200,
            l2: float = 1e-4) -> ComponentHead:
        """Fit on ``features`` (n, F) against the log posteriors ``target_log`` (n, K)."""
        n, f = features.shape
        k = target_log.shape[1]
        x, target = features.detach().float(), target_log.detach().float().exp()
        w = torch.zeros(k, f, device=x.device, dtype=x.dtype, requires_grad=True)
        b = torch.log(target.mean(0).clamp_min(1e-12)).requires_grad_(True)  # start at the mixture's weights
        opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, history_size=20,
                                line_search_fn="strong_wolfe", tolerance_grad=1e-7, tolerance_change=1e-10)

        def closure():
            opt.zero_grad()
            loss = -(target * torch.log_softmax(x @ w.T + b, 1)).sum(1).mean() + l2 * w.square().sum()
            loss.backward()
            return loss

        with torch.enable_grad():  # the prior fits under no_grad
            opt.step(closure)
        self.weight, self.bias = w.detach().to(features.dtype), b.detach().to(features.dtype)
        with torch.no_grad():
            self.agreement = float((self.log_probs(x).argmax(1) == target.argmax(1)).float().mean())
        if not math.isfinite(float(self.weight.abs().sum())):
            raise ValueError("the component head's fit diverged (non-finite weights); "
                             "check the embedding's features for NaN or infinite values.")
        return self

    def log_probs(self, features: torch.Tensor) -> torch.Tensor:
        """log p(k | features) (n, K), differentiable w.r.t. ``features``."""
        if not self.fitted:
            raise ValueError("the component head is not fitted yet; fit the prior on real data first.")
        return torch.log_softmax(features.to(self.weight.dtype) @ self.weight.T + self.bias, 1)

    def extra_repr(self) -> str:
        return f"shape={tuple(self.weight.shape)}" if self.fitted else "not fitted"
