"""Loading a trained model for translation, from any source a user names: a model folder, the
name of a model shipped in the repository's ``models/`` (or ``$AGGAN_MODELS``), a Hugging Face
Hub id ``owner/name`` (with the optional ``huggingface_hub``), a run folder or a checkpoint file.
``load_model`` is the one way in: translate, evaluate, export, the demo and ``Pipeline`` use it.
No pickle is read from a model folder, and a checkpoint is read with ``weights_only=True``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from aggan.checkpoint import (
    config_of,
    inference_weights,
    load_checkpoint,
    load_state,
    resolve_checkpoint,
    schedule_of,
)
from aggan.config import VARIANTS, RunConfig
from aggan.errors import AgganError
from aggan.model_folder import CONFIG_FILE, WEIGHTS_FILE, is_model_folder, read_model_folder
from aggan.networks import Translator

# Shipped models live in the repository's models/ folder (beside src/).
REPOSITORY_MODELS = Path(__file__).resolve().parents[2] / "models"


@dataclass(frozen=True)
class LoadedModel:
    """A model ready to translate: what every inference path gets from ``load_model``."""

    translator: Translator  # eval mode, float32, channels-last, on the requested device
    config: RunConfig  # the run's config; config.data.size_px is the training size
    # Whether the attention networks are applied: False for a variant without attention (its
    # mask is 1 everywhere) and for a checkpoint inside the attention warm-up.
    use_attention: bool
    source: Path  # the model folder or checkpoint file it was read from
    # The folder of the data it was trained on, where that is on this machine (a model folder
    # records it relative to itself; a checkpoint as its run was given it, relative to where the
    # training ran); None for the synthetic scenes or data not here.
    data_root: Path | None


def find_model(name: str | Path) -> Path:
    """A model folder: a path; else a model shipped in ``$AGGAN_MODELS`` or the repository's
    ``models/``; else (``owner/name``, with ``huggingface_hub`` installed) a Hub download, which
    works offline from its cache with ``HF_HUB_OFFLINE=1``."""
    path = Path(name)
    if path.exists():
        if not is_model_folder(path):
            raise AgganError(f"--model: {path} is not a model folder ({CONFIG_FILE} and "
                             f"{WEIGHTS_FILE}); a run folder or checkpoint goes to --checkpoint")
        return path
    text = str(name)
    roots = [Path(os.environ["AGGAN_MODELS"])] if os.environ.get("AGGAN_MODELS") else []
    if _looks_like_a_path(text):
        where = "" if path.is_absolute() else f" (looked for {path.absolute()})"
        raise AgganError(f"--model: no such model folder: {path}{where}")
    for root in [*roots, REPOSITORY_MODELS]:
        if is_model_folder(root / text):
            return root / text
    if text.count("/") == 1:
        return _hub_download(text)
    shipped = sorted(p.name for p in REPOSITORY_MODELS.glob("*") if is_model_folder(p))
    raise AgganError(f"--model: no model {name!r}: not a folder, not one of the shipped models "
                     f"({', '.join(shipped) or 'none found'}), not a Hub id owner/name")


def _looks_like_a_path(text: str) -> bool:
    """A name a user means as a folder, not a shipped model or a Hub id ``owner/name``: absolute,
    relative to ``.`` or ``~``, more than one separator, a suffix, or a first part that is a
    folder here (``models/my-h2z`` before it was exported)."""
    path = Path(text)
    return (path.is_absolute() or text.startswith((".", "~")) or text.count("/") > 1
            or "\\" in text or bool(path.suffix)
            or (text.count("/") == 1 and path.parent.is_dir()))


def _hub_download(repo_id: str) -> Path:
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError
    except ImportError:
        raise AgganError(f"--model {repo_id}: a Hub id needs huggingface_hub "
                         "(pip install 'aggan[hub]')") from None
    try:
        folder = snapshot_download(repo_id, allow_patterns=[CONFIG_FILE, WEIGHTS_FILE,
                                                            "README.md"])
    except LocalEntryNotFoundError:
        # What huggingface_hub raises when it cannot connect (or HF_HUB_OFFLINE is set) and the
        # repo is not in its cache.
        raise AgganError(f"--model {repo_id}: offline, and the Hub cache holds no copy of it (no "
                         "folder of that name here either)") from None
    except (HfHubHTTPError, OSError, ValueError) as error:
        first = str(error).strip().splitlines()[0] if str(error) else type(error).__name__
        raise AgganError(f"--model {repo_id}: cannot get it from the Hub ({first[:200]})") from None
    path = Path(folder)
    if not is_model_folder(path):
        raise AgganError(f"--model {repo_id}: the Hub repo holds no {CONFIG_FILE} and "
                         f"{WEIGHTS_FILE}")
    return path


def load_model(source: str | os.PathLike, device: torch.device | None = None) -> LoadedModel:
    """The model at ``source`` (see the module's docstring), on ``device`` (default: the CPU)."""
    path = Path(source)
    if path.exists() and not is_model_folder(path):
        read_from = resolve_checkpoint(path)
        state = load_checkpoint(read_from)
        config = config_of(state, read_from)
        translator = Translator(config.model)
        load_state(translator, inference_weights(state), read_from, "networks")
        use_attention = schedule_of(state).phase(state["step"]).use_attention
        recorded = Path(config.data.root)
    else:
        read_from = find_model(source)
        translator, config, info = read_model_folder(read_from)
        use_attention = VARIANTS[config.model.variant].attention
        recorded = read_from / info.get("data", "synthetic")
    data_root = None if config.data.root == "synthetic" or not recorded.is_dir() else recorded
    # Channels-last: 1.2x (256 px) to 1.3x (1024 x 768) the images/s of NCHW on CPU
    # (benchmarks/README.md).
    translator = translator.to(device or torch.device("cpu"),
                               memory_format=torch.channels_last).eval()
    return LoadedModel(translator, config, use_attention, read_from, data_root)
