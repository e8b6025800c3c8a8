"""The losses (method.md, "Losses"): each term is one function, and each update minimises the
weighted sum of its named terms.

A term has a kind (``cycle``) and a domain or direction; it is logged as
``loss/<kind>_<domain or direction>`` and weighs ``LossesConfig.<kind>_weight`` (the adversarial
terms, the method's, weigh 1). A new term is one function below, called in ``generator_losses``
or ``discriminator_losses``, and its weight field in ``LossesConfig``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from aggan.config import LossesConfig
from aggan.domains import DIRECTIONS, source_domain, target_domain
from aggan.schedule import Phase


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


# The adversarial terms are the method's objective; the rest weigh what their config says.
UNWEIGHTED_KINDS = ("adversarial", "discriminator")


def term_weight(kind: str, config: LossesConfig) -> float:
    """The weight of a kind of term: 1 for the adversarial terms, else ``config.<kind>_weight``
    (an unknown kind fails rather than take another's weight)."""
    if kind in UNWEIGHTED_KINDS:
        return 1.0
    return getattr(config, f"{kind}_weight")


@dataclass(frozen=True)
class Losses:
    """Named terms (``loss/cycle_a``, ...) and the weighted total that one update minimises."""

    terms: dict[str, Tensor]
    total: Tensor


Terms = dict[tuple[str, str], Tensor]  # (kind, domain or direction) -> the term


def _weighted(terms: Terms, config: LossesConfig) -> Losses:
    """The named terms and the sum over kinds of the kind's weight x (sum of its terms)."""
    kinds: dict[str, list[Tensor]] = {}
    for (kind, _), value in terms.items():
        kinds.setdefault(kind, []).append(value)
    total = sum(term_weight(kind, config) * sum(values) for kind, values in kinds.items())
    named = {f"loss/{kind}_{where}": value for (kind, where), value in terms.items()}
    return Losses(named, total)  # type: ignore[arg-type]


def generator_losses(real: dict[str, Tensor], forward: CycleOutputs,
                     judge: Callable[[Tensor, str], Tensor], phase: Phase,
                     config: LossesConfig) -> Losses:
    """What the generators and attention networks minimise.

    Args:
        real: ``{"a": s, "b": t}``; forward: the cycle forward's outputs, per direction.
        judge: ``judge(images, domain)``: the (frozen) discriminator of ``domain``'s scores.
        phase: a fake is judged only where its own mask is >= ``phase.tau``; the mask priors
            are terms while the mask is used (a mask fixed at 1 makes them constants), the
            attention cycle while the attention trains (on a frozen attention it would train
            the generators alone).
        config: the terms' weights (a term of weight 0 is not computed) and settings.
    """
    fake, mask, cycled = forward.fake, forward.mask, forward.cycled
    priors = phase.use_attention
    terms: Terms = {}
    for d in DIRECTIONS:
        source = source_domain(d)
        terms["adversarial", d] = generator_adversarial_loss(
            judge(fake[d] * hard_mask(mask[d], phase.tau), target_domain(d)))
        terms["cycle", source] = cycle_loss(cycled[d], real[source])
        if priors and config.mask_area_weight:
            terms["mask_area", source] = mask_area_loss(mask[d], config.mask_area_min)
        if priors and config.mask_border_weight:
            terms["mask_border", source] = mask_border_loss(mask[d])
        if phase.train_attention and config.attention_cycle_weight:
            terms["attention_cycle", source] = attention_cycle_loss(forward.cycle_mask[d], mask[d])
    return _weighted(terms, config)


def discriminator_losses(scores: dict[str, tuple[Tensor, ...]], config: LossesConfig) -> Losses:
    """What the discriminators minimise; ``scores[domain]`` = (scores of real, of fake) and,
    with source negatives, of the other domain's real images."""
    terms: Terms = {}
    for domain, (real, fake, *source) in scores.items():
        terms["discriminator", domain] = discriminator_loss(real, fake)
        if source:
            terms["source_negative", domain] = source_negative_loss(source[0])
    return _weighted(terms, config)
