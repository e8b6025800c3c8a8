"""Which run and which checkpoint to ship, chosen on the training photos the runs held out.

Issue #27, part 3: the seed and the checkpoint are chosen on a validation split held out of the
*training* photos (``data.validation_images``), never on the test photos. For every run folder
given and each of its checkpoints from the switch on (``--steps`` picks others), this scores the
checkpoint as ``aggan evaluate --split validation --baseline identity`` does: KID x100 against
the held-out photos of the target domain, the identity's KID on the same photos, and the mask
placement on the held-out photos (the probe never sees them).

The choice: among the checkpoints whose masks are placed in both directions (placement more
than two standard errors above chance), the lowest mean over the two directions of KID divided
by the identity's KID (a checkpoint that does nothing scores 1). Prints a table and the choice,
then a final JSON line; ``--json`` writes the results.

``--scored JSON`` takes the rows of an earlier result of this script instead of scoring those
checkpoints again (3 minutes each on two CPU cores), so a run added later costs only its own
checkpoints; the rows are keyed by run folder name and step, and the earlier result must have
scored the same data.

    python benchmarks/choose_checkpoint.py RUN_SEED0 RUN_SEED1 RUN_SEED2 \\
        --data ../shared/data/horse2zebra --json benchmarks/results/placement/choice.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

from aggan.checkpoint import saved_steps, step_file
from aggan.config import read_json_object
from aggan.domains import DIRECTIONS
from aggan.errors import AgganError
from aggan.evaluate import evaluate_checkpoint
from aggan.metrics.fid_kid import default_cache_dir
from aggan.metrics.inception import InceptionFeatures
from report import finish, markdown_table, placement_cell

PLACED_STDERRS = 2.0  # placement must exceed this many standard errors above chance


def checkpoint_steps(run_dir: Path, steps: list[int] | None) -> list[int]:
    """The saved steps to compare: ``steps`` where given (each must be saved), else every saved
    step from the run's switch on (before it the attention still moves)."""
    saved = saved_steps(run_dir)
    if steps:
        missing = sorted(set(steps) - set(saved))
        if missing:
            raise AgganError(f"{run_dir}: no checkpoint for step {missing[0]} "
                             f"(saved: {', '.join(map(str, saved)) or 'none'})")
        return sorted(steps)
    # The resolved schedule the run wrote beside its config (the switch may be set in epochs).
    switch = json.loads((run_dir / "config.json").read_text())["schedule"]["switch_step"] or 0
    return [step for step in saved if step >= switch]


def checkpoint_scores(report: dict[str, Any]) -> dict[str, Any]:
    """What the choice reads from an evaluate report: per direction KID, the identity's KID,
    their ratio and the placement; whether the masks are placed in both directions; the mean
    KID ratio."""
    scores: dict[str, Any] = {}
    for direction in DIRECTIONS:
        metrics = report["directions"][direction]
        scores[direction] = {key: metrics[key] for key in (
            "kid_x100_mean", "kid_x100_std", "identity_kid_x100_mean", "placement_nats",
            "placement_nats_stderr", "placement_hit_rate", "mean_mask")}
        scores[direction]["kid_ratio"] = (metrics["kid_x100_mean"]
                                          / metrics["identity_kid_x100_mean"])
    scores["placed"] = all(
        scores[d]["placement_nats"] > PLACED_STDERRS * scores[d]["placement_nats_stderr"]
        for d in DIRECTIONS)
    scores["mean_kid_ratio"] = sum(scores[d]["kid_ratio"] for d in DIRECTIONS) / len(DIRECTIONS)
    return scores


def choose(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The placed row with the lowest mean KID ratio (None if no row is placed)."""
    placed = [row for row in rows if row["placed"]]
    return min(placed, key=lambda row: row["mean_kid_ratio"]) if placed else None


def scored_rows(path: Path | None) -> dict[tuple[str, int], dict[str, Any]]:
    """The rows of an earlier result of this script, by (run folder name, step)."""
    if path is None:
        return {}
    rows = read_json_object(path, "--scored").get("rows")
    if not isinstance(rows, list) or not all(
            isinstance(row, dict) and {"run", "step", "placed", "mean_kid_ratio"} <= row.keys()
            for row in rows):
        raise AgganError(f"--scored: {path} holds no rows of choose_checkpoint.py")
    return {(row["run"], row["step"]): row for row in rows}


def print_report(rows: list[dict[str, Any]], chosen: dict[str, Any] | None) -> None:
    header = ["run", "step"] + [f"{label} {d}" for d in DIRECTIONS
                                for label in ("KID x100 (identity)", "placement")]
    header += ["mean KID / identity", "placed"]
    table = []
    for row in rows:
        cells: list[object] = [row["run"], row["step"]]
        for d in DIRECTIONS:
            scores = row[d]
            # No +- here: with 100 held-out images per domain every KID subset is the whole
            # set, so the subsets' spread is 0 and says nothing of the noise.
            cells += [f"{scores['kid_x100_mean']:.2f} ({scores['identity_kid_x100_mean']:.2f})",
                      placement_cell(scores["placement_nats"], scores["placement_nats_stderr"],
                                     scores["placement_hit_rate"])]
        cells += [f"{row['mean_kid_ratio']:.3f}", "yes" if row["placed"] else "no"]
        table.append(cells)
    print(markdown_table(header, table))
    print(f"\nchosen: {chosen['run']} step {chosen['step']}" if chosen
          else "\nchosen: none (no checkpoint is placed in both directions)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (trained with "
                        "data.validation_images above 0)")
    parser.add_argument("--data", type=Path, help="the data folder (default: each run's)")
    parser.add_argument("--steps", type=int, nargs="+",
                        help="the saved steps to compare (default: every one from the switch on)")
    parser.add_argument("--scored", type=Path, help="an earlier --json of this script whose "
                        "rows are taken instead of scoring their checkpoints again")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    device = torch.device("cpu")
    inception = InceptionFeatures(device=device)
    earlier = scored_rows(args.scored)
    rows = []
    for run_dir in args.runs:
        for step in checkpoint_steps(run_dir, args.steps):
            if (run_dir.name, step) in earlier:
                rows.append(earlier[run_dir.name, step])
                continue
            report = evaluate_checkpoint(
                run_dir / "checkpoints" / step_file(step),
                str(args.data) if args.data else None, DIRECTIONS, out_dir=None, device=device,
                inception=inception, cache_dir=default_cache_dir(), identity_baseline=True,
                split="validation")
            rows.append({"run": run_dir.name, "step": step, **checkpoint_scores(report)})
    chosen = choose(rows)
    print_report(rows, chosen)
    finish({"rows": rows, "chosen": chosen, "criterion": (
        f"placement above {PLACED_STDERRS} standard errors in both directions, then the lowest "
        "mean KID / identity KID over the directions")}, args.json)


if __name__ == "__main__":
    try:
        main()
    except AgganError as error:
        raise SystemExit(f"error: {error}") from None
