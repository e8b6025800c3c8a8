"""The losses (method.md, "Losses"): each term is one function, and each update minimises the
weighted sum of its named terms.

A term's name is ``loss/<kind>_<direction or domain>``; its weight is the weight of its kind
(``loss_weights``). A new term is one function below, one line in ``generator_losses`` or
``discriminator_losses``, and one weight.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from aggan.config import TrainConfig
from aggan.networks import DIRECTIONS, source_domain, target_domain


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
    """mean |s - s''| for one direction."""
    return torch.mean(torch.abs(cycled - original))


def loss_weights(config: TrainConfig) -> dict[str, float]:
    """The weight of each kind of term; the generators' and the discriminators' together."""
    return {"adversarial": 1.0, "cycle": config.cycle_weight, "discriminator": 1.0}


@dataclass(frozen=True)
class Losses:
    """Named terms (``loss/cycle_a``, ...) and the weighted total that one update minimises."""

    terms: dict[str, Tensor]
    total: Tensor


def _weighted(terms: dict[str, Tensor], weights: Mapping[str, float]) -> Losses:
    """The sum over kinds of weight x (sum of that kind's terms)."""
    kinds: dict[str, list[Tensor]] = {}
    for name, value in terms.items():
        kinds.setdefault(name.removeprefix("loss/").rsplit("_", 1)[0], []).append(value)
    total = sum(weights[kind] * sum(values) for kind, values in kinds.items())
    return Losses(terms, total)  # type: ignore[arg-type]


def generator_losses(real: dict[str, Tensor], fake: dict[str, Tensor], mask: dict[str, Tensor],
                     cycled: dict[str, Tensor], judge: Callable[[Tensor, str], Tensor],
                     tau: float, weights: Mapping[str, float]) -> Losses:
    """What the generators and attention networks minimise.

    Args:
        real: ``{"a": s, "b": t}``; fake, mask, cycled: per direction, from the cycle forward.
        judge: ``judge(images, domain)``: the (frozen) discriminator of ``domain``'s scores.
        tau: the hard-mask threshold: a fake is judged only where its own mask is >= tau.
    """
    terms = {}
    for d in DIRECTIONS:
        terms[f"loss/adversarial_{d}"] = generator_adversarial_loss(
            judge(fake[d] * hard_mask(mask[d], tau), target_domain(d)))
        terms[f"loss/cycle_{source_domain(d)}"] = cycle_loss(cycled[d], real[source_domain(d)])
    return _weighted(terms, weights)


def discriminator_losses(scores: dict[str, tuple[Tensor, Tensor]],
                         weights: Mapping[str, float]) -> Losses:
    """What the discriminators minimise; ``scores[domain]`` = (scores of real, of fake)."""
    return _weighted({f"loss/discriminator_{domain}": discriminator_loss(real, fake)
                      for domain, (real, fake) in scores.items()}, weights)
