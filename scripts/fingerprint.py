"""Fingerprints what a user gets from a checkout, to show that a change of structure changed no
behaviour: a 20-step CPU run's checkpoint (every tensor and value), a translation of a test photo
by that run and by the shipped model, and an exported model folder.

    python scripts/fingerprint.py --repo . --work /tmp/fp --json before.json   # on the old commit
    python scripts/fingerprint.py --repo . --work /tmp/fp --json after.json    # on the new one
    python scripts/fingerprint.py --compare before.json after.json

Everything runs through the ``aggan`` command of ``--repo`` (its ``src/`` on PYTHONPATH), so the
script depends on no internal module. ``--work`` must be the same path for both, since a run
records its data folder. Exit status 1 when ``--compare`` finds a difference.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

PHOTO = Path("testA/n02381460_1000.jpg")  # a test horse of horse2zebra
# Recorded for the run, not behaviour: the command line, versions and the run's own paths.
VOLATILE = ("argv", "aggan_version", "versions", "created")


def _flatten(value: Any, prefix: str, out: dict[str, str]) -> None:
    if isinstance(value, torch.Tensor):
        data = value.detach().cpu().reshape(-1).contiguous()
        digest = hashlib.sha256(data.view(torch.uint8).numpy().tobytes()
                                if data.numel() else b"").hexdigest()
        out[prefix] = f"{data.dtype} {tuple(data.shape)} {digest[:16]}"
    elif isinstance(value, dict):
        for key in sorted(value, key=str):
            if str(key) not in VOLATILE:
                _flatten(value[key], f"{prefix}.{key}" if prefix else str(key), out)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _flatten(item, f"{prefix}[{index}]", out)
    else:
        out[prefix] = repr(value)


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _aggan(repo: Path, *args: str) -> None:
    env = dict(os.environ, PYTHONPATH=str(repo / "src"), CUDA_VISIBLE_DEVICES="")
    subprocess.run([sys.executable, "-m", "aggan", *args], cwd=repo, env=env, check=True,
                   stdout=subprocess.DEVNULL)


def fingerprint(repo: Path, work: Path, photos: Path) -> dict[str, str]:
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    data, run = work / "data", work / "run"
    _aggan(repo, "data", "synthetic", "--out", str(data), "--size", "32", "--train", "24",
           "--test", "4")
    _aggan(repo, "train", "--data", str(data), "--out", str(run), "--size", "32", "--steps", "20",
           "--device", "cpu", "--seed", "0", "--precision", "fp32", "--no-progress",
           # The layout of aggan 0.1.0 (one train section), which later versions still read, so
           # that the command runs on commits from before the config's sections and after.
           "--set", "train.sample_every_steps=10", "--set", "train.checkpoint_every_steps=10",
           "--set", "train.placement_images=0")
    result: dict[str, str] = {}
    checkpoint = torch.load(run / "checkpoints" / "latest.pt", map_location="cpu",
                            weights_only=True)
    _flatten(checkpoint, "checkpoint", result)
    for model, name in ((str(run), "run"), ("horse2zebra-128", "shipped")):
        out = work / f"translated_{name}"
        _aggan(repo, "translate", "--model", model, "--input", str(photos / PHOTO),
               "--out", str(out), "--direction", "a2b", "--device", "cpu")
        for file in sorted(out.rglob("*.png")):
            result[f"translate_{name}/{file.relative_to(out)}"] = _file_digest(file)
    folder = work / "model"
    _aggan(repo, "export-weights", "--checkpoint", str(run), "--out", str(folder))
    _flatten(load_file(str(folder / "model.safetensors")), "model_folder.weights", result)
    _flatten(json.loads((folder / "config.json").read_text()), "model_folder.config", result)
    return result


def _section_moves(before: dict[str, str], after: dict[str, str]) -> dict[str, str]:
    """Config fields that moved to another section between the two (``...config.train.tau`` ->
    ``...config.schedule.tau``: the same prefix and field, in no other section of either side):
    the key in ``before`` -> its key in ``after``. Whether their values match is compared."""
    moves = {}
    for key in before.keys() - after.keys():
        prefix, _, rest = key.rpartition(".config.")
        _, _, name = rest.partition(".")
        if not prefix or not name or "." in name:
            continue
        found = [other for other in after.keys() - before.keys()
                 if other.startswith(f"{prefix}.config.") and other.endswith(f".{name}")
                 and other.count(".") == key.count(".")]
        if len(found) == 1:
            moves[key] = found[0]
    return moves


def compare(before: dict[str, str], after: dict[str, str]) -> int:
    moves = _section_moves(before, after)
    before = {moves.get(key, key): value for key, value in before.items()}
    differing = sorted(key for key in before.keys() | after.keys()
                       if before.get(key) != after.get(key))
    for key in differing:
        print(f"differs: {key}: {before.get(key)} -> {after.get(key)}")
    print(f"{len(before)} entries before, {len(after)} after, {len(moves)} config fields moved "
          f"section, {len(differing)} differ")
    return 1 if differing else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", type=Path, default=Path("."))
    parser.add_argument("--work", type=Path, default=Path("/tmp/aggan-fingerprint"))
    parser.add_argument("--photos", type=Path, default=Path("../shared/data/horse2zebra"))
    parser.add_argument("--json", type=Path, help="write the fingerprint here")
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("BEFORE", "AFTER"))
    args = parser.parse_args()
    if args.compare:
        return compare(*(json.loads(path.read_text()) for path in args.compare))
    result = fingerprint(args.repo.resolve(), args.work.resolve(), args.photos.resolve())
    text = json.dumps(result, indent=1, sort_keys=True) + "\n"
    if args.json:
        args.json.write_text(text)
    print(f"{len(result)} entries")
    return 0


if __name__ == "__main__":
    sys.exit(main())
