"""The training state: the networks, their optimizers and loss scalers, the history pools and
the moving average, built fresh from a config (``build_state``). ``checkpoint`` writes and
restores exactly this.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TypedDict

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from aggan.config import RunConfig
from aggan.device import check_precision, tensor_layout
from aggan.domains import DIRECTIONS, source_domain
from aggan.networks import Discriminators, Translator, init_weights
from aggan.pool import HistoryPool


class BestPlacement(TypedDict):
    """Where a direction's masks were best placed before the switch (best-placement)."""

    step: int
    nats: float


@dataclass
class TrainState:
    """Everything that changes while training; exactly what a checkpoint holds."""

    translator: Translator
    discriminators: Discriminators
    optimizer_generators: torch.optim.Adam  # generators and attention networks
    optimizer_discriminators: torch.optim.Adam
    pools: dict[str, HistoryPool]  # keyed by direction: fakes of the target domain
    # Loss scaling for fp16, one per optimizer; pass-throughs at other precisions.
    scaler_generators: torch.amp.GradScaler
    scaler_discriminators: torch.amp.GradScaler
    # The moving average of the translator's weights (train.translator_ema), or None.
    translator_ema: AveragedModel | None = None
    step: int = 0
    best_kid_x100: float = math.inf
    # schedule.switch_attention=best-placement: each attention network's weights (keyed by its
    # domain) at the sample step where its direction's masks were best placed so far, and that
    # step and placement (keyed by direction); the switch restores the weights (and clears them).
    best_attention: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    best_placement: dict[str, BestPlacement] = field(default_factory=dict)

    @property
    def inference_translator(self) -> Translator:
        """What samples, monitors and the final metrics show: the average where there is one."""
        if self.translator_ema is None:
            return self.translator
        return self.translator_ema.module  # type: ignore[return-value]

    def offer_attention(self, placement_nats: dict[str, float]) -> None:
        """Keeps the weights of each attention network whose direction's placement (keyed by
        direction) is its best so far. The two networks are chosen apart: each makes only its own
        direction's masks, and a run may place one direction well at a step where the other
        has wandered."""
        attention = self.inference_translator.attention
        assert attention is not None
        for direction, nats in placement_nats.items():
            best = self.best_placement.get(direction)
            if best is None or nats > best["nats"]:
                self.best_placement[direction] = {"step": self.step, "nats": nats}
                domain = source_domain(direction)
                self.best_attention[domain] = {key: value.detach().clone() for key, value
                                               in attention[domain].state_dict().items()}

    def restore_best_attention(self) -> None:
        """At the switch: each best-placed attention network into the weights (and their
        average)."""
        for translator in {id(t): t for t in (self.translator, self.inference_translator)
                           }.values():
            assert translator.attention is not None
            for domain, weights in self.best_attention.items():
                translator.attention[domain].load_state_dict(weights)
        self.best_attention = {}

    def update_average(self) -> None:
        """After a generator update (the first copies the weights)."""
        if self.translator_ema is not None:
            self.translator_ema.update_parameters(self.translator)


def build_state(config: RunConfig, device: torch.device, rank: int = 0) -> TrainState:
    """Fresh networks (seeded init, the same on every rank), optimizers and this rank's pools."""
    init_generator = torch.Generator().manual_seed(config.train.seed)
    translator = Translator(config.model)
    discriminators = Discriminators(config.model)
    init_weights(translator, init_generator)
    init_weights(discriminators, init_generator)
    layout = tensor_layout(config.runtime)
    translator.to(device, memory_format=layout)
    discriminators.to(device, memory_format=layout)
    check_precision(config.runtime.precision, device)

    def adam(module: nn.Module) -> torch.optim.Adam:
        # One fused kernel for all parameters instead of one small loop per tensor.
        return torch.optim.Adam(module.parameters(), lr=config.train.lr,
                                betas=(config.train.adam_beta1, config.train.adam_beta2),
                                fused=True)

    def scaler() -> torch.amp.GradScaler:
        return torch.amp.GradScaler(device.type, enabled=config.runtime.precision == "fp16")

    return TrainState(
        translator=translator,
        discriminators=discriminators,
        optimizer_generators=adam(translator),
        optimizer_discriminators=adam(discriminators),
        pools={direction: HistoryPool(config.train.pool_size,
                                      seed=(config.train.seed * 2 + i + 1) * 1000 + rank)
               for i, direction in enumerate(DIRECTIONS)},
        scaler_generators=scaler(),
        scaler_discriminators=scaler(),
        translator_ema=(AveragedModel(translator, multi_avg_fn=get_ema_multi_avg_fn(
            config.train.translator_ema), use_buffers=True)
            if config.train.translator_ema else None),
    )
