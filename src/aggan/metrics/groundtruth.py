"""Metrics that need ground truth, which only the synthetic dataset has.

All are computed on what a user gets: the translation quantised to uint8, as ``translate`` writes
it. Per direction:

- ``mask_iou``: IoU of (mask > 0.5) with the true object mask, averaged over images;
- ``background_psnr_db``: PSNR of output vs input outside the true mask (what must not change);
- ``truth_psnr_db``: PSNR of output vs the true translation (the whole image);
- ``identity_truth_psnr_db``: the same for output = input, the baseline a model must beat;
- ``mask_inside`` / ``mask_outside``: mean mask inside and outside the true objects.

A collapsed model (mask near 0 everywhere) scores a very high background PSNR while changing
nothing, so background PSNR is only meaningful next to ``truth_psnr_db`` and ``mask_inside``;
``collapsed`` flags it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from aggan.data import GroundTruthItem
from aggan.domains import Direction
from aggan.images import to_float, to_uint8
from aggan.networks import Translator

# Mean mask inside the true objects below which a run counts as collapsed.
COLLAPSE_MASK_INSIDE = 0.25
PSNR_CAP_DB = 100.0  # an identical region would be infinite


def psnr_db(mse: float) -> float:
    """PSNR for images in [0, 1]."""
    return PSNR_CAP_DB if mse <= 10 ** (-PSNR_CAP_DB / 10) else -10 * math.log10(mse)


def _region_mse(a: Tensor, b: Tensor, region: Tensor) -> float:
    weight = region.expand_as(a).float()
    return float(((a - b) ** 2 * weight).sum() / weight.sum().clamp(min=1))


@torch.no_grad()
def ground_truth_metrics(translator: Translator, items: Sequence[GroundTruthItem],
                         direction: Direction, *, device: torch.device, use_attention: bool,
                         batch_size: int = 16) -> dict[str, float | bool | int]:
    """Scores ``translator`` on test items of the source domain of ``direction``."""
    sums = dict.fromkeys(("mask_iou", "background_psnr_db", "truth_psnr_db",
                          "identity_truth_psnr_db", "mask_inside", "mask_outside"), 0.0)
    for start in range(0, len(items), batch_size):
        batch = items[start:start + batch_size]
        images = torch.stack([item.image for item in batch])
        translated, masks = translator(to_float(images).to(device), direction, use_attention)
        outputs = to_uint8(translated).cpu().float() / 255
        masks = masks.cpu().float()
        for item, output, mask in zip(batch, outputs, masks, strict=True):
            inputs, truth = item.image.float() / 255, item.truth.float() / 255
            objects = item.mask > 127
            background = ~objects
            predicted = mask > 0.5
            union = (predicted | objects).sum()
            sums["mask_iou"] += float((predicted & objects).sum() / union) if union else 1.0
            sums["background_psnr_db"] += psnr_db(_region_mse(output, inputs, background))
            sums["truth_psnr_db"] += psnr_db(float(((output - truth) ** 2).mean()))
            sums["identity_truth_psnr_db"] += psnr_db(float(((inputs - truth) ** 2).mean()))
            sums["mask_inside"] += float(mask[objects].mean()) if objects.any() else 0.0
            sums["mask_outside"] += float(mask[background].mean()) if background.any() else 0.0
    metrics: dict[str, float | bool | int] = {k: v / len(items) for k, v in sums.items()}
    metrics["images"] = len(items)
    metrics["collapsed"] = bool(use_attention and metrics["mask_inside"] < COLLAPSE_MASK_INSIDE)
    return metrics
