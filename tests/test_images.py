"""Reading every kind of image Pillow knows as upright RGB; atomic writes."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from aggan.errors import AgganError
from aggan.images import atomic_write, read_image, to_float, to_uint8, write_json, write_png


def _gradient(height: int = 12, width: int = 20) -> np.ndarray:
    row = np.linspace(0, 255, width, dtype=np.uint8)
    return np.stack([np.tile(row, (height, 1))] * 3, axis=-1)


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "CMYK", "LA", "1"])
def test_modes_become_rgb(tmp_path: Path, mode: str) -> None:
    path = tmp_path / ("x.jpg" if mode == "CMYK" else "x.png")
    Image.fromarray(_gradient()).convert(mode).save(path)
    image = read_image(path)
    assert image.dtype == torch.uint8 and image.shape == (3, 12, 20)


def test_sixteen_bit_is_scaled_not_clipped(tmp_path: Path) -> None:
    values = (np.linspace(0, 65535, 20).astype(np.uint16)[None, :]).repeat(8, axis=0)
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)
    image = read_image(path)
    assert image[0, 0, 0] == 0 and image[0, 0, -1] == 255
    assert 100 < int(image[0, 0, 10]) < 155  # mid-grey, not white


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    image = Image.fromarray(_gradient(10, 30))
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    path = tmp_path / "rotated.jpg"
    image.save(path, exif=exif)
    assert read_image(path).shape == (3, 30, 10)


def test_truncated_and_non_images_are_named(tmp_path: Path) -> None:
    good = tmp_path / "good.jpg"
    Image.fromarray(_gradient(64, 64)).save(good)
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(good.read_bytes()[:300])
    with pytest.raises(AgganError, match=r"truncated\.jpg"):
        read_image(truncated)
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(AgganError, match=r"notes\.png"):
        read_image(text)


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path: Path) -> None:
    path = tmp_path / "out.txt"
    path.write_text("old")

    def fail(temp: Path) -> None:
        temp.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(path, fail)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_png_round_trip(tmp_path: Path) -> None:
    image = torch.randint(0, 256, (3, 9, 7), dtype=torch.uint8)
    write_png(image, tmp_path / "a.png")
    assert torch.equal(read_image(tmp_path / "a.png"), image)
    assert torch.equal(to_uint8(to_float(image)), image)


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_written_files_get_the_mode_the_umask_allows(tmp_path: Path, umask: int) -> None:
    """Checkpoints, images and reports are shared with a team: not mkstemp's 0600."""
    previous = os.umask(umask)
    try:
        write_json(tmp_path / "report.json", {"a": 1})
        write_png(torch.zeros(3, 4, 4, dtype=torch.uint8), tmp_path / "image.png")
    finally:
        os.umask(previous)
    for name in ("report.json", "image.png"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~umask
