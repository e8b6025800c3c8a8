"""Resumes a run trained with the fixed switch as if it had used best-placement.

The option changes nothing before the switch: it only keeps, at each sample step, the attention
networks whose direction's masks were best placed so far, and the switch restores them. So a
run trained without it can be continued as if with it: take its checkpoint at a step ``--at``
before the switch, write in the snapshots the option would hold there, and resume; the resumed
run offers the later sample steps itself and freezes the best at the switch, as a run trained
with the option from step 0 would (training on the CPU is deterministic: the resumed seed-2 run
of issue #27 logged the same placement as the original, to the digit). Since the original run
logged the placement of every sample step up to the switch, the step each direction will
freeze is known here: a step after ``--at`` the resumed run finds itself; a step up to ``--at``
must have been checkpointed, and its attention network is written in. Where it was not, this
says so, and only a run trained with the option from the start can answer.

Writes ``OUT/checkpoints/latest.pt`` and ``OUT/config.json``, then prints what the switch will
freeze and the command that resumes the run.

    python benchmarks/best_placement_resume.py RUN --at 4000 --out RUN_BEST
    aggan train --out RUN_BEST --resume --set schedule.switch_attention=best-placement
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from aggan.checkpoint import (
    LATEST,
    checkpoint_dir,
    inference_weights,
    load_checkpoint,
    save_checkpoint,
    saved_steps,
    step_file,
)
from aggan.domains import DIRECTIONS, source_domain
from aggan.errors import AgganError
from mask_trajectory import logged_placement


def best_logged_steps(run_dir: Path, warmup_end: int, switch: int
                      ) -> dict[str, tuple[int, float]]:
    """Per direction, the sample step the option would freeze: the highest logged placement
    after the warm-up and up to the switch (the switch's own sample step is offered too; the
    first such step on a tie), with that placement."""
    logged = [row for row in logged_placement(run_dir) if warmup_end < row["step"] <= switch]
    if not logged:
        raise AgganError(f"{run_dir}: no placement logged between the warm-up's end "
                         f"({warmup_end}) and the switch ({switch}) (monitor.placement_images)")
    best = {}
    for direction in DIRECTIONS:
        row = max(logged, key=lambda row: (row[f"nats_{direction}"], -row["step"]))
        best[direction] = (int(row["step"]), float(row[f"nats_{direction}"]))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a run trained with switch_attention=last")
    parser.add_argument("--at", type=int, required=True,
                        help="the saved step to resume from, before the switch")
    parser.add_argument("--out", type=Path, required=True, help="the new run folder")
    args = parser.parse_args()

    config = json.loads((args.run / "config.json").read_text())
    schedule = config["schedule"]
    if args.at not in saved_steps(args.run) or args.at >= schedule["switch_step"]:
        raise AgganError(f"--at {args.at}: choose a saved step before the switch "
                         f"({schedule['switch_step']}); saved: {saved_steps(args.run)}")
    if args.out.exists():
        raise AgganError(f"--out {args.out} exists; choose a new folder")
    best = best_logged_steps(args.run, schedule["attention_warmup_steps"],
                             schedule["switch_step"])
    written = {d: (step, nats) for d, (step, nats) in best.items() if step <= args.at}
    missing = {d: step for d, (step, _) in written.items() if step not in saved_steps(args.run)}
    if missing:
        raise AgganError(f"{args.run}: the best placement before the switch was logged at "
                         f"{missing}, which has no checkpoint: only a run trained with "
                         "schedule.switch_attention=best-placement can answer")

    state = load_checkpoint(checkpoint_dir(args.run) / step_file(args.at))
    state["best_attention"], state["best_placement"] = {}, {}
    for direction, (step, nats) in written.items():
        domain = source_domain(direction)
        weights = inference_weights(load_checkpoint(checkpoint_dir(args.run) / step_file(step)))
        prefix = f"attention.{domain}."
        state["best_attention"][domain] = {key.removeprefix(prefix): value
                                           for key, value in weights.items()
                                           if key.startswith(prefix)}
        state["best_placement"][direction] = {"step": step, "nats": nats}
    checkpoint_dir(args.out).mkdir(parents=True)
    shutil.copy(args.run / "config.json", args.out / "config.json")
    save_checkpoint(state, checkpoint_dir(args.out) / LATEST)
    for direction, (step, nats) in best.items():
        how = "written in" if direction in written else "found by the resumed run"
        print(f"{direction}: the switch will freeze attention {source_domain(direction).upper()}"
              f" as at step {step} ({nats:+.3f} nats logged; {how})")
    print(f"resume with: aggan train --out {args.out} --resume "
          "--set schedule.switch_attention=best-placement")


if __name__ == "__main__":
    try:
        main()
    except AgganError as error:
        raise SystemExit(f"error: {error}") from None
