"""Full-resolution translation with a model trained small: the training-scale composite against
running the networks at the photo's own size (``--scale native``).

Every test photo of the source domain is upscaled (bicubic) to ``--size`` px, then translated
both ways. Reported per mode: seconds and peak memory (the process's maximum resident set, each
mode in its own process) per image, and the share of pixels whose mask is below 0.01 (8-bit mask
value <= 2) that come out bit-identical to the input. Also a few large mosaics (tiles of test
photos at ``--size`` px, 3 x 2), since no large photos are available offline. Native scale runs
on the first ``--native-limit`` photos only (seconds per photo at 1024 px on a CPU). Prints a
table and a final JSON line; ``--json`` writes the results.

    python benchmarks/full_resolution.py --model RUN_OR_MODEL --data ../shared/data/horse2zebra \\
        --direction a2b --json benchmarks/results/full_resolution/full_resolution.json
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from aggan.images import list_images
from aggan.loading import load_model
from aggan.translate import scale_px, translate_tensor
from report import finish, markdown_table
from speed import cpu_name  # benchmarks/speed.py, beside this script

MODES = ("train", "native")
SMALL_MASK = 2  # 8-bit mask values 0..2: mask below 0.01


def _photo(path: Path, size: int) -> torch.Tensor:
    image = Image.open(path).convert("RGB").resize((size, size), Image.Resampling.BICUBIC)
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)


def _mosaic(paths: list[Path], size: int) -> torch.Tensor:
    tiles = [_photo(path, size) for path in paths]
    rows = [torch.cat(tiles[i:i + 3], dim=2) for i in (0, 3)]
    return torch.cat(rows, dim=1)


def measure_mode(args: argparse.Namespace) -> dict[str, Any]:
    """One mode in this process: time, peak memory, untouched pixels."""
    torch.set_num_threads(args.threads)
    model = load_model(args.model, torch.device("cpu"))
    translator, config, use_attention = model.translator, model.config, model.use_attention
    source = "testA" if args.direction == "a2b" else "testB"
    paths = list_images(Path(args.data) / source)
    limit = args.limit if args.mode == "train" else args.native_limit
    inputs = [("photo", _photo(path, args.size)) for path in paths[:limit]]
    inputs += [("mosaic", _mosaic(paths[i:i + 6], args.size))
               for i in range(0, 6 * args.mosaics, 6)]
    px = scale_px(args.mode, config.data.size_px)
    results: dict[str, Any] = {}
    for kind in ("photo", "mosaic"):
        seconds, small, identical = [], 0, 0
        for name, image in inputs:
            if name != kind:
                continue
            started = time.perf_counter()
            translated, mask = translate_tensor(translator, image[None], args.direction,
                                                use_attention, scale_px=px)
            seconds.append(time.perf_counter() - started)
            low = mask[0, 0] <= SMALL_MASK
            small += int(low.sum())
            identical += int((translated[0] == image).all(dim=0)[low].sum())
        results[kind] = {"images": len(seconds), "height_width": list(
            next(image for name, image in inputs if name == kind).shape[1:]),
            "sec_per_image": float(np.median(seconds)),
            "mask_below_001_share": small / sum(
                image.shape[1] * image.shape[2] for name, image in inputs if name == kind),
            "identical_share_where_mask_below_001": identical / small if small else None}
    results["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return results


def _mode_row(mode: str, kind: str, result: dict[str, Any]) -> tuple[str, ...]:
    row = result[kind]
    identical = row["identical_share_where_mask_below_001"]
    height, width = row["height_width"]
    return (mode, f"{kind} {height}x{width}", str(row["images"]), f"{row['sec_per_image']:.3f}",
            f"{result['peak_rss_mb']:.0f}", f"{row['mask_below_001_share']:.3f}",
            "n/a" if identical is None else f"{identical:.4f}")


def print_report(record: dict[str, Any]) -> None:
    print(f"{record['direction']}, photos upscaled to {record['size']} px; {record['cpu']}, "
          f"{record['threads']} threads")
    print(markdown_table(("scale", "input", "images", "s/image", "peak RSS MB", "mask<0.01 share",
                          "identical where mask<0.01"),
                         (_mode_row(mode, kind, result) for mode, result in record["modes"].items()
                          for kind in ("photo", "mosaic"))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="model folder, name, run or checkpoint")
    parser.add_argument("--data", required=True, help="folder with testA/ testB/")
    parser.add_argument("--direction", default="a2b", choices=("a2b", "b2a"))
    parser.add_argument("--size", type=int, default=1024, help="photos upscaled to this (px)")
    parser.add_argument("--limit", type=int, default=120, help="test photos at most")
    parser.add_argument("--native-limit", type=int, default=20,
                        help="test photos at most for --scale native (slow at full size)")
    parser.add_argument("--mosaics", type=int, default=3, help="large mosaics (3 x 2 photos)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)  # one mode, internal
    args = parser.parse_args()
    if args.mode:
        print(json.dumps(measure_mode(args)))
        return
    modes = {}
    for mode in MODES:
        command = [sys.executable, __file__, *sys.argv[1:], "--mode", mode]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode:
            sys.exit(f"--scale {mode} failed: {done.stderr.strip().splitlines()[-1]}")
        modes[mode] = json.loads(done.stdout.strip().splitlines()[-1])
    record = {"model": args.model, "direction": args.direction, "size": args.size,
              "cpu": cpu_name(), "threads": args.threads, "modes": modes}
    print_report(record)
    finish(record, args.json)


if __name__ == "__main__":
    main()
