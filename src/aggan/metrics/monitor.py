"""Metrics during training: the monitored metrics of ``metrics.table`` on a fixed subset of test
images, every ``train.kid_every_steps`` steps, to pick the best step of a run."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch import Tensor

from aggan.config import RunConfig
from aggan.data import open_test_domain
from aggan.errors import AgganError
from aggan.metrics.fid_kid import fid_kid
from aggan.metrics.inception import InceptionFeatures
from aggan.metrics.table import MONITORED
from aggan.networks import DIRECTIONS, Direction, Translator, source_domain, target_domain
from aggan.translate import translate_tensor

SELECTION_KEY = "metrics/kid_x100_mean"  # KID x100 averaged over both directions: lower is better


class TrainingMonitor:
    """The real features of each target domain are computed once; each measurement translates
    the same ``count`` source images (whole, at their size) and extracts their features."""

    def __init__(self, config: RunConfig, device: torch.device) -> None:
        self.inception = InceptionFeatures(
            Path(config.train.inception) if config.train.inception else None, device)
        count = config.train.kid_images
        self.inputs: dict[Direction, list[Tensor]] = {}
        self.real_features: dict[Direction, Tensor] = {}
        for direction in DIRECTIONS:
            inputs = open_test_domain(config.data, source_domain(direction))
            reals = open_test_domain(config.data, target_domain(direction))
            if inputs is None or reals is None:
                raise AgganError("train.kid_every_steps needs testA/ and testB/ in "
                                 f"{config.data.root}")
            self.inputs[direction] = [inputs.load(i) for i in range(min(count, len(inputs)))]
            self.real_features[direction] = self.inception.extract(
                reals.load(i) for i in range(min(count, len(reals))))

    def measure(self, translator: Translator, use_attention: bool) -> dict[str, float]:
        """``metrics/<key>_<direction>`` per monitored metric, and ``SELECTION_KEY``."""
        values = {}
        for direction in DIRECTIONS:
            fakes = (translate_tensor(translator, image[None], direction, use_attention)[0][0]
                     for image in self.inputs[direction])
            scores = dataclasses.asdict(
                fid_kid(self.real_features[direction], self.inception.extract(fakes)))
            values |= {f"metrics/{m.key}_{direction}": scores[m.key] for m in MONITORED}
        values[SELECTION_KEY] = sum(values[f"metrics/kid_x100_mean_{d}"]
                                    for d in DIRECTIONS) / len(DIRECTIONS)
        return values


def training_monitor(config: RunConfig, device: torch.device) -> TrainingMonitor | None:
    """The monitor where ``train.kid_every_steps`` asks for one (it needs the Inception)."""
    return TrainingMonitor(config, device) if config.train.kid_every_steps else None
