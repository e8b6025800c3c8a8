"""The attention's mask over a run: does it stay alive after the warm-up, or collapse?

Reads the run folders' ``stats.jsonl`` (the mean mask of each logged training batch) and
``metrics.jsonl`` (the mask placement at the sample steps after the warm-up,
``monitor.placement_images``) and, with ``--test-images N``, measures every saved checkpoint on N
test images per domain (mean mask and the share of pixels above 0.5); with
``--placement-images N`` every checkpoint's mask placement on N images per direction, as the
training log measures it (so runs logged with another version of the measure, or none, can be
compared). Prints a table per run and a final JSON line; ``--json`` writes the results.

The criterion of issue #11: after the warm-up, the logged mean mask stays between 0.05 and 0.95
at every log step, in both directions. The criterion of issue #27 ("placed"): from the switch on
(after it with best-placement), the logged placement is above chance (0 nats) at every sample
step, in both directions.

    python benchmarks/mask_trajectory.py RUN [RUN ...] --test-images 50 --json results/x.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

import torch

from aggan.checkpoint import saved_steps, step_file
from aggan.data import fixed_samples
from aggan.domains import DIRECTIONS, source_domain
from aggan.loading import load_model
from aggan.metrics.monitor import PlacementMonitor
from report import finish, markdown_table, placement_cell

ALIVE = (0.05, 0.95)  # the mean mask after the warm-up must stay inside this range


def logged_masks(run_dir: Path) -> tuple[int, list[dict[str, float]]]:
    """The warm-up's end and the logged mean masks (step, a, b) from there on."""
    config = json.loads((run_dir / "config.json").read_text())
    warmup_end = config["schedule"]["attention_warmup_steps"]
    rows = []
    for line in (run_dir / "stats.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record["step"] > warmup_end and "mask/mean_a" in record:
            rows.append({"step": record["step"], "a": record["mask/mean_a"],
                         "b": record["mask/mean_b"]})
    return warmup_end, rows


def logged_placement(run_dir: Path) -> list[dict[str, float]]:
    """The placement logged at the sample steps (``metrics.jsonl``), both directions."""
    path = run_dir / "metrics.jsonl"
    rows = []
    for line in path.read_text().splitlines() if path.is_file() else []:
        record = json.loads(line)
        if "placement/nats_a2b" in record:
            rows.append({"step": record["step"], **{
                f"{key}_{d}": record.get(f"placement/{key}_{d}", float("nan"))
                for d in DIRECTIONS for key in ("nats", "nats_stderr", "hit_rate")}})
    return rows


@torch.no_grad()
def checkpoint_masks(run_dir: Path, images: int, placement_images: int
                     ) -> list[dict[str, float]]:
    """Mean mask and area above 0.5 of every ``checkpoints/step-N.pt`` on the test images, and
    (``placement_images``) the placement of its masks after the warm-up."""
    rows = []
    monitor = None
    steps = saved_steps(run_dir)
    for step in steps:
        model = load_model(run_dir / "checkpoints" / step_file(step), torch.device("cpu"))
        translator, config, use_attention = model.translator, model.config, model.use_attention
        row: dict[str, float] = {"step": step}
        for direction in DIRECTIONS if images else ():
            batch = fixed_samples(config.data, source_domain(direction), images)
            _, mask = translator(batch, direction, use_attention)
            row[f"mean_{direction}"] = float(mask.mean())
            row[f"area_{direction}"] = float((mask > 0.5).float().mean())
        if placement_images and use_attention:
            if monitor is None:
                monitor = PlacementMonitor(dataclasses.replace(config, monitor=dataclasses.replace(
                    config.monitor, placement_images=placement_images)), torch.device("cpu"))
            row |= {key.removeprefix("placement/"): value
                    for key, value in monitor.measure(translator).items()}
        rows.append(row)
    return rows


def summarize(run_dir: Path, test_images: int, placement_images: int) -> dict[str, Any]:
    warmup_end, logged = logged_masks(run_dir)
    values = [row[domain] for row in logged for domain in ("a", "b")]
    alive = bool(values) and all(ALIVE[0] <= value <= ALIVE[1] for value in values)
    placement = logged_placement(run_dir)
    written = json.loads((run_dir / "config.json").read_text())
    switch = written["schedule"]["switch_step"]
    # The frozen masks: from the switch's own sample on where the switch freezes the attention
    # it finds; with best-placement that sample is of the attention before it is restored.
    restored = written["config"]["schedule"].get("switch_attention") == "best-placement"
    first_frozen = None if switch is None else switch + 1 if restored else switch
    after_switch = [row for row in placement
                    if first_frozen is not None and row["step"] >= first_frozen]
    placed = bool(after_switch) and all(row[f"nats_{d}"] > 0 for row in after_switch
                                        for d in DIRECTIONS)
    return {"run": run_dir.name, "warmup_end": warmup_end, "switch": switch, "logged": logged,
            "min_after_warmup": min(values, default=float("nan")),
            "max_after_warmup": max(values, default=float("nan")), "alive": alive,
            "placement": placement, "placed": placed,
            "checkpoints": (checkpoint_masks(run_dir, test_images, placement_images)
                            if test_images or placement_images else [])}


def _placement_row(row: dict[str, Any]) -> tuple[object, ...]:
    return (row["step"], *(placement_cell(row[f"nats_{d}"], row[f"nats_stderr_{d}"],
                                          row[f"hit_rate_{d}"]) for d in DIRECTIONS))


def print_report(result: dict[str, Any], every: int, placement_images: int) -> None:
    """One run's tables: the logged mean masks (every ``every`` steps), the logged placement, and
    what was measured on the checkpoints."""
    print(f"\n{result['run']}: warm-up until {result['warmup_end']}, mean mask after it "
          f"{result['min_after_warmup']:.3f} to {result['max_after_warmup']:.3f} "
          f"({'alive' if result['alive'] else 'COLLAPSED or saturated'})")
    print(markdown_table(("step", "mask a (batch)", "mask b (batch)"), (
        (row["step"], f"{row['a']:.3f}", f"{row['b']:.3f}")
        for row in result["logged"] if row["step"] % every == 0)))
    if result["placement"]:
        print(f"mask placement (nats, +- standard error, share above chance); switch at "
              f"{result['switch']}: {'placed' if result['placed'] else 'NOT placed'} on the "
              "animals from the switch on")
        print(markdown_table(("step", "a2b", "b2a"), map(_placement_row, result["placement"])))
    checkpoints = result.get("checkpoints", [])
    if checkpoints and "mean_a2b" in checkpoints[0]:
        print(markdown_table(
            ("checkpoint", "test mean a2b", "area>0.5 a2b", "test mean b2a", "area>0.5 b2a"),
            ((row["step"], *(f"{row[key]:.3f}" for key in
                             ("mean_a2b", "area_a2b", "mean_b2a", "area_b2a")))
             for row in checkpoints)))
    if placement_images:
        print(markdown_table(
            ("checkpoint", f"placement a2b ({placement_images} images)", "placement b2a"),
            (_placement_row(row) for row in checkpoints if "nats_a2b" in row)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--test-images", type=int, default=0,
                        help="measure each checkpoint on this many test images per domain")
    parser.add_argument("--placement-images", type=int, default=0,
                        help="measure each checkpoint's mask placement on this many test images "
                        "per direction")
    parser.add_argument("--every", type=int, default=100, help="print every N steps")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    for run in args.runs:
        if not (run / "stats.jsonl").is_file():
            parser.error(f"{run} holds no stats.jsonl (not a run folder, or not started)")
    results = [summarize(run, args.test_images, args.placement_images) for run in args.runs]
    for result in results:
        print_report(result, args.every, args.placement_images)
    finish(results, args.json, line=[{key: value for key, value in result.items()
                                      if key != "logged"} for result in results])


if __name__ == "__main__":
    main()
