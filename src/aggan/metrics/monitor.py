"""Metrics during training, on fixed subsets of test images: the monitored metrics of
``metrics.table`` every ``monitor.kid_every_steps`` steps, to pick the best step of a run; and the
mask placement (``metrics.placement``) at every sample step, so that a run shows where its masks
are while it trains."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor

from aggan.config import VARIANTS, RunConfig
from aggan.data import DomainImages, monitored_domain, open_domain
from aggan.domains import DIRECTIONS, Direction, source_domain, target_domain
from aggan.errors import AgganError
from aggan.metrics.fid_kid import default_cache_dir, fid_kid
from aggan.metrics.inception import InceptionFeatures
from aggan.metrics.placement import placement, training_probe
from aggan.metrics.table import MONITORED
from aggan.networks import Translator
from aggan.translate import translate_tensor

logger = logging.getLogger(__name__)

SELECTION_KEY = "metrics/kid_x100_mean"  # KID x100 averaged over both directions: lower is better


def _inception(config: RunConfig, device: torch.device) -> InceptionFeatures:
    return InceptionFeatures(Path(config.monitor.inception) if config.monitor.inception else None,
                             device)


class TrainingMonitor:
    """On the validation images where the run holds some out, else the test images: the real
    features of each target domain are computed once; each measurement translates the same
    ``count`` source images (whole, at their size) and extracts their features."""

    def __init__(self, config: RunConfig, device: torch.device) -> None:
        self.inception = _inception(config, device)
        count = config.monitor.kid_images
        self.inputs: dict[Direction, list[Tensor]] = {}
        self.real_features: dict[Direction, Tensor] = {}
        for direction in DIRECTIONS:
            inputs = monitored_domain(config.data, source_domain(direction))
            reals = monitored_domain(config.data, target_domain(direction))
            if inputs is None or reals is None:
                raise AgganError("monitor.kid_every_steps needs testA/ and testB/ in "
                                 f"{config.data.root} (or data.validation_images)")
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
    """The monitor where ``monitor.kid_every_steps`` asks for one (it needs the Inception)."""
    return TrainingMonitor(config, device) if config.monitor.kid_every_steps else None


class PlacementMonitor:
    """The mask placement of the first ``monitor.placement_images`` validation images of each
    domain where the run holds some out, else test images (else training images), translated as
    ``aggan evaluate`` does (at the training scale). The probe is fit once, on training images
    (features cached)."""

    def __init__(self, config: RunConfig, device: torch.device,
                 training: Mapping[str, DomainImages] | None = None) -> None:
        self.inception = _inception(config, device)
        self.probe = training_probe(config.data, self.inception, default_cache_dir(),
                                    training=training)
        self.size_px = config.data.size_px
        self.inputs: dict[Direction, list[Tensor]] = {}
        for direction in DIRECTIONS:
            domain = source_domain(direction)
            images = (monitored_domain(config.data, domain)
                      or open_domain(config.data, "train", domain))
            count = min(config.monitor.placement_images, len(images))
            self.inputs[direction] = [images.load(i) for i in range(count)]

    def measure(self, translator: Translator) -> dict[str, float]:
        """``placement/nats_<direction>``, its standard error ``placement/nats_stderr_...`` and
        ``placement/hit_rate_<direction>``."""
        values = {}
        for direction in DIRECTIONS:
            masks = [translate_tensor(translator, image[None], direction, True,
                                      scale_px=self.size_px)[1][0]
                     for image in self.inputs[direction]]
            summary = placement(self.probe, self.inception, self.inputs[direction], masks,
                                source_domain(direction)).summary()
            values[f"placement/nats_{direction}"] = summary["placement_nats"]
            values[f"placement/nats_stderr_{direction}"] = summary["placement_nats_stderr"]
            values[f"placement/hit_rate_{direction}"] = summary["placement_hit_rate"]
        return values


def placement_monitor(config: RunConfig, device: torch.device,
                      training: Mapping[str, DomainImages] | None = None
                      ) -> PlacementMonitor | None:
    """The placement monitor (its probe fit on ``training``, the run's open training images,
    where given) where ``monitor.placement_images`` asks for one, the variant has attention and
    the data are photos (the synthetic scenes have ground truth instead: mask IoU
    in the run's metrics.json). It needs the FID Inception and enough training images for the
    probe: without them the run trains on, and says once that placement is not logged."""
    if (not config.monitor.placement_images or not VARIANTS[config.model.variant].attention
            or config.data.root == "synthetic"):
        return None
    try:
        return PlacementMonitor(config, device, training)
    except AgganError as error:
        logger.warning("mask placement is not logged (monitor.placement_images): %s", error)
        return None
