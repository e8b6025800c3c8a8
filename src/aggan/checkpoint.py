"""The checkpoint format: what a file holds, writing it atomically, reading it back safely.

A checkpoint is one file that holds everything a resume or a translation needs, as a dict of
tensors and plain types only, so that loading with ``weights_only=True`` never runs code from
the file:

- ``format_version``, ``aggan_version``, ``config`` (the resolved RunConfig as a dict),
  ``schedule`` (its points in steps), ``step``, ``best_kid_x100``;
- ``translator`` (generators and attention networks), ``discriminators``;
- with ``train.translator_ema``: ``translator_ema`` (the moving average, what inference uses)
  and ``translator_ema_updates``;
- with ``schedule.switch_attention=best-placement``, until the switch: ``best_attention`` (each
  attention network, keyed by its domain, at the sample step where its direction's masks were
  best placed) and ``best_placement`` (that step and placement, keyed by direction);
- ``optimizer_generators``, ``optimizer_discriminators``, ``scaler_generators``,
  ``scaler_discriminators`` (loss scaling, used in fp16 only);
- ``pools``: every rank's history pools with their generators' states, keyed by rank.

Files are written to a temp file and renamed, so ``latest.pt`` is always a complete checkpoint.
"""

from __future__ import annotations

import dataclasses
import math
import pickle
import re
import shutil
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from aggan import distributed
from aggan.config import RunConfig, build_saved_config, to_dict
from aggan.errors import AgganError
from aggan.images import atomic_write
from aggan.schedule import Schedule, schedule_dict
from aggan.train_state import TrainState
from aggan.version import __version__

FORMAT_VERSION = 3
LATEST = "latest.pt"
BEST = "best.pt"  # the checkpoint with the lowest KID during training
REQUIRED_KEYS = ("format_version", "config", "schedule", "step", "translator")

# --- Writing ---------------------------------------------------------------------------------


def checkpoint_dir(run_dir: Path) -> Path:
    return run_dir / "checkpoints"


def checkpoint_dict(state: TrainState, config: RunConfig, schedule: Schedule,
                    pools: list[dict[str, Any]]) -> dict[str, Any]:
    """The checkpoint; ``pools`` holds every rank's pools, in rank order."""
    average = {} if state.translator_ema is None else {
        "translator_ema": state.translator_ema.module.state_dict(),
        "translator_ema_updates": int(state.translator_ema.n_averaged)}
    best = {} if not state.best_attention else {
        "best_attention": state.best_attention, "best_placement": state.best_placement}
    return average | best | {
        "best_kid_x100": state.best_kid_x100,
        "format_version": FORMAT_VERSION,
        "aggan_version": __version__,
        "config": to_dict(config),
        "schedule": schedule_dict(schedule),
        "step": state.step,
        "translator": state.translator.state_dict(),
        "discriminators": state.discriminators.state_dict(),
        "optimizer_generators": state.optimizer_generators.state_dict(),
        "optimizer_discriminators": state.optimizer_discriminators.state_dict(),
        "pools": {str(rank): rank_pools for rank, rank_pools in enumerate(pools)},
        "scaler_generators": state.scaler_generators.state_dict(),
        "scaler_discriminators": state.scaler_discriminators.state_dict(),
    }


def save_checkpoint(checkpoint: dict[str, Any], path: Path) -> None:
    """Writes ``checkpoint`` to ``path`` atomically; a failure (a full disk) leaves the previous
    file as it was and no temp file."""
    try:
        atomic_write(path, lambda temp: torch.save(checkpoint, temp))
    except (OSError, RuntimeError) as error:
        # torch.save reports a full disk as a RuntimeError about stream positions.
        free_mb = shutil.disk_usage(path.parent).free / 1e6
        reason = error.strerror if isinstance(error, OSError) and error.strerror else "write failed"
        raise AgganError(f"cannot write checkpoint {path} ({reason}; {free_mb:.0f} MB free on "
                         "its disk); nothing was replaced: the checkpoints saved before are "
                         "intact") from None


def save_training_checkpoint(state: TrainState, config: RunConfig, schedule: Schedule,
                             run_dir: Path, names: Sequence[str],
                             context: distributed.Context) -> None:
    """Writes the state as ``checkpoints/<name>`` for each name (``step-NNNNNNN.pt``,
    ``latest.pt``, ``best.pt``), each complete. A collective: every rank hands over its pools
    and rank 0 writes."""
    pools = distributed.gather(context, {d: pool.state_dict() for d, pool in state.pools.items()})
    if context.is_main:
        checkpoint = checkpoint_dict(state, config, schedule, pools)
        for name in names:
            save_checkpoint(checkpoint, checkpoint_dir(run_dir) / name)


def step_file(step: int) -> str:
    return f"step-{step:07d}.pt"


def saved_steps(run_dir: Path) -> list[int]:
    """The steps of the ``step_file`` checkpoints a run saved, in order."""
    return sorted(int(match.group(1)) for path in checkpoint_dir(run_dir).glob("step-*.pt")
                  if (match := re.fullmatch(r"step-(\d+)\.pt", path.name)))


# --- Reading ---------------------------------------------------------------------------------


def resolve_checkpoint(path: Path) -> Path:
    """A run folder means its latest checkpoint; a file means itself."""
    if path.is_dir():
        latest = checkpoint_dir(path) / LATEST
        if not latest.is_file():
            raise AgganError(f"--checkpoint: {path} holds no checkpoints/{LATEST}")
        return latest
    if not path.is_file():
        raise AgganError(f"--checkpoint: {path} does not exist")
    return path


