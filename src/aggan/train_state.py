"""The training state: the networks, their optimizers and loss scalers, the history pools and
the moving average, built fresh from a config (``build_state``). ``checkpoint`` writes and
restores exactly this.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from aggan.config import RunConfig
from aggan.device import check_precision, tensor_layout
from aggan.domains import DIRECTIONS
from aggan.networks import Discriminators, Translator, init_weights
from aggan.pool import HistoryPool


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
    # schedule.switch_attention=best-placement: the attention networks' weights at the best-placed
    # sample step so far, and that placement; the switch restores them (and clears them).
    best_attention: dict[str, torch.Tensor] | None = None
    best_placement_nats: float = -math.inf

    @property
    def inference_translator(self) -> Translator:
        """What samples, monitors and the final metrics show: the average where there is one."""
        if self.translator_ema is None:
            return self.translator
        return self.translator_ema.module  # type: ignore[return-value]

    def offer_attention(self, placement_nats: float) -> None:
        """Keeps the attention networks' weights if ``placement_nats`` is the best so far."""
        if placement_nats > self.best_placement_nats:
            self.best_placement_nats = placement_nats
            self.best_attention = {key: value.detach().clone() for key, value in
                                   self.inference_translator.attention.state_dict().items()}

    def restore_best_attention(self) -> None:
        """At the switch: the best-placed attention into the weights (and their average)."""
        assert self.best_attention is not None
        for translator in {id(t): t for t in (self.translator, self.inference_translator)
                           }.values():
            translator.attention.load_state_dict(self.best_attention)
        self.best_attention = None

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
