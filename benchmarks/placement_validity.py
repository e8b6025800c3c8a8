"""Does a placement measure tell a mask on the animals from one elsewhere? Checked on masks whose
answer is known before the measure is used to choose anything (issue #27, part 1).

On the test photos resized to the model's scale, per direction, each candidate mask is scored by
three label-free measures:
- ``model``: the model's own attention masks;
- ``complement``: 1 - mask (the rest of the photo);
- ``random place``: the mask circularly shifted by a seeded random offset (same shape, same area);
- ``ones``: a mask of ones (everything);
- ``centred blob``: the mask's own values rearranged into a centred disk, the highest at the
  centre (the same area and the same softness, placed where a photographer puts the subject);
- ``average mask``: the mean of the model's masks over all the test photos of the direction,
  the same on every photo: where the priors alone (border, area) and the photographers' habits
  put a mask. Masks that follow each photo's animal beat it; masks that draw one band whatever
  the photo tie with it.
The measures:
- ``occlusion``: ``aggan.metrics.placement`` (nats of domain evidence the mask hides beyond the
  same shape elsewhere; a probe on the training photos' Inception features), with its hit rate
  and, photo by photo, the model's score minus the candidate's (mean +- standard error, and the
  share of photos where the model's masks score higher);
- ``cycle``: agreement of the attention across the cycle, 1 - mean |A_T(x') - m| where
  x' = m * F(x) + (1 - m) * x is the photo translated under the candidate mask;
- ``edges``: the mean Sobel gradient magnitude of the photo under the mask over the photo's mean.

    python benchmarks/placement_validity.py --model models/horse2zebra-128 \\
        --data ../shared/data/horse2zebra \\
        --json benchmarks/results/placement/placement_validity.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.nn import functional as F

from aggan.config import DataConfig
from aggan.domains import DIRECTIONS, reverse, source_domain
from aggan.images import to_float
from aggan.loading import load_model
from aggan.metrics.fid_kid import default_cache_dir
from aggan.metrics.inception import InceptionFeatures
from aggan.metrics.placement import placement, training_probe
from aggan.networks import composite
from real_quality import test_photos
from report import finish, markdown_table


def centred_blob(mask: Tensor) -> Tensor:
    """Each mask's values rearranged by distance to the centre, highest nearest: a centred blob
    with the mask's area and softness (its histogram), as float (N, 1, H, W)."""
    height, width = mask.shape[-2:]
    rows = torch.arange(height).view(-1, 1) - (height - 1) / 2
    columns = torch.arange(width).view(1, -1) - (width - 1) / 2
    nearest_first = (rows ** 2 + columns ** 2).flatten().argsort(stable=True)
    blobs = []
    for m in mask:
        blob = torch.empty(height * width)
        blob[nearest_first] = m.flatten().sort(descending=True).values
        blobs.append(blob.view(1, height, width))
    return torch.stack(blobs)


def random_place(mask: Tensor, seed: int = 1) -> Tensor:
    generator = torch.Generator().manual_seed(seed)
    height, width = mask.shape[-2:]
    return torch.stack([torch.roll(m, (int(torch.randint(height, (1,), generator=generator)),
                                       int(torch.randint(width, (1,), generator=generator))),
                                   dims=(-2, -1)) for m in mask])


CANDIDATES: dict[str, Callable[[Tensor], Tensor]] = {
    "model": lambda mask: mask,
    "complement": lambda mask: 1 - mask,
    "random place": random_place,
    "ones": torch.ones_like,
    "centred blob": centred_blob,
    "average mask": lambda mask: mask.mean(0, keepdim=True).expand_as(mask),
}


def edge_ratio(photos: Tensor, masks: Tensor) -> float:
    """Mean over photos of (gradient magnitude under the mask) / (the photo's mean magnitude)."""
    grey = to_float(photos).mean(1, keepdim=True)
    sobel = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]])
    kernels = torch.stack([sobel, sobel.T])[:, None]
    gradient = F.conv2d(F.pad(grey, (1, 1, 1, 1), mode="replicate"), kernels).norm(dim=1,
                                                                                   keepdim=True)
    under = (gradient * masks).sum((1, 2, 3)) / masks.sum((1, 2, 3)).clamp(min=1e-6)
    return float((under / gradient.mean((1, 2, 3))).mean())


