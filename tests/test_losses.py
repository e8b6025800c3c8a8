"""Loss terms and the hard mask (method.md, "Losses")."""

from __future__ import annotations

import torch

from aggan.config import TrainConfig
from aggan.losses import (
    cycle_loss,
    discriminator_loss,
    discriminator_losses,
    generator_adversarial_loss,
    hard_mask,
    loss_weights,
)


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


def test_loss_weights_are_the_methods() -> None:
    """Adversarial terms at 1, the cycle at ``train.cycle_weight`` (10), each discriminator's
    least-squares loss (already halved) at 1."""
    assert loss_weights(TrainConfig()) == {"adversarial": 1.0, "cycle": 10.0,
                                           "discriminator": 1.0}
    assert loss_weights(TrainConfig(cycle_weight=3.0))["cycle"] == 3.0


def test_weighted_total_groups_terms_by_kind() -> None:
    """A term's kind is its name without the last ``_part``, so a kind may hold underscores."""
    scores = {"a": (torch.ones(1, 1, 2, 2), torch.zeros(1, 1, 2, 2)),
              "mask_prior_b": (torch.zeros(1, 1, 2, 2), torch.ones(1, 1, 2, 2))}
    losses = discriminator_losses(scores, {"discriminator": 3.0, "discriminator_mask_prior": 5.0})
    assert set(losses.terms) == {"loss/discriminator_a", "loss/discriminator_mask_prior_b"}
    assert losses.terms["loss/discriminator_mask_prior_b"] == 1.0
    assert losses.total == 3.0 * 0.0 + 5.0 * 1.0
