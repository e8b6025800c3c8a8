"""Loss terms and the hard mask (method.md, "Losses")."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from aggan.config import LossesConfig
from aggan.losses import (
    UNWEIGHTED_KINDS,
    CycleOutputs,
    cycle_loss,
    discriminator_loss,
    discriminator_losses,
    generator_adversarial_loss,
    generator_losses,
    hard_mask,
    mask_area_loss,
    mask_border_loss,
    source_negative_loss,
    term_weight,
)
from aggan.schedule import Phase

# The attention in use and training, tau 0: every term of the generators can be there.
TRAINING = Phase(lr_factor=1.0, tau=0.0, use_attention=True, train_attention=True,
                 normalize_discriminator=True)
# Only the term under test weighs anything the test's inputs make non-zero (the cycle and the
# adversarial terms are 0 on them).
ONLY_TERMS = LossesConfig(source_negative_weight=0, mask_border_weight=0, mask_area_weight=0,
                          attention_cycle_weight=0)


def test_hard_mask_threshold_and_no_gradient() -> None:
    mask = torch.tensor([0.0, 0.05, 0.1, 0.9], requires_grad=True)
    assert hard_mask(mask, 0.0).tolist() == [1, 1, 1, 1]  # tau 0: the whole image
    hard = hard_mask(mask, 0.1)
    assert hard.tolist() == [0, 0, 1, 1]
    assert not hard.requires_grad


def test_least_squares_losses() -> None:
    ones, zeros = torch.ones(2, 1, 3, 3), torch.zeros(2, 1, 3, 3)
    assert generator_adversarial_loss(ones) == 0
    assert generator_adversarial_loss(zeros) == 1
    assert discriminator_loss(ones, zeros) == 0
    assert discriminator_loss(zeros, ones) == 1
    assert torch.isclose(discriminator_loss(torch.full((1,), 0.5), torch.full((1,), 0.5)),
                         torch.tensor(0.25))


def test_cycle_loss_is_mean_absolute_error() -> None:
    assert cycle_loss(torch.ones(1, 3, 2, 2), torch.zeros(1, 3, 2, 2)) == 1
    assert cycle_loss(torch.full((1, 3, 2, 2), -0.5), torch.zeros(1, 3, 2, 2)) == 0.5


def test_each_kind_weighs_its_config_field() -> None:
    """Adversarial terms at 1, every other kind at ``LossesConfig.<kind>_weight``; an unknown
    kind fails instead of taking another's weight."""
    config = LossesConfig(cycle_weight=3.0, source_negative_weight=0.5, mask_area_weight=2.0,
                          mask_border_weight=0.25, attention_cycle_weight=0.75)
    weights = {kind: term_weight(kind, config) for kind in (
        "adversarial", "cycle", "mask_area", "mask_border", "discriminator", "source_negative",
        "attention_cycle")}
    assert weights == {"adversarial": 1.0, "cycle": 3.0, "mask_area": 2.0, "mask_border": 0.25,
                       "discriminator": 1.0, "source_negative": 0.5, "attention_cycle": 0.75}
    with pytest.raises(AttributeError):
        term_weight("mask_prior", config)


def test_every_weight_field_weighs_a_term_the_losses_compute() -> None:
    """A loss term is its function and its ``<kind>_weight`` field: with every weight on, the
    kinds the two updates compute are exactly the weighted fields and the unweighted kinds."""
    images = {d: torch.zeros(1, 3, 4, 4) for d in "ab"}
    masks = {d: torch.full((1, 1, 4, 4), 0.5) for d in ("a2b", "b2a")}
    fakes = {"a2b": images["b"], "b2a": images["a"]}
    generator = generator_losses(images, CycleOutputs(fakes, masks, fakes, masks),
                                 lambda x, domain: torch.ones(1), TRAINING, LossesConfig(
                                     attention_cycle_weight=1.0))
    scores = torch.zeros(1, 1, 2, 2)
    discriminator = discriminator_losses({d: (scores, scores, scores) for d in "ab"},
                                         LossesConfig())
    kinds = {name.removeprefix("loss/").rsplit("_", 1)[0]
             for name in generator.terms | discriminator.terms}
    fields = {f.name.removesuffix("_weight") for f in dataclasses.fields(LossesConfig)
              if f.name.endswith("_weight")}
    assert kinds == fields | set(UNWEIGHTED_KINDS)


def test_weighted_total_sums_each_kind_at_its_weight() -> None:
    """Both domains' terms of a kind are summed at the kind's weight; the names say the kind
    and the domain."""
    ones, zeros = torch.ones(1, 1, 2, 2), torch.zeros(1, 1, 2, 2)
    scores = {"a": (ones, zeros, ones), "b": (zeros, ones, zeros)}
    losses = discriminator_losses(scores, LossesConfig(source_negative_weight=0.25))
    assert losses.terms == {"loss/discriminator_a": 0.0, "loss/source_negative_a": 0.5,
                            "loss/discriminator_b": 1.0, "loss/source_negative_b": 0.0}
    assert losses.total == 1.0 * (0.0 + 1.0) + 0.25 * (0.5 + 0.0)


def test_source_negative_loss_is_the_fake_half_of_the_discriminator_loss() -> None:
    scores = torch.tensor([0.0, 1.0, -2.0])
    assert source_negative_loss(scores) == 0.5 * (0 + 1 + 4) / 3
    assert torch.isclose(discriminator_loss(torch.ones(3), scores),
                         source_negative_loss(scores))


