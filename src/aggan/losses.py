"""Loss terms as pure tensor functions (method.md, "Losses")."""

from __future__ import annotations

import torch
from torch import Tensor


def hard_mask(mask: Tensor, tau: float) -> Tensor:
    """1[mask >= tau], without gradient: tau = 0 shows the discriminator the whole image."""
    return (mask.detach() >= tau).to(mask.dtype)


def generator_adversarial_loss(scores_fake: Tensor) -> Tensor:
    """Least squares: mean((D(fake) - 1)^2)."""
    return torch.mean((scores_fake - 1) ** 2)


def discriminator_loss(scores_real: Tensor, scores_fake: Tensor) -> Tensor:
    """Least squares: 0.5 * (mean((D(real) - 1)^2) + mean(D(fake)^2))."""
    return 0.5 * (torch.mean((scores_real - 1) ** 2) + torch.mean(scores_fake ** 2))


def cycle_loss(cycled: Tensor, original: Tensor) -> Tensor:
    """mean |s - s''| for one direction; the method weights the sum of both by 10."""
    return torch.mean(torch.abs(cycled - original))
