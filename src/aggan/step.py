"""One training step (method.md, "Forward pass", "Losses", "The switch").

A step does one forward pass of the translator (both directions and both cycles), then a joint
update of the generators and attention networks with the discriminators frozen, then one update
of both discriminators on fakes drawn from the history pools. (The released TensorFlow code runs
four sequential sub-steps with their own forward passes; this is the same objective at half the
cost, as PyTorch CycleGAN does.)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from aggan import distributed
from aggan.checkpoint import TrainState
from aggan.config import TrainConfig
from aggan.device import autocast
from aggan.losses import Losses, discriminator_losses, generator_losses, hard_mask
from aggan.networks import (
    DIRECTIONS,
    Discriminators,
    Translator,
    reverse,
    source_domain,
    target_domain,
)
from aggan.pool import HistoryPool
from aggan.schedule import Phase

# --- The step's modules ----------------------------------------------------------------------


class CycleForward(nn.Module):
    """The translator's whole forward pass of a step, as one module call (what DDP wraps).

    s' = A_S(s) * F(s) + (1 - A_S(s)) * s in both directions, then back for the cycle:
    s'' = A_T(s') * F_T->S(s') + (1 - A_T(s')) * s', the translated image under its own
    domain's attention.
    """

    def __init__(self, translator: Translator) -> None:
        super().__init__()
        self.translator = translator

    def forward(self, real_a: Tensor, real_b: Tensor, use_attention: bool
                ) -> tuple[dict[str, Tensor], dict[str, Tensor], dict[str, Tensor]]:
        real = {"a": real_a, "b": real_b}
        fake, mask = {}, {}
        for direction in DIRECTIONS:
            fake[direction], mask[direction] = self.translator(
                real[source_domain(direction)], direction, use_attention)
        cycled = {direction: self.translator(fake[direction], reverse(direction),
                                             use_attention)[0]
                  for direction in DIRECTIONS}
        return fake, mask, cycled


class DiscriminatorScores(nn.Module):
    """Both discriminators on their (real and pooled fake) inputs, as one module call."""

    def __init__(self, discriminators: Discriminators) -> None:
        super().__init__()
        self.discriminators = discriminators

    def forward(self, inputs: dict[str, Tensor], normalize: bool) -> dict[str, Tensor]:
        return {domain: self.discriminators(images, domain, normalize)
                for domain, images in inputs.items()}


@dataclass
class StepModules:
    """What a step calls: plain modules in one process, DDP-wrapped ones under torchrun, compiled
    ones with ``train.compile``. Rebuilt when the set of trained parameters changes (warm-up end,
    switch), so that DDP never sees a parameter it expects a gradient for and does not get one."""

    cycle: nn.Module  # CycleForward
    scores: nn.Module  # DiscriminatorScores, for the discriminators' update
    judge: nn.Module  # the discriminators as the generators' update calls them (frozen)
    discriminator_params: list[nn.Parameter]
    trained: tuple[bool, bool]  # (attention, discriminator norms)
    autocast: torch.autocast
    loss_weights: Mapping[str, float]


def step_modules(state: TrainState, phase: Phase, context: distributed.Context,
                 device: torch.device, config: TrainConfig,
                 loss_weights: Mapping[str, float]) -> StepModules:
    """Sets which parameters train in ``phase`` and wraps the modules that compute the step."""
    if state.translator.attention is not None:
        state.translator.attention.requires_grad_(phase.train_attention)
    for discriminator in state.discriminators.by_domain.values():
        # Without instance norm (after the switch) its affine parameters get no gradient.
        discriminator.norms.requires_grad_(phase.normalize_discriminator)
    cycle: nn.Module = CycleForward(state.translator)
    scores: nn.Module = DiscriminatorScores(state.discriminators)
    judge: nn.Module = state.discriminators
    if context.enabled:
        device_ids = [device.index] if device.type == "cuda" else None
        cycle = DistributedDataParallel(cycle, device_ids=device_ids)
        scores = DistributedDataParallel(scores, device_ids=device_ids)
    if config.compile:
        cycle, scores, judge = (torch.compile(module) for module in (cycle, scores, judge))
    return StepModules(cycle, scores, judge,
                       [p for p in state.discriminators.parameters() if p.requires_grad],
                       (phase.train_attention, phase.normalize_discriminator),
                       autocast(config.precision, device), loss_weights)


# --- The step --------------------------------------------------------------------------------


def discriminator_inputs(real: dict[str, Tensor], fake: dict[str, Tensor],
                         mask: dict[str, Tensor], pools: dict[str, HistoryPool],
                         tau: float) -> dict[str, Tensor]:
    """Per target domain, one batch: the real images under their own domain's attention
    (A_T(t)), then fakes from the pool under the masks they were made with."""
    inputs = {}
    for direction in DIRECTIONS:
        target = target_domain(direction)
        pooled_fake, pooled_mask = pools[direction].query(fake[direction], mask[direction])
        real_mask = mask[reverse(direction)]  # A_T(t): computed on t when translating it
        inputs[target] = torch.cat([real[target] * hard_mask(real_mask, tau),
                                    pooled_fake * hard_mask(pooled_mask, tau)])
    return inputs


def _update(losses: Losses, optimizer: torch.optim.Optimizer,
            scaler: torch.amp.GradScaler) -> None:
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(losses.total).backward()
    scaler.step(optimizer)
    scaler.update()


def training_step(state: TrainState, modules: StepModules, real: dict[str, Tensor],
                  phase: Phase) -> dict[str, Tensor]:
    """One optimisation step on a batch ``real = {"a": (N,3,H,W), "b": (N,3,H,W)}`` in [-1, 1].

    Returns the step's loss terms and mean masks as detached tensors (reading them syncs the
    device, so the caller reads them only when it logs).
    """
    with modules.autocast:
        fake, mask, cycled = modules.cycle(real["a"], real["b"], phase.use_attention)

    # Generators and attention: fool the discriminators on the attended region, close the cycle.
    # The discriminators are frozen here and called unwrapped: no gradient, nothing to sync.
    for parameter in modules.discriminator_params:
        parameter.requires_grad_(False)
    with modules.autocast:
        generator = generator_losses(
            real, fake, mask, cycled,
            lambda images, domain: modules.judge(images, domain, phase.normalize_discriminator),
            phase.tau, modules.loss_weights)
    _update(generator, state.optimizer_generators, state.scaler_generators)

    # Discriminators: real and fake go through in one batch (instance norm is per image, so
    # this changes nothing but the speed).
    for parameter in modules.discriminator_params:
        parameter.requires_grad_(True)
    inputs = discriminator_inputs(real, fake, mask, state.pools, phase.tau)
    with modules.autocast:
        scores = modules.scores(inputs, phase.normalize_discriminator)
        discriminator = discriminator_losses(
            {domain: domain_scores.chunk(2) for domain, domain_scores in scores.items()},
            modules.loss_weights)
    _update(discriminator, state.optimizer_discriminators, state.scaler_discriminators)

    terms = generator.terms | discriminator.terms
    for direction in DIRECTIONS:
        terms[f"mask/mean_{source_domain(direction)}"] = mask[direction].mean()
    return {key: value.detach() for key, value in terms.items()}
