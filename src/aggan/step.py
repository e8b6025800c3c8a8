"""One training step (method.md, "Forward pass", "Losses", "The switch").

A step does one forward pass of the translator (both directions and both cycles), then a joint
update of the generators and attention networks with the discriminators frozen, then one update
of both discriminators on fakes drawn from the history pools. (The released TensorFlow code runs
four sequential sub-steps with their own forward passes; this is the same objective at half the
cost, as PyTorch CycleGAN does.)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from aggan import distributed
from aggan.config import LossesConfig, RunConfig
from aggan.device import autocast
from aggan.domains import DIRECTIONS, reverse, source_domain, target_domain
from aggan.losses import (
    CycleOutputs,
    Losses,
    discriminator_losses,
    generator_losses,
    hard_mask,
)
from aggan.networks import Discriminators, Translator, composite
from aggan.pool import HistoryPool
from aggan.schedule import Phase
from aggan.train_state import TrainState

# --- The step's modules ----------------------------------------------------------------------


class CycleForward(nn.Module):
    """The translator's whole forward pass of a step, as one module call (what DDP wraps).

    s' = A_S(s) * F(s) + (1 - A_S(s)) * s in both directions, then back for the cycle:
    s'' = A_T(s') * F_T->S(s') + (1 - A_T(s')) * s', the translated image under its own
    domain's attention.

    ``cycle_gradient`` (``losses.attention_cycle_gradient``; 1 as released) scales the gradient
    that the cycle loss sends back through the masks of the cycle, so into the attention networks
    (and through A_T(s') into the first generator); 0 cuts it. The values computed do not
    change.
    """

    def __init__(self, translator: Translator, cycle_gradient: float = 1.0) -> None:
        super().__init__()
        self.translator = translator
        self.cycle_gradient = cycle_gradient

    def _cycle_mask(self, mask: Tensor) -> Tensor:
        if self.cycle_gradient == 1:
            return mask
        frozen = mask.detach()
        if self.cycle_gradient == 0:
            return frozen
        return frozen + self.cycle_gradient * (mask - frozen)

    def forward(self, real_a: Tensor, real_b: Tensor, use_attention: bool) -> CycleOutputs:
        real = {"a": real_a, "b": real_b}
        out = CycleOutputs({}, {}, {}, {})
        for direction in DIRECTIONS:
            source = real[source_domain(direction)]
            translated, mask = self.translator.parts(source, direction, use_attention)
            out.fake[direction], out.mask[direction] = composite(mask, translated, source), mask
            there = composite(self._cycle_mask(mask), translated, source)
            back, back_mask = self.translator.parts(there, reverse(direction), use_attention)
            out.cycled[direction] = composite(self._cycle_mask(back_mask), back, there)
            out.cycle_mask[direction] = back_mask
        return out


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
    ones with ``runtime.compile``. Rebuilt when the set of trained parameters changes (warm-up end,
    switch), so that DDP never sees a parameter it expects a gradient for and does not get one."""

    cycle: nn.Module  # CycleForward
    scores: nn.Module  # DiscriminatorScores, for the discriminators' update
    judge: nn.Module  # the discriminators as the generators' update calls them (frozen)
    discriminator_params: list[nn.Parameter]
    phase: tuple[bool, bool, bool]  # (mask used, attention trained, discriminator norms)
    autocast: torch.autocast


def modules_phase(phase: Phase) -> tuple[bool, bool, bool]:
    """What ``step_modules`` depends on in a phase: when it changes, the modules are rebuilt."""
    return phase.use_attention, phase.train_attention, phase.normalize_discriminator


def step_modules(state: TrainState, phase: Phase, context: distributed.Context,
                 device: torch.device, config: RunConfig) -> StepModules:
    """Sets which parameters train in ``phase`` and wraps the modules that compute the step."""
    if state.translator.attention is not None:
        state.translator.attention.requires_grad_(phase.train_attention)
    for discriminator in state.discriminators.by_domain.values():
        # Without instance norm (after the switch) its affine parameters get no gradient.
        discriminator.norms.requires_grad_(phase.normalize_discriminator)
    cycle: nn.Module = CycleForward(state.translator, config.losses.attention_cycle_gradient)
    scores: nn.Module = DiscriminatorScores(state.discriminators)
    judge: nn.Module = state.discriminators
    if context.enabled:
        device_ids = [device.index] if device.type == "cuda" else None
        cycle = DistributedDataParallel(cycle, device_ids=device_ids)
        scores = DistributedDataParallel(scores, device_ids=device_ids)
    if config.runtime.compile:
        cycle, scores, judge = (torch.compile(module) for module in (cycle, scores, judge))
    return StepModules(cycle, scores, judge,
                       [p for p in state.discriminators.parameters() if p.requires_grad],
                       modules_phase(phase), autocast(config.runtime.precision, device))


# --- The step --------------------------------------------------------------------------------


def discriminator_inputs(real: dict[str, Tensor], fake: dict[str, Tensor],
                         mask: dict[str, Tensor], pools: dict[str, HistoryPool],
                         tau: float, source_negatives: bool) -> dict[str, Tensor]:
    """Per target domain, one batch: the real images under their own domain's attention
    (A_T(t)), then fakes from the pool under the masks they were made with, then (with
    ``source_negatives``) the real source images under the masks they are translated with."""
    inputs = {}
    for direction in DIRECTIONS:
        target = target_domain(direction)
        pooled_fake, pooled_mask = pools[direction].query(fake[direction], mask[direction])
        real_mask = mask[reverse(direction)]  # A_T(t): computed on t when translating it
        batch = [real[target] * hard_mask(real_mask, tau),
                 pooled_fake * hard_mask(pooled_mask, tau)]
        if source_negatives:
            batch.append(real[source_domain(direction)] * hard_mask(mask[direction], tau))
        inputs[target] = torch.cat(batch)
    return inputs


def _update(losses: Losses, optimizer: torch.optim.Optimizer,
            scaler: torch.amp.GradScaler) -> None:
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(losses.total).backward()
    scaler.step(optimizer)
    scaler.update()


def training_step(state: TrainState, modules: StepModules, real: dict[str, Tensor],
                  phase: Phase, losses: LossesConfig) -> dict[str, Tensor]:
    """One optimisation step on a batch ``real = {"a": (N,3,H,W), "b": (N,3,H,W)}`` in [-1, 1].

    Returns the step's loss terms and mean masks as detached tensors (reading them syncs the
    device, so the caller reads them only when it logs).
    """
    with modules.autocast:
        forward = modules.cycle(real["a"], real["b"], phase.use_attention)
    fake, mask = forward.fake, forward.mask

    # Generators and attention: fool the discriminators on the attended region, close the cycle.
    # The discriminators are frozen here and called unwrapped: no gradient, nothing to sync.
    for parameter in modules.discriminator_params:
        parameter.requires_grad_(False)
    with modules.autocast:
        generator = generator_losses(
            real, forward,
            lambda images, domain: modules.judge(images, domain, phase.normalize_discriminator),
            phase, losses)
    _update(generator, state.optimizer_generators, state.scaler_generators)
    state.update_average()

    # Discriminators: real, fake (and source) images go through in one batch (instance norm is
    # per image, so this changes nothing but the speed).
    for parameter in modules.discriminator_params:
        parameter.requires_grad_(True)
    source_negatives = losses.source_negative_weight > 0
    inputs = discriminator_inputs(real, fake, mask, state.pools, phase.tau, source_negatives)
    with modules.autocast:
        scores = modules.scores(inputs, phase.normalize_discriminator)
        discriminator = discriminator_losses(
            {domain: domain_scores.chunk(3 if source_negatives else 2)
             for domain, domain_scores in scores.items()},
            losses)
    _update(discriminator, state.optimizer_discriminators, state.scaler_discriminators)

    terms = generator.terms | discriminator.terms
    for direction in DIRECTIONS:
        terms[f"mask/mean_{source_domain(direction)}"] = mask[direction].mean()
    return {key: value.detach() for key, value in terms.items()}
