"""Image files: listing, robust reading into RGB tensors, atomic writing.

Reading goes through Pillow, so every format it knows works; whatever the file's mode (grayscale,
palette, RGBA, CMYK, 16-bit) and EXIF orientation, the result is an upright RGB uint8 tensor. Any
failure becomes an :class:`AgganError` that names the file.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

from aggan.errors import AgganError

OVERLAY_RGB = (255, 40, 40)  # the mask's colour over a photo
OVERLAY_STRENGTH = 0.5  # the tint where the mask is 1


def image_extensions() -> frozenset[str]:
    """File endings Pillow can open here (lower case, with the dot)."""
    Image.init()
    return frozenset(ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN)


def list_images(folder: Path) -> list[Path]:
    """Image files directly in ``folder``, sorted by name; hidden files are skipped."""
    if not folder.is_dir():
        raise AgganError(f"{folder} is not a folder")
    extensions = image_extensions()
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in extensions)


def _scaled_to_8_bit(values: np.ndarray, peak: float) -> Image.Image:
    return Image.fromarray(np.clip(values / peak * 255.0 + 0.5, 0, 255).astype(np.uint8))


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # Pillow's convert("RGB") clips 16-bit values at 255 (a white image); scale instead.
        values = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if image.mode.startswith("I;16") or values.max() > 255 else 255.0
        image = _scaled_to_8_bit(values, peak)
    elif image.mode == "F":
        values = np.asarray(image, dtype=np.float64)
        image = _scaled_to_8_bit(values, 1.0 if values.max() <= 1.0 else 255.0)
    elif image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    return image.convert("RGB")


def has_alpha(path: Path) -> bool:
    """Whether the image file has a transparency that reading it as RGB drops (reads only its
    header)."""
    try:
        with Image.open(path) as opened:
            return opened.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
                opened.mode == "P" and "transparency" in opened.info)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return False


def read_image(path: Path) -> Tensor:
    """Reads any image Pillow knows as an upright RGB uint8 tensor (3, H, W)."""
    try:
        with Image.open(path) as opened:
            upright = ImageOps.exif_transpose(opened)
            rgb = _to_rgb(upright)
            array = np.array(rgb, dtype=np.uint8)
    except UnidentifiedImageError:
        raise AgganError(f"{path} is not an image Pillow can read") from None
    except FileNotFoundError:
        raise AgganError(f"{path} does not exist") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise AgganError(f"cannot read image {path}: {error}") from None
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def current_umask() -> int:
    """The process's umask, read without changing it where Linux shows it."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_hexdigest(path: Path, algorithm: str, *, for_security: bool = True) -> str:
    """The hex digest of a file, read in 1 MB blocks. ``for_security=False`` allows SHA-1 on
    FIPS systems, for names and cache keys only."""
    digest = hashlib.new(algorithm, usedforsecurity=for_security)
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def prepare_output_dir(folder: Path, flag: str) -> None:
    """Creates ``folder`` (with parents) and proves it writable before any work is done; a
    file in the way or a folder the user cannot write to is one line naming ``flag``."""
    if folder.exists() and not folder.is_dir():
        raise AgganError(f"{flag} {folder} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as error:
        raise AgganError(f"{flag} {folder}: cannot write there ({error.strerror or error})"
                         ) from None


def staging_dir(target: Path) -> Path:
    """A new hidden folder beside ``target`` to build it in and rename into place, with the
    umask's mode (mkdtemp's is a private 0700)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial",
                                    dir=target.parent))
    os.chmod(staging, 0o777 & ~current_umask())
    return staging


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Runs ``write(temp_path)`` then renames the temp file over ``path``: readers never see
    a half-written file, and a crash leaves the previous version intact. The file gets the
    mode a plain ``open`` would give it (0666 less the umask), not mkstemp's private 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # The temp name ends as the target does: some writers (torch.export.save) check it.
    fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}",
                                     dir=path.parent)
    os.fchmod(fd, 0o666 & ~current_umask())
    os.close(fd)
    temp = Path(temp_name)
    try:
        write(temp)
        with open(temp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


def write_json(path: Path, record: dict) -> None:
    """``record`` as indented JSON, written atomically."""
    atomic_write(path, lambda temp: temp.write_text(json.dumps(record, indent=2) + "\n"))


def write_png(image: Tensor, path: Path) -> None:
    """Writes a uint8 (C, H, W) tensor (C = 1 or 3) as PNG, atomically."""
    array = image.detach().cpu().permute(1, 2, 0).numpy()
    # Pillow, not torchvision.io: torchvision 0.29 deprecates its image encoders.
    picture = Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array)
    atomic_write(path, lambda temp: picture.save(temp, format="PNG"))


def to_uint8(images: Tensor, value_range: tuple[float, float] = (-1.0, 1.0)) -> Tensor:
    """Float images in ``value_range`` -> uint8, rounding to nearest."""
    low, high = value_range
    scaled = (images.detach().float() - low) / (high - low) * 255.0
    return scaled.round().clamp(0, 255).to(torch.uint8)


def to_float(images: Tensor) -> Tensor:
    """uint8 -> float32 in [-1, 1]."""
    return images.float() / 127.5 - 1.0


def mask_overlay(image: Tensor, mask: Tensor) -> Tensor:
    """The photo with the attended region tinted red in proportion to the mask, as the
    evaluate report and the demo show it: uint8 (3, H, W) and mask uint8 (1, H, W) or (H, W)."""
    colour = torch.tensor(OVERLAY_RGB, dtype=torch.float32).view(3, 1, 1)
    weight = mask.float().reshape(1, *image.shape[-2:]) / 255 * OVERLAY_STRENGTH
    return (image.float() * (1 - weight) + colour * weight).round().to(torch.uint8)


def check_pattern(size: tuple[int, int], batch: int = 2) -> Tensor:
    """Seeded uint8 images (batch, 3, H, W) to check a model's outputs on where no photos are at
    hand: smooth gradients with noise, so that masks and translations vary."""
    generator = torch.Generator().manual_seed(size[0] * 1000 + size[1])
    height, width = size
    ramp = torch.linspace(0, 1, height)[:, None] * torch.linspace(1, 0, width)[None, :]
    images = (0.6 * ramp + 0.4 * torch.rand(batch, 3, height, width, generator=generator))
    return (images.clamp(0, 1) * 255).round().to(torch.uint8)
