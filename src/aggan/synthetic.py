"""The built-in procedural dataset: the embedded default when a user has no data.

Every scene is a smooth, cluttered background with one or two shaded ellipses. Both domains share
one background distribution and one shape distribution; they differ only in the objects' colour
(red in A, blue in B). So the right translation changes the objects and nothing else, and for any
test scene we know the true object mask and the true translation (the same scene rendered with the
other domain's colour). A model that repaints the background is visibly and measurably wrong.

Scenes are a pure function of (seed, split, domain, index): no files are needed to train, and
``aggan data synthetic`` writes the same scenes to disk in the CycleGAN layout.
"""

from __future__ import annotations

import colorsys
import hashlib
import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from aggan.domains import DOMAINS
from aggan.errors import AgganError
from aggan.images import atomic_write, prepare_output_dir, staging_dir, write_png

# Hue of the objects per domain; background hues stay in the yellow-green band between them.
OBJECT_HUE = {"a": 0.0, "b": 0.62}
BACKGROUND_HUES = (0.10, 0.45)


@dataclass(frozen=True)
class Scene:
    """One rendered scene: ``image`` and ``truth`` are uint8 (3, H, W), ``mask`` uint8 (1, H, W)
    with 255 inside the objects. ``truth`` is the scene with the other domain's objects."""

    image: Tensor
    mask: Tensor
    truth: Tensor


def seeded_generator(*key: object) -> torch.Generator:
    digest = hashlib.blake2b("/".join(map(str, key)).encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") & (2**63 - 1))


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


def _rgb(hue: float, saturation: float, value: float) -> Tensor:
    return torch.tensor(colorsys.hsv_to_rgb(hue % 1.0, saturation, value)).view(3, 1, 1)


def _background(generator: torch.Generator, y: Tensor, x: Tensor) -> Tensor:
    def muted() -> Tensor:
        return _rgb(_uniform(generator, *BACKGROUND_HUES), _uniform(generator, 0.1, 0.45),
                    _uniform(generator, 0.3, 0.85))

    canvas = muted().expand(3, *y.shape).clone()
    for _ in range(int(torch.randint(3, 7, (), generator=generator))):
        cy, cx = _uniform(generator, 0, 1), _uniform(generator, 0, 1)
        sigma = _uniform(generator, 0.08, 0.3)
        weight = torch.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * sigma**2))
        canvas = canvas * (1 - weight) + muted() * weight
    for _ in range(int(torch.randint(2, 5, (), generator=generator))):
        # Clutter: soft-edged bars, so the background has edges the attention must ignore.
        cy, cx = _uniform(generator, 0, 1), _uniform(generator, 0, 1)
        half_h, half_w = _uniform(generator, 0.02, 0.15), _uniform(generator, 0.02, 0.15)
        inside = ((y - cy).abs() < half_h) & ((x - cx).abs() < half_w)
        canvas = torch.where(inside, canvas * 0.4 + muted() * 0.6, canvas)
    gradient = 0.85 + 0.3 * (_uniform(generator, -1, 1) * (y - 0.5) + _uniform(generator, -1, 1)
                             * (x - 0.5))
    return canvas * gradient