@torch.no_grad()
def cycle_agreement(translator: torch.nn.Module, photos: Tensor, masks: Tensor,
                    direction: str, generated: Tensor) -> float:
    """1 - mean |A_T(m * F(x) + (1 - m) * x) - m|."""
    there = composite(masks, generated, to_float(photos))
    _, back_masks = translator.parts(there, reverse(direction), True)
    return float(1 - (back_masks - masks).abs().mean())


def _row(row: dict[str, Any]) -> tuple[str, ...]:
    model = row["candidate"] == "model"
    return (row["direction"], row["candidate"], f"{row['mean_mask']:.3f}",
            f"{row['placement_nats']:+.3f} +- {row['placement_nats_stderr']:.3f}",
            f"{row['placement_hit_rate']:.2f}",
            "" if model else
            f"{row['model_minus_this_nats']:+.3f} +- {row['model_minus_this_stderr']:.3f}",
            "" if model else f"{row['model_higher_share']:.0%}",
            f"{row['cycle_agreement']:.3f}", f"{row['edge_ratio']:.2f}")


def print_report(results: dict[str, Any]) -> None:
    probe = results["probe"]
    print(f"\n{results['model']} on the test photos at {results['size']} px; probe: L2 "
          f"{probe['penalty']:g}, held-out accuracy {probe['heldout_accuracy']:.3f}")
    print(markdown_table(("direction", "candidate", "mean mask", "occlusion (nats)", "hit rate",
                          "model minus this, per photo (nats)", "model higher",
                          "cycle agreement", "edge ratio"), map(_row, results["rows"])))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="model folder, name, run or checkpoint")
    parser.add_argument("--data", required=True, type=Path,
                        help="folder with trainA/ trainB/ (the probe) and testA/ testB/")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--candidates", nargs="+", choices=tuple(CANDIDATES)[1:],
                        default=tuple(CANDIDATES)[1:],
                        help="the masks to hold the model's against (default: all)")
    args = parser.parse_args()

    model = load_model(args.model, torch.device("cpu"))
    translator, config, use_attention = model.translator, model.config, model.use_attention
    size = config.data.size_px
    inception = InceptionFeatures()
    probe = training_probe(dataclasses.replace(DataConfig(), root=str(args.data)), inception,
                           default_cache_dir())
    results: dict[str, Any] = {"model": args.model, "size": size,
                               "probe": {"penalty": probe.penalty,
                                         "heldout_accuracy": probe.heldout_accuracy},
                               "rows": []}
    for direction in DIRECTIONS:
        source = source_domain(direction)
        photos = test_photos(args.data, source, size)
        with torch.no_grad():
            generated, masks = translator.parts(to_float(photos), direction, use_attention)
        per_photo: dict[str, Tensor] = {}
        for name in ("model", *args.candidates):
            chosen = CANDIDATES[name](masks.float()).clamp(0, 1)
            measured = placement(probe, inception, list(photos), list(chosen), source)
            per_photo[name] = measured.scores
            model_minus = per_photo["model"] - measured.scores
            row = {"direction": direction, "candidate": name,
                   "mean_mask": float(chosen.mean()), **measured.summary(),
                   "model_minus_this_nats": float(model_minus.mean()),
                   "model_minus_this_stderr": float(model_minus.std()) / len(photos) ** 0.5,
                   "model_higher_share": float((model_minus > 0).float().mean()),
                   "scores": measured.scores.tolist(),
                   "cycle_agreement": cycle_agreement(translator, photos, chosen, direction,
                                                      generated),
                   "edge_ratio": edge_ratio(photos, chosen)}
            results["rows"].append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "scores"}), flush=True)

    print_report(results)
    finish(results, args.json, line={key: value for key, value in results.items()
                                     if key != "rows"})


if __name__ == "__main__":
    main()
