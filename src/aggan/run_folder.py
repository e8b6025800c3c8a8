"""What a training run leaves in its folder besides checkpoints: the resolved config, sample
grids, galleries and final metrics."""

from __future__ import annotations

import logging
import platform
import sys
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from aggan.config import RunConfig, to_dict
from aggan.data import fixed_samples, ground_truth
from aggan.domains import DIRECTIONS, DOMAINS, source_domain
from aggan.images import write_json, write_png
from aggan.metrics.groundtruth import ground_truth_metrics
from aggan.networks import Translator
from aggan.schedule import Phase, Schedule, schedule_dict
from aggan.tracking import Tracker, sample_grid
from aggan.version import __version__

logger = logging.getLogger(__name__)

SAMPLE_IMAGES = 4  # rows per sample grid during training
GALLERY_IMAGES = 8  # rows per gallery at the end


def write_run_config(run_dir: Path, config: RunConfig, schedule: Schedule,
                     device: torch.device, world_size: int) -> None:
    """``config.json``: the resolved config, the schedule in steps, where and with what it ran."""
    write_json(run_dir / "config.json", {
        "config": to_dict(config),
        "schedule": schedule_dict(schedule),
        "device": str(device),
        "world_size": world_size,
        "global_batch_size": config.train.batch_size * world_size,
        "versions": {"aggan": __version__, "torch": torch.__version__,
                     "python": platform.python_version()},
        "argv": sys.argv,
    })


def write_samples(tracker: Tracker, translator: Translator, samples: dict[str, Tensor], step: int,
                  phase: Phase) -> None:
    """``samples/step-NNNNNNN_<direction>.png`` and TensorBoard: input | mask | translation |
    reconstruction of the fixed sample images."""
    for direction in DIRECTIONS:
        grid = sample_grid(translator, samples[source_domain(direction)], direction,
                           phase.use_attention)
        tracker.image(step, direction, grid)


def finish_run(run_dir: Path, config: RunConfig, translator: Translator, phase: Phase,
               device: torch.device) -> dict[str, dict[str, Any]]:
    """At the end of the schedule: ``gallery_<direction>.png`` and, where the data has ground
    truth, ``metrics.json``. Returns the metrics per direction (empty without ground truth)."""
    for direction in DIRECTIONS:
        gallery = fixed_samples(config.data, source_domain(direction), GALLERY_IMAGES).to(device)
        write_png(sample_grid(translator, gallery, direction, phase.use_attention),
                  run_dir / f"gallery_{direction}.png")
    metrics = {}
    for direction in DIRECTIONS:
        items = ground_truth(config.data, source_domain(direction))
        if items is None:
            return {}
        metrics[direction] = ground_truth_metrics(translator, items, direction, device=device,
                                                  use_attention=phase.use_attention)
    write_json(run_dir / "metrics.json", metrics)
    return metrics


class CollapseWatch:
    """Warns when an attention mask collapses and says when it recovers, so that a long
    collapse is one warning, not one per log step."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self.collapsed: set[str] = set()

    def check(self, values: dict[str, float], phase: Phase, step: int) -> None:
        if not phase.use_attention:
            return
        for domain in DOMAINS:
            mean = values[f"mask/mean_{domain}"]
            if mean < self.threshold and domain not in self.collapsed:
                self.collapsed.add(domain)
                logger.warning("step %d: attention %s has collapsed (mean mask %.4f < %.4f): the "
                               "translation equals the input. See README, 'Attention collapse'.",
                               step, domain, mean, self.threshold)
            elif mean >= self.threshold and domain in self.collapsed:
                self.collapsed.discard(domain)
                logger.info("step %d: attention %s recovered (mean mask %.4f)", step, domain,
                            mean)