def render_scene(seed: int, split: str, domain: str, index: int, size_px: int) -> Scene:
    """Renders scene ``index`` of ``split`` ("train" or "test") in ``domain`` ("a" or "b")."""
    generator = seeded_generator(seed, split, domain, index)
    coords = (torch.arange(size_px, dtype=torch.float32) + 0.5) / size_px
    y, x = torch.meshgrid(coords, coords, indexing="ij")
    background = _background(generator, y, x)
    painted = {d: background.clone() for d in DOMAINS}
    mask = torch.zeros(1, size_px, size_px, dtype=torch.bool)
    for _ in range(int(torch.randint(1, 3, (), generator=generator))):
        cy, cx = _uniform(generator, 0.2, 0.8), _uniform(generator, 0.2, 0.8)
        radius_y, radius_x = _uniform(generator, 0.1, 0.2), _uniform(generator, 0.1, 0.2)
        angle = _uniform(generator, 0, math.pi)
        dy, dx = y - cy, x - cx
        along = dx * math.cos(angle) + dy * math.sin(angle)
        across = -dx * math.sin(angle) + dy * math.cos(angle)
        radius2 = (along / radius_x) ** 2 + (across / radius_y) ** 2
        inside = radius2 < 1
        # A dome lit from the upper left: the same shading in both domains.
        light = 0.55 + 0.45 * torch.sqrt((1 - radius2).clamp(min=0)) - 0.15 * (dy + dx)
        hue_shift = _uniform(generator, -0.03, 0.03)
        saturation, value = _uniform(generator, 0.7, 0.95), _uniform(generator, 0.75, 0.95)
        for d in DOMAINS:
            colour = _rgb(OBJECT_HUE[d] + hue_shift, saturation, value) * light
            painted[d] = torch.where(inside, colour, painted[d])
        mask |= inside
    noise = 0.015 * torch.randn(3, size_px, size_px, generator=generator)

    def to_uint8(canvas: Tensor) -> Tensor:
        return ((canvas + noise).clamp(0, 1) * 255).round().to(torch.uint8)

    other = "b" if domain == "a" else "a"
    return Scene(image=to_uint8(painted[domain]), mask=mask.to(torch.uint8) * 255,
                 truth=to_uint8(painted[other]))


class SyntheticDomain:
    """The images of one domain and split, rendered on demand (no files)."""

    def __init__(self, *, seed: int, split: str, domain: str, count: int, size_px: int) -> None:
        self.seed, self.split, self.domain = seed, split, domain
        self.count, self.size_px = count, size_px

    def __len__(self) -> int:
        return self.count

    def name(self, index: int) -> str:
        return f"{self.split}{self.domain.upper()}_{index:05d}"

    def scene(self, index: int) -> Scene:
        return render_scene(self.seed, self.split, self.domain, index, self.size_px)

    def load(self, index: int) -> Tensor:
        return self.scene(index).image


def write_dataset(out: Path, *, size_px: int, train_images: int, test_images: int,
                  seed: int) -> dict[str, int]:
    """Writes the dataset in the CycleGAN layout, plus ground truth for the test scenes:
    ``testA_mask/`` (true object masks) and ``testA_truth/`` (true translations into B), and the
    same for B. Returns the number of files written per folder.

    ``out`` must be new or empty (mixing two datasets in one folder is never right); the dataset
    is built beside it and renamed into place, so an interrupted run leaves nothing.
    """
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        state = "is not empty" if out.is_dir() else "is a file"
        raise AgganError(f"--out {out} {state}: aggan data synthetic writes a new dataset into a "
                         "new or empty folder")
    prepare_output_dir(out.parent, "--out")
    staging = staging_dir(out)
    try:
        counts = _write_scenes(staging, size_px=size_px, train_images=train_images,
                               test_images=test_images, seed=seed)
        if out.is_dir():
            out.rmdir()
        os.rename(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return counts


def _write_scenes(out: Path, *, size_px: int, train_images: int, test_images: int,
                  seed: int) -> dict[str, int]:
    counts: dict[str, int] = {}
    for split, count in (("train", train_images), ("test", test_images)):
        if count == 0:
            continue
        for domain in DOMAINS:
            images = SyntheticDomain(seed=seed, split=split, domain=domain, count=count,
                                     size_px=size_px)
            folder = f"{split}{domain.upper()}"
            for index in range(count):
                scene = images.scene(index)
                name = f"{images.name(index)}.png"
                write_png(scene.image, out / folder / name)
                if split == "test":
                    write_png(scene.mask, out / f"{folder}_mask" / name)
                    write_png(scene.truth, out / f"{folder}_truth" / name)
            counts[folder] = count
    info = {"generator": "aggan.synthetic", "seed": seed, "size_px": size_px, **counts}
    atomic_write(out / "synthetic.json", lambda temp: temp.write_text(json.dumps(info, indent=2)))
    return counts
