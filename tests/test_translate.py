"""Translation of real photos and odd sizes; outputs as the contract says."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from aggan.config import ModelConfig
from aggan.errors import AgganError
from aggan.images import read_image
from aggan.networks import Translator, init_weights
from aggan.translate import pad_to_multiple, translate_paths, translate_tensor
from conftest import SHARED_DATA, random_image

HORSES = SHARED_DATA / "horse2zebra" / "testA"


@pytest.fixture(scope="module")
def translator() -> Translator:
    model = Translator(ModelConfig(generator_width=8, generator_blocks=2, attention_width=8))
    init_weights(model, torch.Generator().manual_seed(0))
    return model.eval()


def test_real_photos_at_their_size(tmp_path: Path, translator: Translator) -> None:
    if not HORSES.is_dir():
        pytest.skip(f"{HORSES} is not here (shared/ beside the checkout)")
    photos = sorted(HORSES.glob("*.jpg"))[:3]
    written = translate_paths(translator, photos, "a2b", tmp_path, use_attention=True,
                              batch_size=2)
    assert [p.name for p in written] == [f"{p.stem}.png" for p in photos]
    for photo in photos:
        original = read_image(photo)
        output = read_image(tmp_path / f"{photo.stem}.png")
        mask = Image.open(tmp_path / "masks" / f"{photo.stem}.png")
        assert output.shape == original.shape
        assert mask.mode == "L" and mask.size == (original.shape[2], original.shape[1])


@pytest.mark.parametrize(("height", "width"), [(101, 77), (33, 250), (5, 3)])
def test_odd_sizes_from_real_photos(tmp_path: Path, translator: Translator, height: int,
                                    width: int) -> None:
    if HORSES.is_dir():
        photo = Image.open(sorted(HORSES.glob("*.jpg"))[0]).convert("RGB")
        photo.resize((width, height)).save(tmp_path / "odd.jpg")
    else:
        random_image(np.random.default_rng(0), height, width).save(tmp_path / "odd.jpg")
    translate_paths(translator, [tmp_path / "odd.jpg"], "b2a", tmp_path / "out",
                    use_attention=True)
    assert read_image(tmp_path / "out" / "odd.png").shape == (3, height, width)
    assert read_image(tmp_path / "out" / "masks" / "odd.png").shape == (3, height, width)


def test_mask_is_written_unscaled(translator: Translator) -> None:
    images = torch.randint(0, 256, (1, 3, 32, 32), dtype=torch.uint8)
    _, mask = translate_tensor(translator, images, "a2b", use_attention=True)
    with torch.no_grad():
        expected = translator.attention["a"](images.float() / 127.5 - 1)
    assert torch.equal(mask, (expected * 255).round().to(torch.uint8))
    _, ones = translate_tensor(translator, images, "a2b", use_attention=False)
    assert ones.eq(255).all()


def test_batched_equals_one_at_a_time(tmp_path: Path, translator: Translator) -> None:
    rng = np.random.default_rng(1)
    for index, size in enumerate([(32, 40), (32, 40), (32, 40), (20, 24)]):
        random_image(rng, *size).save(tmp_path / f"in{index}.png")
    files = sorted(tmp_path.glob("in*.png"))
    translate_paths(translator, files, "a2b", tmp_path / "one", use_attention=True)
    translate_paths(translator, [tmp_path], "a2b", tmp_path / "batched", use_attention=True,
                    batch_size=3)
    for path in files:
        one = read_image(tmp_path / "one" / f"{path.stem}.png").int()
        batched = read_image(tmp_path / "batched" / f"{path.stem}.png").int()
        assert (one - batched).abs().max() <= 1  # float32 batching noise, at most one grey level


def test_channels_last_translates_like_contiguous(translator: Translator) -> None:
    """load_translator returns a channels-last model (the fast path): same images and masks as
    the plain layout, to one grey level."""
    images = torch.randint(0, 256, (2, 3, 52, 68), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(2))
    fast = copy.deepcopy(translator).to(memory_format=torch.channels_last)
    for plain_out, fast_out in zip(translate_tensor(translator, images, "b2a", True),
                                   translate_tensor(fast, images, "b2a", True), strict=True):
        assert (plain_out.int() - fast_out.int()).abs().max() <= 1


def test_pad_to_multiple() -> None:
    assert pad_to_multiple(torch.zeros(1, 3, 21, 30)).shape == (1, 3, 24, 32)
    assert pad_to_multiple(torch.zeros(1, 3, 1, 1)).shape == (1, 3, 16, 16)


def test_refuses_to_overwrite_inputs(tmp_path: Path, translator: Translator) -> None:
    random_image(np.random.default_rng(0), 8, 8).save(tmp_path / "x.png")
    with pytest.raises(AgganError, match="overwrite"):
        translate_paths(translator, [tmp_path], "a2b", tmp_path, use_attention=True)
    random_image(np.random.default_rng(0), 8, 8).save(tmp_path / "x.jpg")
    with pytest.raises(AgganError, match=r"x\.jpg"):
        translate_paths(translator, [tmp_path], "a2b", tmp_path / "out", use_attention=True)


def test_translating_aggan_output_overwrites_nothing(tmp_path: Path,
                                                    translator: Translator) -> None:
    """A folder holding ``x.png`` and ``x_mask.png`` (what translate wrote before masks moved to
    ``masks/``): every input gets its own translation and mask, none replaced by another's."""
    rng = np.random.default_rng(0)
    for name in ("x", "x_mask", "y", "y_mask", "z", "z_mask"):
        random_image(rng, 16, 16).save(tmp_path / f"{name}.png")
    written = translate_paths(translator, [tmp_path], "a2b", tmp_path / "out",
                              use_attention=True)
    assert len(written) == 6
    files = sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*.png"))
    assert len(files) == 12
    expected = translate_tensor(translator, read_image(tmp_path / "x.png")[None], "a2b", True)
    assert torch.equal(read_image(tmp_path / "out" / "masks" / "x.png")[:1], expected[1][0])


def test_refuses_outputs_that_collide(tmp_path: Path, translator: Translator) -> None:
    """Every file translate writes is checked against the inputs and against each other."""
    (tmp_path / "masks").mkdir()
    random_image(np.random.default_rng(0), 8, 8).save(tmp_path / "masks" / "y.png")
    random_image(np.random.default_rng(0), 8, 8).save(tmp_path / "x.jpg")
    with pytest.raises(AgganError, match=r"would both write .*o/y\.png"):
        translate_paths(translator, [tmp_path / "masks", tmp_path / "masks" / "y.png"], "a2b",
                        tmp_path / "o", use_attention=True)
    # Into the inputs' own folder, y's mask would land on the input masks/y.png.
    with pytest.raises(AgganError, match=r"writing .*masks/y\.png would overwrite the input"):
        translate_paths(translator, [tmp_path / "x.jpg", tmp_path / "masks" / "y.png"], "a2b",
                        tmp_path, use_attention=True)
    assert not (tmp_path / "o").exists() and not (tmp_path / "x.png").exists()
