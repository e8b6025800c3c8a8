"""Would a larger or harder mask translate photos better? One model, several ways to composite.

Every row composites the same generator output F(s) with a different mask m over the test photos
resized to the model's scale, out = m * F(s) + (1 - m) * s, and scores it as
``real_quality.py`` does (KID x100 and FID against the real test photos of the target domain):
- ``soft``: the attention mask as trained (what ``translate`` does by default);
- ``hard T``: 1[mask >= T] (``translate --mask-threshold T``);
- ``dilated K``: the mask's K x K maximum filter, a mask grown by (K - 1) / 2 pixels;
- ``ones``: the generator's output everywhere (what the mask keeps out).

    python benchmarks/mask_compositing.py --aggan models/horse2zebra-128 \\
        --data ../shared/data/horse2zebra \\
        --json benchmarks/results/real_quality/mask_compositing.json
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.nn import functional as F

from aggan.domains import DIRECTIONS, source_domain, target_domain
from aggan.images import to_float, to_uint8
from aggan.loading import load_model
from aggan.metrics.fid_kid import fid_kid
from aggan.metrics.inception import InceptionFeatures
from aggan.networks import composite
from real_quality import test_photos
from report import finish, markdown_table


def dilated(size: int) -> Callable[[Tensor], Tensor]:
    return lambda mask: F.max_pool2d(mask, size, stride=1, padding=size // 2)


def hard(threshold: float) -> Callable[[Tensor], Tensor]:
    return lambda mask: (mask >= threshold).float()


MASKS: dict[str, Callable[[Tensor], Tensor]] = {
    "soft": lambda mask: mask,
    "hard 0.5": hard(0.5),
    "hard 0.1": hard(0.1),
    "dilated 9": dilated(9),
    "dilated 25": dilated(25),
    "ones": torch.ones_like,
}


def print_report(results: dict[str, Any]) -> None:
    print(f"horse2zebra test photos at {results['size']} px, {results['aggan']}")
    print(markdown_table(("direction", "mask", "mean mask", "KID x100", "FID"), (
        (row["direction"], row["mask"], f"{row['mean_mask']:.3f}",
         f"{row['kid_x100_mean']:.2f} +- {row['kid_x100_std']:.2f}", f"{row['fid']:.1f}")
        for row in results["rows"])))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--aggan", required=True, help="model folder, name, run or checkpoint")
    parser.add_argument("--data", required=True, type=Path, help="folder with testA/ testB/")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    model = load_model(args.aggan, torch.device("cpu"))
    translator, config = model.translator, model.config
    size = config.data.size_px
    photos = {domain: test_photos(args.data, domain, size) for domain in ("a", "b")}
    inception = InceptionFeatures()
    real_features = {domain: inception.extract(photos[domain]) for domain in photos}
    results: dict[str, Any] = {"size": size, "aggan": args.aggan, "rows": []}
    for direction in DIRECTIONS:
        inputs = to_float(photos[source_domain(direction)])
        with torch.inference_mode():
            generated, mask = translator.parts(inputs, direction)
        generated, mask = generated.float(), mask.float()
        for name, make_mask in MASKS.items():
            used = make_mask(mask)
            outputs = to_uint8(composite(used, generated, inputs))
            scores = fid_kid(real_features[target_domain(direction)], inception.extract(outputs))
            results["rows"].append({"direction": direction, "mask": name,
                                    "mean_mask": float(used.mean()), "fid": scores.fid,
                                    "kid_x100_mean": scores.kid_x100_mean,
                                    "kid_x100_std": scores.kid_x100_std})

    print_report(results)
    finish(results, args.json)


if __name__ == "__main__":
    main()
