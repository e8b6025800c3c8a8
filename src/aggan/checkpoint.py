"""Checkpoints: one file holds everything a resume or a translation needs.

Layout of the dict (tensors and plain types only, so loading with ``weights_only=True`` never runs
code from the file):

- ``format_version``, ``config`` (the resolved RunConfig as a dict), ``schedule``, ``step``;
- ``translator`` (generators and attention networks), ``discriminators``;
- ``optimizer_generators``, ``optimizer_discriminators``;
- ``pools`` (history pools with their generators' states).

Files are written to a temp file and renamed, so ``latest.pt`` is always a complete checkpoint.
"""

from __future__ import annotations

import dataclasses
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from aggan.config import RunConfig, from_dict
from aggan.errors import AgganError
from aggan.images import atomic_write
from aggan.networks import Translator
from aggan.schedule import Schedule

FORMAT_VERSION = 2
LATEST = "latest.pt"
REQUIRED_KEYS = ("format_version", "config", "schedule", "step", "translator")


def checkpoint_dir(run_dir: Path) -> Path:
    return run_dir / "checkpoints"


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


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    """Writes ``state`` to ``path`` atomically."""
    atomic_write(path, lambda temp: torch.save(state, temp))


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Loads and checks a checkpoint on the CPU; every failure names the file."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise AgganError(f"checkpoint {path} does not exist") from None
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, OSError,
            ValueError, KeyError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise AgganError(f"checkpoint {path} is unreadable (truncated, corrupt or not an aggan "
                         f"checkpoint): {reason[:200]}") from None
    if not isinstance(state, dict) or any(key not in state for key in REQUIRED_KEYS):
        raise AgganError(f"checkpoint {path} is not an aggan checkpoint")
    if state["format_version"] != FORMAT_VERSION:
        raise AgganError(f"checkpoint {path} has format version {state['format_version']}; this "
                         f"aggan reads version {FORMAT_VERSION}")
    return state


def config_of(state: dict[str, Any], path: Path) -> RunConfig:
    try:
        return from_dict(RunConfig, state["config"])
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


def load_translator(path: Path, device: torch.device) -> tuple[Translator, RunConfig, bool]:
    """The translator of a checkpoint (file or run folder), ready for inference.

    Returns:
        The translator in eval mode on ``device`` (channels-last), the run's config, and
        whether the model uses its attention at the saved step (False for ``cyclegan`` and
        inside the warm-up).
    """
    path = resolve_checkpoint(path)
    state = load_checkpoint(path)
    config = config_of(state, path)
    translator = Translator(config.model)
    load_state(translator, state["translator"], path, "networks")
    use_attention = schedule_of(state).phase(state["step"]).use_attention
    # Channels-last: 1.2x (256 px) to 1.3x (1024 x 768) the images/s of NCHW on CPU
    # (benchmarks/README.md).
    return (translator.to(device, memory_format=torch.channels_last).eval(), config,
            use_attention)


def schedule_dict(schedule: Schedule) -> dict[str, Any]:
    return dataclasses.asdict(schedule)
