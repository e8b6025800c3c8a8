"""The losses (method.md, "Losses"): each term is one function, and each update minimises the
weighted sum of its named terms.

A term's name is ``loss/<kind>_<direction or domain>``; its weight is the weight of its kind
(``loss_weights``). A new term is one function below, one line in ``generator_losses`` or
``discriminator_losses``, and one weight.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from aggan.config import TrainConfig
from aggan.domains import DIRECTIONS, source_domain, target_domain


class CycleOutputs(NamedTuple):
    """What the losses read of a step's cycle forward (``step.CycleForward``), per direction:
    s', A_S(s), s'' and A_T(s') (the other attention on the translation)."""

    fake: dict[str, Tensor]
    mask: dict[str, Tensor]
    cycled: dict[str, Tensor]
    cycle_mask: dict[str, Tensor]


def hard_mask(mask: Tensor, tau: float) -> Tensor:
    """1[mask >= tau], without gradient: tau = 0 shows the discriminator the whole image."""
    return (mask.detach() >= tau).to(mask.dtype)


def generator_adversarial_loss(scores_fake: Tensor) -> Tensor:
    """Least squares: mean((D(fake) - 1)^2)."""
    return torch.mean((scores_fake - 1) ** 2)


def discriminator_loss(scores_real: Tensor, scores_fake: Tensor) -> Tensor:
    """Least squares: 0.5 * (mean((D(real) - 1)^2) + mean(D(fake)^2))."""
    return 0.5 * (torch.mean((scores_real - 1) ** 2) + torch.mean(scores_fake ** 2))


def source_negative_loss(scores_source: Tensor) -> Tensor:
    """0.5 * mean(D_T(s)^2): the target domain's discriminator rates a real source image as a
    fake, as it rates a translation (the fake half of ``discriminator_loss``)."""
    return 0.5 * torch.mean(scores_source ** 2)


def mask_area_loss(mask: Tensor, minimum: float) -> Tensor:
    """mean over images of max(0, minimum - the image's mean mask): a floor on the area."""
    return torch.mean(torch.relu(minimum - mask.mean(dim=(1, 2, 3))))


def mask_border_loss(mask: Tensor, band: float = 0.1) -> Tensor:
    """The mean mask on the image's border (the outer ``band`` of each side): backgrounds reach
    the border far more often than objects do, a prior that tells the object from the rest."""
    height, width = mask.shape[-2:]
    rows, columns = max(1, round(band * height)), max(1, round(band * width))
    inner = torch.zeros_like(mask)
    inner[..., rows:height - rows, columns:width - columns] = 1
    border = 1 - inner
    return (mask * border).sum() / (border.sum())


def attention_cycle_loss(cycle_mask: Tensor, mask: Tensor) -> Tensor:
    """mean |A_T(s') - A_S(s)|: the other domain's attention on the translation should find the
    region that was translated (Chen et al. 2018, Attention-GAN for object transfiguration)."""
    return torch.mean(torch.abs(cycle_mask - mask))


def cycle_loss(cycled: Tensor, original: Tensor) -> Tensor:
    """mean |s - s''| for one direction."""
    return torch.mean(torch.abs(cycled - original))


def loss_weights(config: TrainConfig) -> dict[str, float]:
    """The weight of each kind of term; the generators' and the discriminators' together."""
    return {"adversarial": 1.0, "cycle": config.cycle_weight, "mask_area": config.mask_area_weight,
            "mask_border": config.mask_border_weight, "discriminator": 1.0,
            "source_negative": config.source_negative_weight,
            "attention_cycle": config.attention_cycle_weight}


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


def generator_losses(real: dict[str, Tensor], forward: CycleOutputs,
                     judge: Callable[[Tensor, str], Tensor], tau: float,
                     weights: Mapping[str, float], mask_area_min: float = 0.0) -> Losses:
    """What the generators and attention networks minimise.

    Args:
        real: ``{"a": s, "b": t}``; forward: the cycle forward's outputs, per direction.
        judge: ``judge(images, domain)``: the (frozen) discriminator of ``domain``'s scores.
        tau: the hard-mask threshold: a fake is judged only where its own mask is >= tau.
        mask_area_min: the area prior's floor (its term is there when its weight is not 0).
    """
    fake, mask, cycled = forward.fake, forward.mask, forward.cycled
    terms = {}
    for d in DIRECTIONS:
        terms[f"loss/adversarial_{d}"] = generator_adversarial_loss(
            judge(fake[d] * hard_mask(mask[d], tau), target_domain(d)))
        terms[f"loss/cycle_{source_domain(d)}"] = cycle_loss(cycled[d], real[source_domain(d)])
        if weights.get("mask_area"):
            terms[f"loss/mask_area_{source_domain(d)}"] = mask_area_loss(mask[d], mask_area_min)
        if weights.get("mask_border"):
            terms[f"loss/mask_border_{source_domain(d)}"] = mask_border_loss(mask[d])
        if weights.get("attention_cycle"):
            terms[f"loss/attention_cycle_{source_domain(d)}"] = attention_cycle_loss(
                forward.cycle_mask[d], mask[d])
    return _weighted(terms, weights)


def discriminator_losses(scores: dict[str, tuple[Tensor, ...]],
                         weights: Mapping[str, float]) -> Losses:
    """What the discriminators minimise; ``scores[domain]`` = (scores of real, of fake) and,
    with source negatives, of the other domain's real images."""
    terms = {}
    for domain, (real, fake, *source) in scores.items():
        terms[f"loss/discriminator_{domain}"] = discriminator_loss(real, fake)
        if source:
            terms[f"loss/source_negative_{domain}"] = source_negative_loss(source[0])
    return _weighted(terms, weights)
