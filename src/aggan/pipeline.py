"""The Python API: load a model once, then translate what you have, as ``aggan translate`` does.

    from aggan import Pipeline

    pipe = Pipeline.from_pretrained("horse2zebra-128")
    zebra = pipe("horse.jpg", direction="a2b")
    zebra.image.save("zebra.png")
    zebra.mask.save("mask.png")

A call takes a path, a PIL image, a NumPy array (H, W, 3) or (H, W) of uint8, or a list of them,
and returns a ``Translation`` (a list of them for a list) whose ``image`` and ``mask`` are of the
type that came in: PIL images for paths and PIL images, arrays for arrays. ``aggan translate``
and ``aggan demo`` run through the same object.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from aggan.config import RunConfig
from aggan.device import resolve_device
from aggan.domains import DIRECTIONS, Direction
from aggan.errors import AgganError
from aggan.images import read_image
from aggan.loading import LoadedModel, load_model
from aggan.networks import Translator
from aggan.translate import (
    Scale,
    Translated,
    check_mask_threshold,
    parse_scale,
    scale_px,
    translate_paths,
    translate_tensor,
)

ImageInput = str | os.PathLike | Image.Image | np.ndarray


@dataclass(frozen=True)
class Translation:
    """One translated image and its attention mask (255 = translated, 0 = the input's pixels),
    both at the input's size and in the input's type."""

    image: Any  # PIL.Image.Image (RGB) or np.ndarray (H, W, 3) uint8
    mask: Any  # PIL.Image.Image (L) or np.ndarray (H, W) uint8


def _as_tensor(item: ImageInput) -> Tensor:
    """uint8 (3, H, W) from a path, a PIL image or an array."""
    if isinstance(item, str | os.PathLike):
        return read_image(Path(item))
    if isinstance(item, Image.Image):
        return torch.from_numpy(np.array(item.convert("RGB"), dtype=np.uint8)).permute(2, 0, 1)
    if isinstance(item, np.ndarray):
        if item.dtype != np.uint8 or item.ndim not in (2, 3) or (
                item.ndim == 3 and item.shape[2] != 3):
            raise AgganError(f"an array image must be uint8 (H, W, 3) or (H, W), got "
                             f"{item.dtype} {item.shape}")
        rgb = np.repeat(item[..., None], 3, axis=2) if item.ndim == 2 else item
        return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)
    raise AgganError(f"cannot translate a {type(item).__name__}: give a path, a PIL image or a "
                     "uint8 NumPy array")


def _as_input_type(image: Tensor, mask: Tensor, like: ImageInput) -> Translation:
    rgb, alpha = image.permute(1, 2, 0).numpy(), mask[0].numpy()
    if isinstance(like, np.ndarray):
        return Translation(rgb, alpha)
    return Translation(Image.fromarray(rgb, "RGB"), Image.fromarray(alpha, "L"))


class Pipeline:
    """A loaded model (``loading.load_model``) and what it needs to translate photos of any
    size."""

    def __init__(self, model: LoadedModel) -> None:
        self.model = model

    @classmethod
    def from_pretrained(cls, source: str | os.PathLike, *, device: str = "auto") -> Pipeline:
        """A model folder, the name of a shipped model, a Hub id ``owner/name``, a run folder or
        a checkpoint file (no pickle is read from a model folder)."""
        return cls(load_model(source, resolve_device(device)))

    @property
    def translator(self) -> Translator:
        """The networks, in eval mode."""
        return self.model.translator

    @property
    def config(self) -> RunConfig:
        """The run's config."""
        return self.model.config

    @property
    def size_px(self) -> int:
        """The training crop: where ``scale="train"`` runs the networks."""
        return self.config.data.size_px

    def translate_tensors(self, images: Tensor, direction: Direction, *, scale: Scale = "train",
                          mask_threshold: float | None = None) -> tuple[Tensor, Tensor]:
        """uint8 (N, 3, H, W) -> translations uint8 (N, 3, H, W) and masks uint8 (N, 1, H, W)."""
        return translate_tensor(self.translator, images, direction, self.model.use_attention,
                                scale_px=scale_px(scale, self.size_px),
                                mask_threshold=mask_threshold)

    def __call__(self, images: ImageInput | Sequence[ImageInput], direction: Direction = "a2b",
                 *, scale: Scale = "train", mask_threshold: float | None = None,
                 batch_size: int = 1) -> Translation | list[Translation]:
        """Translates one image or a list of them.

        Args:
            direction: ``a2b`` (trainA's domain to trainB's) or ``b2a``.
            scale: ``"train"`` (the networks see the image at the training size; the result is
                composited with the full-resolution input), ``"native"`` or a shorter side in
                pixels, as ``aggan translate --scale``.
            mask_threshold: composite with the hard mask ``mask >= T`` (None: the soft mask).
            batch_size: consecutive images of the same size translated together.
        """
        if direction not in DIRECTIONS:
            raise AgganError(f"direction must be a2b or b2a, got {direction!r}")
        check_mask_threshold(mask_threshold)
        scale = parse_scale(str(scale))
        if batch_size < 1:
            raise AgganError(f"batch_size must be at least 1, got {batch_size}")
        single = not isinstance(images, list | tuple)
        items: list[ImageInput] = [images] if single else list(images)  # type: ignore[list-item]
        tensors = [_as_tensor(item) for item in items]
        results: list[Translation] = []
        start = 0
        while start < len(tensors):
            end = start + 1
            while (end < len(tensors) and end - start < batch_size
                   and tensors[end].shape == tensors[start].shape):
                end += 1
            translated, masks = self.translate_tensors(torch.stack(tensors[start:end]),
                                                       direction, scale=scale,
                                                       mask_threshold=mask_threshold)
            results += [_as_input_type(image, mask, like) for image, mask, like
                        in zip(translated, masks, items[start:end], strict=True)]
            start = end
        return results[0] if single else results

    def translate_files(self, inputs: Sequence[Path], direction: Direction, out_dir: Path, *,
                        scale: Scale = "train", mask_threshold: float | None = None,
                        batch_size: int = 1, progress: bool = False) -> Translated:
        """Files and folders into ``out_dir`` (``x.png`` and ``masks/x.png``), as ``aggan
        translate`` does: every readable image, each unreadable one named."""
        check_mask_threshold(mask_threshold)
        return translate_paths(self.translator, inputs, direction, out_dir,
                               use_attention=self.model.use_attention, batch_size=batch_size,
                               scale_px=scale_px(scale, self.size_px),
                               mask_threshold=mask_threshold, progress=progress)