UNREADABLE = (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, OSError,
              ValueError, KeyError)


def _read(path: Path, mmap: bool = False) -> Any:
    return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)


def _intact_alternative(path: Path) -> str:
    """For a broken ``latest.pt``: the newest ``step-*.pt`` beside it that loads, as a hint."""
    if path.name != LATEST:
        return ""
    for candidate in sorted(path.parent.glob("step-*.pt"), reverse=True)[:3]:
        try:
            step = _read(candidate)["step"]
        except (*UNREADABLE, TypeError):
            continue
        return (f"; {candidate.name} (step {step}) is intact: copy it over {LATEST} to resume "
                "from it")
    return ""


def load_checkpoint(path: Path, *, mmap: bool = False) -> dict[str, Any]:
    """Loads and checks a checkpoint on the CPU; every failure names the file. ``mmap``: the
    tensors are mapped from the file, not read, until used (for a caller that wants the config
    and step only)."""
    try:
        state = _read(path, mmap)
    except FileNotFoundError:
        raise AgganError(f"checkpoint {path} does not exist") from None
    except UNREADABLE as error:
        text = str(error).splitlines()[0] if str(error) else type(error).__name__
        # PyTorch's own advice here is to load with weights_only=False: never follow it.
        reason = "not a PyTorch file" if "weights_only" in str(error) else text[:200]
        raise AgganError(f"checkpoint {path} is unreadable (truncated, corrupt or not an aggan "
                         f"checkpoint: {reason}){_intact_alternative(path)}") from None
    if not isinstance(state, dict) or any(key not in state for key in REQUIRED_KEYS):
        raise AgganError(f"checkpoint {path} is not an aggan checkpoint")
    if state["format_version"] != FORMAT_VERSION:
        raise AgganError(f"checkpoint {path} has format version {state['format_version']}; this "
                         f"aggan reads version {FORMAT_VERSION}")
    return state


def config_of(state: dict[str, Any], path: Path) -> RunConfig:
    try:
        return build_saved_config(state["config"])
    except AgganError as error:
        raise AgganError(f"checkpoint {path} has an invalid config: {error}") from None


def schedule_of(state: dict[str, Any]) -> Schedule:
    return Schedule(**state["schedule"])


def load_state(module: torch.nn.Module, state: dict[str, Any], path: Path, what: str) -> None:
    """``module.load_state_dict`` with a one-line error naming the file."""
    try:
        module.load_state_dict(state)
    except RuntimeError as error:
        first = str(error).splitlines()[0]
        raise AgganError(f"checkpoint {path}: its {what} do not fit this model ({first})") from None


def check_resumable(saved_config: RunConfig, config: RunConfig, path: Path) -> None:
    """Architecture, image size and the held-out validation images are fixed for the life of a
    run."""
    for section, field_names in (("model", None), ("data", ("size_px", "validation_images"))):
        saved_section, section_now = getattr(saved_config, section), getattr(config, section)
        for field in dataclasses.fields(saved_section):
            if field_names is not None and field.name not in field_names:
                continue
            was, now = getattr(saved_section, field.name), getattr(section_now, field.name)
            if was != now:
                raise AgganError(f"--resume: {path} was trained with {section}.{field.name}="
                                 f"{was!r}, not {now!r}")


def restore_state(state: TrainState, saved: dict[str, Any], path: Path,
                  device: torch.device, rank: int = 0) -> None:
    """Restores a checkpoint; this rank's pools where the checkpoint has them (a run resumed with
    more processes than it was saved from starts the extra ranks' pools empty)."""
    load_state(state.translator, saved["translator"], path, "networks")
    load_state(state.discriminators, saved["discriminators"], path, "discriminators")
    if state.translator_ema is not None and "translator_ema" in saved:
        load_state(state.translator_ema.module, saved["translator_ema"], path,
                   "averaged networks")
        state.translator_ema.n_averaged.fill_(int(saved["translator_ema_updates"]))
    # (A run that turns the average on at a resume starts it from the weights it resumes.)
    try:
        state.optimizer_generators.load_state_dict(saved["optimizer_generators"])
        state.optimizer_discriminators.load_state_dict(saved["optimizer_discriminators"])
        for direction, pool in state.pools.items():
            if str(rank) in saved["pools"]:
                pool.load_state_dict(saved["pools"][str(rank)][direction], device)
        # Empty unless the run trained in fp16; a precision change starts a fresh scale.
        for name in ("scaler_generators", "scaler_discriminators"):
            if saved.get(name) and getattr(state, name).is_enabled():
                getattr(state, name).load_state_dict(saved[name])
        if "best_attention" in saved:
            state.best_attention = {domain: {key: value.to(device)
                                             for key, value in weights.items()}
                                    for domain, weights in saved["best_attention"].items()}
            state.best_placement = {direction: {"step": int(best["step"]),
                                                "nats": float(best["nats"])}
                                    for direction, best in saved["best_placement"].items()}
    except (KeyError, ValueError, RuntimeError, AttributeError) as error:
        raise AgganError(f"checkpoint {path}: its training state is incomplete ({error})") from None
    state.step = int(saved["step"])
    state.best_kid_x100 = float(saved.get("best_kid_x100", math.inf))


def inference_weights(state: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The translator weights a checkpoint translates with: the moving average where the run
    kept one (``train.translator_ema``), else the trained weights."""
    return state.get("translator_ema") or state["translator"]
