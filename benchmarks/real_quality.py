"""What the method buys on photos: aggan against a cyclegan-variant model and the identity.

On horse2zebra's test photos resized to the model's scale (``--size``, default the aggan
model's training size), per direction and method:
- KID x100 (mean +- std over 100 subsets) and FID against the real test photos of the target
  domain, resized the same way; the authors' FID (the mean of that FID and the FID against the
  source domain's test photos, the first author's protocol);
- locality without ground truth: the share of pixels changed by more than 8/255 in any channel,
  the mean absolute change (in 8-bit levels), and for aggan the mean mask and where it sits
  (``aggan.metrics.placement``: nats of domain evidence the mask hides beyond the same shape
  elsewhere, with a probe fit on the training photos);
- a gallery: input | mask | aggan (| mask | translation of each ``--other``) | cyclegan for
  ``--gallery-rows`` test photos per direction.
``--other LABEL=MODEL`` scores more aggan models the same way, in rows named LABEL (a model to
replace held against the one in use, say); the rows of ``--aggan`` stay named ``aggan``, so the
results can go into that model's folder (``aggan export-weights --metrics``). Prints a table and
a final JSON line; ``--json`` writes the results.

    python benchmarks/real_quality.py --aggan models/horse2zebra-128 --cyclegan RUN_CYCLEGAN \\
        --data ../shared/data/horse2zebra \\
        --json benchmarks/results/real_quality/real_quality.json \\
        --gallery docs/real_gallery
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.nn import functional as F
from torchvision.utils import make_grid

from aggan.config import DataConfig
from aggan.data import FolderDomain
from aggan.domains import DIRECTIONS, Direction, source_domain, target_domain
from aggan.images import write_png
from aggan.loading import load_model
from aggan.metrics.fid_kid import default_cache_dir, fid_kid, frechet_distance
from aggan.metrics.inception import InceptionFeatures
from aggan.metrics.placement import placement, training_probe
from aggan.translate import translate_tensor
from report import finish, markdown_table, placement_cell

CHANGED_LEVELS = 8  # a pixel counts as changed above this many 8-bit levels in any channel


def test_photos(root: Path, domain: str, size: int) -> Tensor:
    """The test photos of a domain, resized to size x size (antialiased), as uint8 (N, 3, S, S)."""
    images = FolderDomain(root / f"test{domain.upper()}")
    resized = [F.interpolate(images.load(i)[None].float(), size=(size, size), mode="bilinear",
                             antialias=True, align_corners=False)[0]
               for i in range(len(images))]
    return torch.stack(resized).round().clamp(0, 255).to(torch.uint8)


def translate_all(source: str | None, inputs: Tensor, direction: Direction
                  ) -> tuple[Tensor, Tensor | None]:
    """Translations (and masks) of ``inputs`` by a model; the identity when ``source`` is None."""
    if source is None:
        return inputs, None
    model = load_model(source, torch.device("cpu"))
    translator, use_attention = model.translator, model.use_attention
    outputs, masks = zip(*(translate_tensor(translator, image[None], direction, use_attention)
                           for image in inputs), strict=True)
    return torch.cat(outputs), torch.cat(masks)


def locality(inputs: Tensor, outputs: Tensor) -> dict[str, float]:
    change = (outputs.int() - inputs.int()).abs()
    return {"changed_share": float((change.amax(dim=1) > CHANGED_LEVELS).float().mean()),
            "mean_abs_change_levels": float(change.float().mean())}


def gallery(inputs: Tensor, attended: list[tuple[Tensor, Tensor]], cyclegan: Tensor | None
            ) -> Tensor:
    """Rows of input | mask | translation (for each aggan model) (| cyclegan), uint8."""
    columns = [inputs]
    for masks, outputs in attended:
        columns += [masks.expand_as(inputs), outputs]
    columns += [cyclegan] if cyclegan is not None else []
    tiles = torch.stack(columns, dim=1).flatten(0, 1)
    return make_grid(tiles, nrow=len(columns), padding=2, pad_value=255)


def labelled_model(text: str) -> tuple[str, str]:
    """``LABEL=MODEL`` of ``--other``, as (label, model)."""
    label, separator, source = text.partition("=")
    if not separator or not label or not source:
        raise argparse.ArgumentTypeError(f"expected LABEL=MODEL, got {text!r}")
    if label in ("identity", "aggan", "cyclegan"):
        raise argparse.ArgumentTypeError(f"the label {label!r} is taken by the built-in rows")
    return label, source


def print_report(results: dict[str, Any]) -> None:
    print(f"horse2zebra test photos at {results['size']} px")
    print(markdown_table(
        ("direction", "method", "KID x100", "FID", "authors' FID", "changed > 8/255",
         "mean abs change", "mean mask", "placement (nats)"),
        ((row["direction"], row["method"],
          f"{row['kid_x100_mean']:.2f} +- {row['kid_x100_std']:.2f}", f"{row['fid']:.1f}",
          f"{row['fid_authors']:.1f}", f"{row['changed_share']:.3f}",
          f"{row['mean_abs_change_levels']:.2f}",
          f"{row['mean_mask']:.3f}" if "mean_mask" in row else "",
          placement_cell(row["placement_nats"], row["placement_nats_stderr"],
                         row["placement_hit_rate"]) if "placement_nats" in row else "")
         for row in results["rows"])))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--aggan", required=True, help="model folder, name, run or checkpoint")
    parser.add_argument("--other", type=labelled_model, action="append", default=[],
                        metavar="LABEL=MODEL", help="another aggan model to score beside "
                        "--aggan, in rows named LABEL (repeatable)")
    parser.add_argument("--cyclegan", help="the cyclegan-variant model trained the same way")
    parser.add_argument("--data", required=True, type=Path, help="folder with testA/ testB/")
    parser.add_argument("--size", type=int, help="pixels (default: the aggan model's training "
                        "size)")
    parser.add_argument("--gallery", type=Path, help="write GALLERY_a2b.png and GALLERY_b2a.png")
    parser.add_argument("--gallery-rows", type=int, default=8)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    model = load_model(args.aggan, torch.device("cpu"))
    config = model.config
    size = args.size or config.data.size_px
    photos = {domain: test_photos(args.data, domain, size) for domain in ("a", "b")}
    inception = InceptionFeatures()
    real_features = {domain: inception.extract(photos[domain]) for domain in photos}
    probe = training_probe(DataConfig(root=str(args.data)), inception, default_cache_dir())
    others = dict(args.other)
    attention_methods = ["aggan", *others]
    methods = {"identity": None, "aggan": args.aggan, **others, "cyclegan": args.cyclegan}
    results: dict[str, Any] = {"size": size, "aggan": args.aggan, "others": others,
                               "cyclegan": args.cyclegan, "rows": []}
    for direction in DIRECTIONS:
        inputs = photos[source_domain(direction)]
        outputs: dict[str, Tensor] = {}
        masks: dict[str, Tensor] = {}
        for method, source in methods.items():
            if method == "cyclegan" and source is None:
                continue
            outputs[method], method_masks = translate_all(source, inputs, direction)
            fake_features = inception.extract(outputs[method])
            scores = fid_kid(real_features[target_domain(direction)], fake_features)
            fid_source = frechet_distance(real_features[source_domain(direction)],
                                          fake_features)
            row = {"direction": direction, "method": method, "fid": scores.fid,
                   "fid_authors": (scores.fid + fid_source) / 2,
                   "kid_x100_mean": scores.kid_x100_mean, "kid_x100_std": scores.kid_x100_std,
                   "images": len(inputs), "real_images": scores.real_images,
                   **locality(inputs, outputs[method])}
            if method in attention_methods and method_masks is not None:
                row["mean_mask"] = float(method_masks.float().mean() / 255)
                row |= placement(probe, inception, list(inputs), list(method_masks),
                                 source_domain(direction)).summary()
                masks[method] = method_masks
            results["rows"].append(row)
        if args.gallery:
            rows = slice(0, args.gallery_rows)
            write_png(gallery(inputs[rows],
                              [(masks[method][rows], outputs[method][rows])
                               for method in attention_methods if method in masks],
                              outputs["cyclegan"][rows] if "cyclegan" in outputs else None),
                      args.gallery.parent / f"{args.gallery.name}_{direction}.png")

    print_report(results)
    finish(results, args.json)


if __name__ == "__main__":
    main()