def test_mask_area_loss_is_a_floor_per_image() -> None:
    """Only images whose mean mask is below the floor pay, each by how far it is below."""
    masks = torch.stack([torch.full((1, 2, 2), 0.05), torch.full((1, 2, 2), 0.5)])
    assert torch.isclose(mask_area_loss(masks, 0.2), torch.tensor((0.15 + 0.0) / 2))
    assert mask_area_loss(masks, 0.0) == 0


def test_discriminator_losses_with_source_negatives() -> None:
    real, fake, source = torch.ones(1, 1, 2, 2), torch.zeros(1, 1, 2, 2), torch.ones(1, 1, 2, 2)
    losses = discriminator_losses({"b": (real, fake, source)},
                                  LossesConfig(source_negative_weight=0.25))
    assert losses.terms["loss/source_negative_b"] == 0.5
    assert losses.total == 0.25 * 0.5


def test_area_term_only_with_its_weight() -> None:
    images = {d: torch.zeros(1, 3, 2, 2) for d in "ab"}
    masks = {"a2b": torch.full((1, 1, 2, 2), 0.1), "b2a": torch.full((1, 1, 2, 2), 0.3)}
    fakes = {"a2b": images["b"], "b2a": images["a"]}

    def judge(x: torch.Tensor, domain: str) -> torch.Tensor:
        return torch.ones(1)

    config = dataclasses.replace(ONLY_TERMS, mask_area_min=0.2)
    forward = CycleOutputs(fakes, masks, fakes, masks)
    assert not any("mask_area" in k for k in generator_losses(
        images, forward, judge, TRAINING, config).terms)
    losses = generator_losses(images, forward, judge, TRAINING,
                              dataclasses.replace(config, mask_area_weight=4.0))
    assert torch.isclose(losses.terms["loss/mask_area_a"], torch.tensor(0.1))
    assert losses.terms["loss/mask_area_b"] == 0
    assert torch.isclose(losses.total, torch.tensor(4.0 * 0.1))


def test_mask_border_loss_is_the_mean_mask_on_the_outer_tenth() -> None:
    """20 x 20: a band of 2 pixels on each side (144 pixels); the interior costs nothing."""
    interior = torch.zeros(1, 1, 20, 20)
    interior[..., 2:18, 2:18] = 1
    assert mask_border_loss(interior) == 0
    top_row = torch.zeros(1, 1, 20, 20)
    top_row[..., 0, :] = 1
    assert torch.isclose(mask_border_loss(top_row), torch.tensor(20 / 144))
    assert mask_border_loss(torch.ones(2, 1, 20, 20)) == 1
    small = torch.zeros(1, 1, 10, 10)  # a band of 1 pixel: 36 border pixels
    small[..., 0, :] = 1
    assert torch.isclose(mask_border_loss(small), torch.tensor(10 / 36))


def test_border_term_only_with_its_weight() -> None:
    images = {d: torch.zeros(1, 3, 10, 10) for d in "ab"}
    masks = {d: torch.zeros(1, 1, 10, 10) for d in ("a2b", "b2a")}
    masks["a2b"][..., 0, :] = 1
    fakes = {"a2b": images["b"], "b2a": images["a"]}
    forward = CycleOutputs(fakes, masks, fakes, masks)
    assert not any("mask_border" in k for k in generator_losses(
        images, forward, lambda x, domain: torch.ones(1), TRAINING, ONLY_TERMS).terms)
    losses = generator_losses(images, forward, lambda x, domain: torch.ones(1), TRAINING,
                              dataclasses.replace(ONLY_TERMS, mask_border_weight=3.0))
    assert torch.isclose(losses.terms["loss/mask_border_a"], torch.tensor(10 / 36))
    assert losses.terms["loss/mask_border_b"] == 0
    assert torch.isclose(losses.total, torch.tensor(3.0 * 10 / 36))



def test_attention_cycle_term_only_with_its_weight_and_from_its_own_direction() -> None:
    """loss/attention_cycle_a = mean |A_B(s') - A_A(s)| from a2b's masks, _b from b2a's."""
    images = {d: torch.zeros(1, 3, 4, 4) for d in "ab"}
    masks = {"a2b": torch.full((1, 1, 4, 4), 0.2), "b2a": torch.full((1, 1, 4, 4), 0.6)}
    cycle_masks = {"a2b": torch.full((1, 1, 4, 4), 0.5), "b2a": torch.full((1, 1, 4, 4), 0.7)}
    fakes = {"a2b": images["b"], "b2a": images["a"]}
    forward = CycleOutputs(fakes, masks, fakes, cycle_masks)
    judge = lambda x, domain: torch.ones(1)  # noqa: E731
    assert not any("attention_cycle" in k for k in generator_losses(
        images, forward, judge, TRAINING, ONLY_TERMS).terms)
    losses = generator_losses(images, forward, judge, TRAINING,
                              dataclasses.replace(ONLY_TERMS, attention_cycle_weight=3.0))
    assert torch.isclose(losses.terms["loss/attention_cycle_a"], torch.tensor(0.3))
    assert torch.isclose(losses.terms["loss/attention_cycle_b"], torch.tensor(0.1))
    assert torch.isclose(losses.total, torch.tensor(3.0 * 0.4))
