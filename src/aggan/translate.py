"""Translating images of any size with a trained checkpoint.

Each input ``x.jpg`` gives ``OUT/x.png`` (the translation, same width and height) and
``OUT/masks/x.png`` (the attention mask, unscaled: 0 black, 1 white; the released code min-max
stretched it), so that ``OUT`` holds translations alone and ``aggan evaluate --fake OUT`` scores
them. By default the networks see the input at the scale the model was trained at and the result
is composited with the full-resolution input (``translate_tensor``). The networks' input is
padded (reflect) to a multiple of 4 and cropped back. Consecutive inputs of the same size are
batched.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from torch.nn import functional as F
from tqdm import tqdm

from aggan.domains import Direction
from aggan.errors import AgganError
from aggan.images import (
    has_alpha,
    list_images,
    prepare_output_dir,
    read_image,
    to_float,
    to_uint8,
    write_png,
)
from aggan.networks import Translator, composite

logger = logging.getLogger(__name__)

MULTIPLE = 4  # two stride-2 stages down and two up
MIN_SIZE_PX = 16  # the attention's reflect padding needs a few pixels at 1/4 resolution


def collect_inputs(inputs: Sequence[Path]) -> list[Path]:
    """Files as given and the images directly inside given folders, in order; a folder's other
    files are named once in the log, not passed over in silence."""
    paths: list[Path] = []
    for item in inputs:
        if item.is_dir():
            found = list_images(item)
            if not found:
                raise AgganError(f"--input: {item} holds no images")
            images = set(found)
            for other in sorted(item.iterdir()):
                if other.is_file() and not other.name.startswith(".") and other not in images:
                    logger.warning("skipped %s: not an image file (by its extension)", other)
            paths.extend(found)
        elif item.is_file():
            paths.append(item)
        else:
            raise AgganError(f"--input: {item} does not exist")
    return paths


MASKS = "masks"  # the subfolder of an output folder that holds the masks


def output_paths(path: Path, out_dir: Path) -> tuple[Path, Path]:
    """Where the translation and the mask of input ``path`` go."""
    return out_dir / f"{path.stem}.png", out_dir / MASKS / f"{path.stem}.png"


def check_outputs(paths: Sequence[Path], out_dir: Path) -> None:
    """Refuses a translation that would overwrite an input or write one file twice."""
    inputs = {p.resolve(): p for p in paths}
    written: dict[Path, Path] = {}
    for path in paths:
        for output in output_paths(path, out_dir):
            resolved = output.resolve()
            if resolved in inputs:
                raise AgganError(f"--out {out_dir}: writing {output} would overwrite the input "
                                 f"{inputs[resolved]}; choose another --out")
            if resolved in written:
                raise AgganError(f"{written[resolved]} and {path} would both write {output}; "
                                 "rename one or translate them separately")
            written[resolved] = path


def pad_to_multiple(images: Tensor, multiple: int = MULTIPLE) -> Tensor:
    """Pads (N, C, H, W) at the bottom and right to multiples of ``multiple``, at least
    ``MIN_SIZE_PX``."""
    height, width = images.shape[-2:]
    pad_h = max(-height % multiple, MIN_SIZE_PX - height)
    pad_w = max(-width % multiple, MIN_SIZE_PX - width)
    if not (pad_h or pad_w):
        return images
    mode = "reflect" if pad_h < height and pad_w < width else "replicate"
    return F.pad(images, (0, pad_w, 0, pad_h), mode=mode)


def _batches(paths: Sequence[Path], batch_size: int, unreadable: list[str]
             ) -> Iterator[tuple[list[Path], Tensor]]:
    """Consecutive images of one size, up to ``batch_size`` at a time, as uint8 (N, 3, H, W).
    A file that cannot be read is logged, added to ``unreadable`` and passed over."""
    group: list[Path] = []
    images: list[Tensor] = []
    for path in paths:
        try:
            image = read_image(path)
        except AgganError as error:
            logger.warning("skipped: %s", error)
            unreadable.append(str(error))
            continue
        if has_alpha(path):
            logger.warning("%s: its transparency is dropped (the colours under it are "
                           "translated)", path)
        if images and image.shape != images[0].shape:
            yield group, torch.stack(images)
            group, images = [], []
        group.append(path)
        images.append(image)
        if len(images) == batch_size:
            yield group, torch.stack(images)
            group, images = [], []
    if images:
        yield group, torch.stack(images)


Scale = str | int  # "train" (the model's training crop), "native" (the input's size) or pixels


def parse_scale(value: str) -> Scale:
    """``--scale``: train, native or a number of pixels (at least ``MIN_SIZE_PX``)."""
    if value in ("train", "native"):
        return value
    if not value.isdigit() or int(value) < MIN_SIZE_PX:
        raise AgganError(f"--scale: expected train, native or a number of pixels >= "
                         f"{MIN_SIZE_PX}, got {value!r}")
    return int(value)


def scale_px(scale: Scale, training_size_px: int) -> int | None:
    """The shorter side the networks run at (None: the input's own size)."""
    if scale == "train":
        return training_size_px
    return None if scale == "native" else int(scale)


def check_mask_threshold(threshold: float | None) -> None:
    if threshold is not None and not 0 <= threshold <= 1:
        raise AgganError(f"--mask-threshold must be in [0, 1], got {threshold}")


def resize_shorter_side(images: Tensor, size_px: int) -> Tensor:
    """Resizes (N, C, H, W) so that the shorter side is ``size_px``, keeping the aspect ratio."""
    height, width = images.shape[-2:]
    factor = size_px / min(height, width)
    size = (max(1, round(height * factor)), max(1, round(width * factor)))
    if size == (height, width):
        return images
    return F.interpolate(images, size=size, mode="bilinear", align_corners=False,
                         antialias=factor < 1)


@torch.inference_mode()
def translate_tensor(translator: Translator, images: Tensor, direction: Direction,
                     use_attention: bool, *, scale_px: int | None = None,
                     mask_threshold: float | None = None) -> tuple[Tensor, Tensor]:
    """uint8 (N, 3, H, W) of any H, W -> translation uint8 (N, 3, H, W), mask uint8 (N, 1, H, W).

    Args:
        scale_px: run the networks on the images resized so that their shorter side is this
            (the model's training crop sees objects at the scale it learned), then upsample the
            mask and the generator's output and composite with the full-resolution input:
            out = up(mask) * up(F) + (1 - up(mask)) * input. Where the mask is 0 the output is
            the input's own pixels. None: the networks run at the input's size.
        mask_threshold: composite with the hard mask 1[mask >= threshold] instead of the soft
            one (None): every pixel below it is the input's own.
    """
    height, width = images.shape[-2:]
    device = next(translator.parameters()).device
    full = to_float(images).to(device)
    scaled = full if scale_px is None else resize_shorter_side(full, scale_px)
    scaled_height, scaled_width = scaled.shape[-2:]
    generated, mask = translator.parts(pad_to_multiple(scaled), direction, use_attention)
    generated = generated[..., :scaled_height, :scaled_width]
    mask = mask[..., :scaled_height, :scaled_width].float()
    if (scaled_height, scaled_width) != (height, width):
        generated, mask = (F.interpolate(x, size=(height, width), mode="bilinear",
                                         align_corners=False, antialias=scaled_height > height)
                           for x in (generated, mask))
        mask = mask.clamp(0, 1)
    if mask_threshold is not None:
        mask = (mask >= mask_threshold).float()
    translated = composite(mask, generated.float(), full)
    return to_uint8(translated).cpu(), to_uint8(mask, value_range=(0.0, 1.0)).cpu()


def is_out_of_memory(error: BaseException) -> bool:
    """CUDA's OutOfMemoryError, the CPU allocator's failure, or Python's MemoryError."""
    if isinstance(error, MemoryError | torch.OutOfMemoryError):
        return True
    text = str(error)
    return "out of memory" in text or "can't allocate memory" in text


@dataclass(frozen=True)
class Translated:
    """What ``translate_paths`` did: the translations written, and the inputs it could not read
    (one line each: the file and why)."""

    written: list[Path]
    unreadable: list[str]


def translate_paths(translator: Translator, inputs: Sequence[Path], direction: Direction,
                    out_dir: Path, *, use_attention: bool, batch_size: int = 1,
                    scale_px: int | None = None, mask_threshold: float | None = None,
                    progress: bool = False) -> Translated:
    """Translates files and folders of images into ``out_dir``. Every readable image is
    translated; an unreadable one is named in the log and in the result, and costs no other
    image its translation (each output is written whole or not at all).

    Raises:
        AgganError: a missing input, no readable input at all, or outputs that would overwrite
            an input or each other.
    """
    if batch_size < 1:
        raise AgganError(f"--batch-size must be at least 1, got {batch_size}")
    paths = collect_inputs(inputs)
    check_outputs(paths, out_dir)
    prepare_output_dir(out_dir, "--out")
    written: list[Path] = []
    unreadable: list[str] = []
    with tqdm(total=len(paths), disable=not progress, unit="image") as bar:
        for group, images in _batches(paths, batch_size, unreadable):
            try:
                translated, masks = translate_tensor(translator, images, direction,
                                                     use_attention, scale_px=scale_px,
                                                     mask_threshold=mask_threshold)
            except (RuntimeError, MemoryError) as error:
                if not is_out_of_memory(error):
                    raise
                height, width = images.shape[-2:]
                raise AgganError(
                    f"{group[0]}: out of memory translating {width} x {height} px "
                    f"({'native' if scale_px is None else f'networks at {scale_px} px'}); pass "
                    "--scale train or a smaller --scale PX (the networks run smaller, the "
                    "composite stays full size), or --batch-size 1") from None
            for path, image, mask in zip(group, translated, masks, strict=True):
                image_path, mask_path = output_paths(path, out_dir)
                write_png(image, image_path)
                write_png(mask, mask_path)
                written.append(image_path)
            bar.update(len(group))
    if not written:
        if len(unreadable) == 1:
            raise AgganError(unreadable[0])
        raise AgganError(f"none of the {len(unreadable)} inputs could be read (each is named "
                         "above)")
    return Translated(written, unreadable)
