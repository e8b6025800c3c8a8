"""Loss terms and the hard mask (method.md, "Losses")."""

from __future__ import annotations

import torch

from aggan.losses import cycle_loss, discriminator_loss, generator_adversarial_loss, hard_mask


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
