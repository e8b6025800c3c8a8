"""Quality on the synthetic benchmark: what each variant and recipe reaches in a fixed budget.

Trains every (variant, recipe, seed) on the built-in synthetic data (CPU by default), then scores
the test scenes against ground truth: mask IoU, background PSNR, truth PSNR, next to the identity
baseline. Prints a table and a final JSON line, and writes the results as JSON.

Targets (issues #2 and #10), for the default variant and recipe: mask IoU >= 0.85 and
background PSNR >= 34 dB without collapse, and the cyclegan variant's background PSNR clearly
lower.

    python benchmarks/synthetic_quality.py                      # 3 variants, default recipe
    python benchmarks/synthetic_quality.py --variants aggan --recipes default official --seeds 0 1
    python benchmarks/synthetic_quality.py --variants aggan --set runtime.precision=bf16
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from aggan.config import build_config, parse_assignment, read_config_file
from aggan.train import train

RECIPES: dict[str, dict[str, Any]] = {
    "default": {},  # warm-up 25%, switch 60%, paper attention kernels
    "official": read_config_file("official"),  # released code: no warm-up, switch 30%, 1x1
    "1x1-kernels": {"model": {"attention_kernels": "official-1x1"}},  # default schedule, 1x1
    "no-warmup": {"schedule": {"attention_warmup_epoch": 0}},  # default kernels, switch 60%
}
COLUMNS = ("mask_iou", "background_psnr_db", "truth_psnr_db", "identity_truth_psnr_db",
           "mask_inside", "collapsed")


def run_one(variant: str, recipe: str, seed: int, args: argparse.Namespace,
            run_dir: Path) -> dict[str, Any]:
    config = build_config(
        read_config_file("demo"), RECIPES[recipe],
        {"model": {"variant": variant},
         "data": {"size_px": args.size, "workers": args.workers},
         "train": {"seed": seed}, "schedule": {"steps": args.steps},
         "monitor": {"sample_every_steps": args.steps, "checkpoint_every_steps": args.steps},
         "runtime": {"device": args.device}},
        *(parse_assignment(assignment) for assignment in args.set))
    started = time.perf_counter()
    result = train(config, run_dir, progress=False, tensorboard=False)
    seconds = time.perf_counter() - started
    return {"variant": variant, "recipe": recipe, "seed": seed, "set": args.set,
            "steps": args.steps,
            "size_px": args.size, "seconds": round(seconds, 1), "metrics": result.metrics}


def format_table(rows: list[dict[str, Any]]) -> str:
    header = (f"{'variant':<15}{'recipe':<12}{'seed':>5}{'dir':>5}{'IoU':>7}{'bg dB':>8}"
              f"{'truth dB':>10}{'ident dB':>10}{'m_in':>7}{'collapsed':>11}{'min':>6}")
    lines = [header, "-" * len(header)]
    for row in rows:
        for direction, m in row["metrics"].items():
            lines.append(
                f"{row['variant']:<15}{row['recipe']:<12}{row['seed']:>5}{direction:>5}"
                f"{m['mask_iou']:>7.3f}{m['background_psnr_db']:>8.2f}{m['truth_psnr_db']:>10.2f}"
                f"{m['identity_truth_psnr_db']:>10.2f}{m['mask_inside']:>7.3f}"
                f"{m['collapsed']!s:>11}{row['seconds'] / 60:>6.1f}")
    return "\n".join(lines)


def check_targets(rows: list[dict[str, Any]]) -> dict[str, bool]:
    """The issue's targets, on every seed of the default recipe."""
    def default(variant: str) -> list[dict[str, Any]]:
        return [m for r in rows if r["variant"] == variant and r["recipe"] == "default"
                for m in r["metrics"].values()]

    checks = {}
    if default("aggan"):
        checks["aggan mask IoU >= 0.85"] = all(m["mask_iou"] >= 0.85 for m in default("aggan"))
        checks["aggan background PSNR >= 34 dB"] = all(
            m["background_psnr_db"] >= 34 for m in default("aggan"))
        checks["aggan not collapsed"] = not any(m["collapsed"] for m in default("aggan"))
    if default("aggan") and default("cyclegan"):
        worst_cyclegan = max(m["background_psnr_db"] for m in default("cyclegan"))
        best_aggan = min(m["background_psnr_db"] for m in default("aggan"))
        checks["cyclegan background PSNR >= 5 dB below aggan"] = worst_cyclegan <= best_aggan - 5
    return checks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", nargs="+", default=["aggan", "no-attention-d", "cyclegan"])
    parser.add_argument("--recipes", nargs="+", default=["default"], choices=sorted(RECIPES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                        help="config override for every run, e.g. runtime.precision=bf16")
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).parent / "results" / "synthetic_quality" /
                        "synthetic_quality.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")

    rows = []
    with tempfile.TemporaryDirectory(prefix="aggan-bench-") as scratch:
        for recipe in args.recipes:
            for variant in args.variants:
                for seed in args.seeds:
                    row = run_one(variant, recipe, seed, args,
                                  Path(scratch) / f"{variant}-{recipe}-{seed}")
                    rows.append(row)
                    print("\n".join(format_table([row]).splitlines()[2:]), flush=True)
    print()
    print(format_table(rows))
    checks = check_targets(rows)
    for name, passed in checks.items():
        print(f"{'PASS' if passed else 'FAIL'}  {name}")
    result = {"benchmark": "synthetic_quality", "torch": torch.__version__,
              "threads": torch.get_num_threads(), "runs": rows, "targets": checks}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
