"""Kill -9 soak: a short synthetic run killed again and again, resumed each time, must end
with exactly the weights of a run that was never interrupted.

Each kill lands at one of three moments, in turn: at a random time while steps run, while a
checkpoint is being written (its temp file has appeared) or while sample grids are written.
After each kill the script checks every file in the run folder (checkpoints load, PNGs decode,
JSON parses; temp files and a half-written last stats row are counted: the next start removes
them), how many steps were lost (last step logged minus the step of ``latest.pt``), and then
resumes. At the end the final checkpoint is compared tensor by tensor with the reference run.
Prints a table and a JSON line; ``--json`` writes the results.

    python benchmarks/kill_soak.py --kills 24 --json benchmarks/results/kill_soak/kill_soak.json
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import torch
from PIL import Image

from aggan.checkpoint import load_checkpoint
from report import finish, markdown_table
from speed import cpu_name  # benchmarks/speed.py

MOMENTS = ("random", "checkpoint", "samples")
FLAGS = ["--data", "synthetic", "--size", "32", "--workers", "0", "--device", "cpu",
         "--no-progress", "--seed", "0",
         "--set", "model.generator_width=8", "--set", "model.generator_blocks=1",
         "--set", "model.attention_width=8", "--set", "model.discriminator_width=8",
         "--set", "data.synthetic.train_images=40", "--set", "data.synthetic.test_images=4",
         "--set", "monitor.log_every_steps=1", "--set", "monitor.sample_every_steps=7",
         "--set", "monitor.checkpoint_every_steps=10"]


def train_command(run_dir: Path, steps: int, resume: bool) -> list[str]:
    return [sys.executable, "-m", "aggan", "train", "--out", str(run_dir), "--steps", str(steps),
            *FLAGS, *(["--resume"] if resume else [])]


def logged_steps(run_dir: Path) -> tuple[int, bool]:
    """The last step in stats.jsonl, and whether its last row was cut short."""
    path = run_dir / "stats.jsonl"
    if not path.exists():
        return 0, False
    last, partial = 0, False
    for line in path.read_text().splitlines():
        try:
            last = max(last, json.loads(line)["step"])
        except json.JSONDecodeError:
            partial = True
    return last, partial


def check_files(run_dir: Path) -> dict[str, int]:
    """Every finished file readable; returns counts of what was checked and left over."""
    counts = {"checkpoints": 0, "pngs": 0, "json": 0, "temp_files": 0, "corrupt": 0}
    for path in run_dir.rglob("*"):
        if not path.is_file() or path.name == ".lock" or "tensorboard" in path.parts:
            continue
        if ".tmp" in path.name:
            counts["temp_files"] += 1
            continue
        try:
            if path.suffix == ".pt":
                load_checkpoint(path)
                counts["checkpoints"] += 1
            elif path.suffix == ".png":
                with Image.open(path) as image:
                    image.load()
                counts["pngs"] += 1
            elif path.suffix == ".json":
                json.loads(path.read_text())
                counts["json"] += 1
        except Exception as error:  # any failure to read is what the soak looks for
            print(f"corrupt: {path}: {error}", file=sys.stderr)
            counts["corrupt"] += 1
    return counts


def wait_for(condition: Any, process: subprocess.Popen, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and process.poll() is None:
        if condition():
            return True
        time.sleep(0.0005)
    return False


def kill_once(run_dir: Path, steps: int, moment: str, rng: random.Random) -> dict[str, Any]:
    resume = (run_dir / "checkpoints" / "latest.pt").exists()
    start_step = logged_steps(run_dir)[0]
    process = subprocess.Popen(train_command(run_dir, steps, resume), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    # Training has begun (a resume worked) once a step past the resumed one is logged.
    progressed = wait_for(lambda: logged_steps(run_dir)[0] > start_step, process, 120)
    folder = {"checkpoint": run_dir / "checkpoints", "samples": run_dir / "samples"}.get(moment)
    if folder is None:
        time.sleep(rng.uniform(0.0, 1.5))
        hit = process.poll() is None
    else:
        hit = wait_for(lambda: any(folder.glob(".*.tmp*")), process, 30)
    if process.poll() is not None:  # the run finished (or failed) before the kill
        _, err = process.communicate()
        return {"moment": moment, "killed": False, "resumed": resume, "progressed": progressed,
                "finished": process.returncode == 0, "error": err.strip()[-300:]}
    process.send_signal(signal.SIGKILL)
    process.communicate()
    reached, partial_row = logged_steps(run_dir)
    latest = run_dir / "checkpoints" / "latest.pt"
    saved = load_checkpoint(latest)["step"] if latest.exists() else 0
    return {"moment": moment, "killed": True, "resumed": resume, "progressed": progressed,
            "hit_moment": hit, "reached_step": reached,
            "saved_step": saved, "steps_lost": reached - saved, "partial_stats_row": partial_row,
            **check_files(run_dir)}


def final_tensors(run_dir: Path) -> dict[str, torch.Tensor]:
    saved = load_checkpoint(run_dir / "checkpoints" / "latest.pt")
    return {f"{part}.{name}": value for part in ("translator", "discriminators")
            for name, value in saved[part].items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=24)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with TemporaryDirectory() as temp:
        reference, soaked = Path(temp) / "reference", Path(temp) / "soaked"
        subprocess.run(train_command(reference, args.steps, False), check=True,
                       stdout=subprocess.DEVNULL)
        kills: list[dict[str, Any]] = []
        attempts = 0
        while sum(k["killed"] for k in kills) < args.kills and attempts < 3 * args.kills:
            attempts += 1
            kills.append(kill_once(soaked, args.steps, MOMENTS[attempts % len(MOMENTS)], rng))
            if kills[-1].get("finished"):
                break
        last_resume = subprocess.run(train_command(soaked, args.steps, True), capture_output=True,
                                     text=True)
        if last_resume.returncode != 0:
            sys.exit(f"the last resume failed: {last_resume.stderr.strip()[-500:]}")
        leftovers = check_files(soaked)
        expected, actual = final_tensors(reference), final_tensors(soaked)
        differences = [float((expected[k].float() - actual[k].float()).abs().max())
                       for k in expected]
    killed = [k for k in kills if k["killed"]]
    summary = {
        "cpu": cpu_name(), "torch": torch.__version__, "steps": args.steps,
        "checkpoint_every_steps": 10,
        "kills": len(killed),
        "kills_by_moment": {m: sum(k["moment"] == m and k["hit_moment"] for k in killed)
                            for m in MOMENTS},
        "resumes_tried": sum(k["resumed"] for k in kills) + 1,
        "resumes_that_worked": sum(k["resumed"] and k["progressed"] for k in kills) + 1,
        "steps_lost_max": max(k["steps_lost"] for k in killed),
        "corrupt_files": sum(k["corrupt"] for k in killed) + leftovers["corrupt"],
        "temp_files_seen_after_kills": sum(k["temp_files"] for k in killed),
        "temp_files_left_at_end": leftovers["temp_files"],
        "partial_stats_rows_after_kills": sum(k["partial_stats_row"] for k in killed),
        "final_weights_equal": all(d == 0.0 for d in differences),
        "final_weights_max_abs_difference": max(differences),
        "per_kill": kills,
    }
    print(f"CPU: {summary['cpu']}, torch {summary['torch']}, {args.steps} steps, checkpoint "
          "every 10")
    by = summary["kills_by_moment"]
    print(markdown_table(
        ("kills (random / checkpoint / samples)", "resumes ok / tried", "steps lost, max",
         "corrupt files", "temp files after kills / at end", "final weights equal"),
        [(f"{summary['kills']} ({by['random']} / {by['checkpoint']} / {by['samples']})",
          f"{summary['resumes_that_worked']} / {summary['resumes_tried']}",
          summary["steps_lost_max"], summary["corrupt_files"],
          f"{summary['temp_files_seen_after_kills']} / {summary['temp_files_left_at_end']}",
          f"{summary['final_weights_equal']} "
          f"(max diff {summary['final_weights_max_abs_difference']:.3g})")]))
    finish(summary, args.json, line={k: v for k, v in summary.items() if k != "per_kill"})


if __name__ == "__main__":
    main()
