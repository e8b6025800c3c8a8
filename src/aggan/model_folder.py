"""A trained model as a small, safe, self-describing folder, in the Hugging Face Hub's layout:

    config.json        the architecture, the training size, what it was trained on and how long,
                       its metrics, and how the weights were stored
    model.safetensors  the translator only (both generators, both attention networks)

``export_model`` writes one from a checkpoint; ``read_model_folder`` reads one without
unpickling anything. Finding a model by name or Hub id, and loading any kind of model source, is
``loading``'s job.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from aggan.checkpoint import (
    config_of,
    inference_weights,
    load_checkpoint,
    resolve_checkpoint,
    schedule_of,
)
from aggan.config import VARIANTS, RunConfig, build_saved_config, to_dict
from aggan.data import fixed_samples
from aggan.domains import DIRECTIONS, DOMAINS, source_domain
from aggan.errors import AgganError
from aggan.images import check_pattern, current_umask, staging_dir, to_uint8
from aggan.networks import Translator
from aggan.translate import translate_tensor
from aggan.version import __version__

MODEL_FORMAT = "aggan-model"
MODEL_FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
WeightsDtype = Literal["auto", "float32", "float16"]
CHECK_IMAGES = 8  # per direction, for the float16 check
MAX_LEVEL_CHANGE = 1  # float16 weights may change an output by at most this many 8-bit levels


def is_model_folder(path: Path) -> bool:
    return (path / CONFIG_FILE).is_file() and (path / WEIGHTS_FILE).is_file()


# --- Export -----------------------------------------------------------------------------------


def _float16_check_images(config: RunConfig) -> tuple[dict[str, Tensor], str]:
    """uint8 images per source domain to compare float16 with float32 on: the run's test (or
    training) images at its size where its data is here, else the seeded check pattern."""
    try:
        images = {domain: to_uint8(fixed_samples(config.data, domain, CHECK_IMAGES))
                  for domain in DOMAINS}
        return images, f"{CHECK_IMAGES} images per domain of {config.data.root}"
    except AgganError:
        size = config.data.size_px
        pattern = check_pattern((size, size), CHECK_IMAGES)
        return ({domain: pattern for domain in DOMAINS},
                f"{CHECK_IMAGES} check patterns ({config.data.root} not found)")


def _rounded_to_float16(translator: Translator) -> Translator:
    """A copy whose weights are rounded to float16 and computed in float32, as loading does."""
    rounded = copy.deepcopy(translator)
    with torch.no_grad():
        for tensor in rounded.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(tensor.half().float())
    return rounded


def float16_level_change(translator: Translator, images: dict[str, Tensor]) -> int:
    """The largest change, in 8-bit levels, of any translation or mask pixel when the weights
    are stored in float16."""
    rounded = _rounded_to_float16(translator)
    change = 0
    for direction in DIRECTIONS:
        batch = images[source_domain(direction)]
        for exact, approximate in zip(translate_tensor(translator, batch, direction, True),
                                      translate_tensor(rounded, batch, direction, True),
                                      strict=True):
            change = max(change, int((exact.int() - approximate.int()).abs().max()))
    return change


def _metrics_of(checkpoint: Path) -> dict[str, Any]:
    """The run's final metrics (``metrics.json`` beside ``checkpoints/``), if it has them."""
    metrics = checkpoint.parent.parent / "metrics.json"
    if not metrics.is_file():
        return {}
    try:
        return json.loads(metrics.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def _data_relative_to(root: str, out_dir: Path) -> str:
    if root == "synthetic" or not Path(root).is_dir():
        return root
    return os.path.relpath(Path(root).resolve(), out_dir.resolve())


def export_model(checkpoint: Path, out_dir: Path, *, dtype: WeightsDtype = "auto",
                 device: torch.device | None = None,
                 metrics: dict[str, Any] | None = None) -> dict[str, Any]:
    """Writes ``out_dir/config.json`` and ``out_dir/model.safetensors`` from a checkpoint (file
    or run folder); returns what config.json holds.

    Args:
        dtype: float32; float16 (half the size; refused if it changes an output by more than
            ``MAX_LEVEL_CHANGE`` 8-bit levels on the check images); auto: float16 where it passes
            that check, else float32.
        metrics: what config.json records as the model's metrics (None: the run's own
            ``metrics.json``, which only data with ground truth gets at the end of training).

    Raises:
        AgganError: an unreadable checkpoint, one still inside the attention warm-up, float16
            that fails the check, or an ``out_dir`` that exists and is not a model folder.
    """
    path = resolve_checkpoint(checkpoint)
    state = load_checkpoint(path)
    config = config_of(state, path)
    schedule = schedule_of(state)
    step = int(state["step"])
    if VARIANTS[config.model.variant].attention and not schedule.phase(step).use_attention:
        raise AgganError(f"{path} is at step {step}, inside the attention warm-up (until "
                         f"{schedule.attention_warmup_steps}): its attention is not trained yet")
    if out_dir.exists() and any(out_dir.iterdir()) and not is_model_folder(out_dir):
        raise AgganError(f"--out {out_dir} exists and is not a model folder; choose another")
    translator = Translator(config.model)
    translator.load_state_dict(inference_weights(state))
    translator.to(device or torch.device("cpu")).eval()

    images, checked_on = _float16_check_images(config)
    change = float16_level_change(translator, images) if dtype != "float32" else None
    if dtype == "float16" and change is not None and change > MAX_LEVEL_CHANGE:
        raise AgganError(f"float16 weights change an output by {change} levels of 8-bit "
                         f"(more than {MAX_LEVEL_CHANGE}) on {checked_on}; use --dtype float32")
    stored = "float16" if change is not None and change <= MAX_LEVEL_CHANGE else "float32"
    tensors = {name: (tensor.half() if stored == "float16" and tensor.is_floating_point()
                      else tensor).contiguous().cpu()
               for name, tensor in translator.state_dict().items()}
    info = {
        "format": MODEL_FORMAT, "format_version": MODEL_FORMAT_VERSION,
        "aggan_version": __version__,
        "variant": config.model.variant,
        "size_px": config.data.size_px,  # the training crop: translate runs the networks there
        # Relative to the model folder where the data is a folder here (the demo finds its
        # examples from any working directory); "synthetic" as it is.
        "data": _data_relative_to(config.data.root, out_dir),
        "step": step, "total_steps": schedule.total_steps,
        "weights": {"dtype": stored, "float16_max_level_change": change,
                    "checked_on": checked_on if change is not None else None},
        "metrics": _metrics_of(path) if metrics is None else metrics,
        "config": to_dict(config),
    }
    # Written beside the destination and renamed into place: a reader never sees half a folder.
    temp = staging_dir(out_dir)
    try:
        save_file(tensors, str(temp / WEIGHTS_FILE), metadata={"format": MODEL_FORMAT})
        # safetensors creates its file 0600 whatever the umask: a model is made to be shared.
        (temp / WEIGHTS_FILE).chmod(0o666 & ~current_umask())
        (temp / CONFIG_FILE).write_text(json.dumps(info, indent=2) + "\n")
        if out_dir.exists():
            for name in (WEIGHTS_FILE, CONFIG_FILE):
                os.replace(temp / name, out_dir / name)
        else:
            os.replace(temp, out_dir)
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    return info


# --- Reading --------------------------------------------------------------------------------


def read_model_folder(path: Path) -> tuple[Translator, RunConfig, dict[str, Any]]:
    """The translator (float32, on the CPU), the run's config and ``config.json`` as read, of
    the model folder at ``path``, checked against its format; no pickle is read."""
    try:
        info = json.loads((path / CONFIG_FILE).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise AgganError(f"{path / CONFIG_FILE} is unreadable: {error}") from None
    if not isinstance(info, dict) or info.get("format") != MODEL_FORMAT:
        raise AgganError(f"{path / CONFIG_FILE} is not an aggan model's config")
    if info.get("format_version") != MODEL_FORMAT_VERSION:
        raise AgganError(f"{path} has model format version {info.get('format_version')}; this "
                         f"aggan reads version {MODEL_FORMAT_VERSION}")
    try:
        config = build_saved_config(info["config"])
    except (AgganError, KeyError, TypeError) as error:
        raise AgganError(f"{path / CONFIG_FILE} has an invalid config: {error}") from None
    try:
        tensors = load_file(str(path / WEIGHTS_FILE))
    except (SafetensorError, OSError) as error:
        raise AgganError(f"{path / WEIGHTS_FILE} is unreadable: {error}") from None
    translator = Translator(config.model)
    try:
        translator.load_state_dict({name: tensor.float() if tensor.is_floating_point() else tensor
                                    for name, tensor in tensors.items()})
    except RuntimeError as error:
        first = str(error).splitlines()[0]
        raise AgganError(f"{path / WEIGHTS_FILE} does not fit its config ({first})") from None
    return translator, config, info
