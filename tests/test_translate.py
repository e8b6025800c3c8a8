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
from aggan.translate import pad_to_multiple, parse_scale, translate_paths, translate_tensor
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
                              batch_size=2).written
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
    """load_model returns a channels-last model (the fast path): same images and masks as
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
                              use_attention=True).written
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


def _attention_bias(translator: Translator, bias: float) -> Translator:
    """A copy whose attention outputs sigmoid(bias) everywhere (last conv zeroed)."""
    model = copy.deepcopy(translator)
    for attention in model.attention.values():
        last = [m for m in attention.modules() if isinstance(m, torch.nn.Conv2d)][-1]
        torch.nn.init.zeros_(last.weight)
        torch.nn.init.constant_(last.bias, bias)
    return model


def test_mask_zero_leaves_full_resolution_pixels_untouched(translator: Translator) -> None:
    """At the training scale the networks see a small copy, but where the mask is 0 the output
    is the input's own full-resolution pixels, bit for bit."""
    images = torch.randint(0, 256, (1, 3, 203, 157), dtype=torch.uint8)
    closed = _attention_bias(translator, -200.0)  # sigmoid(-200) == 0 in float32
    translated, mask = translate_tensor(closed, images, "a2b", True, scale_px=32)
    assert translated.shape == images.shape and mask.shape == (1, 1, 203, 157)
    assert mask.eq(0).all()
    assert torch.equal(translated, images)


def test_training_scale_runs_the_networks_small_and_composites_up(
        translator: Translator) -> None:
    """scale_px: the networks see the shorter side at scale_px; the output is
    up(mask) * up(F) + (1 - up(mask)) * input at the input's size."""
    images = torch.randint(0, 256, (1, 3, 120, 80), dtype=torch.uint8)
    seen: list[tuple[int, ...]] = []
    original = translator.parts

    def spy(x: torch.Tensor, *args: object) -> tuple[torch.Tensor, torch.Tensor]:
        seen.append(tuple(x.shape[-2:]))
        return original(x, *args)

    translator.parts = spy  # type: ignore[method-assign]
    try:
        translated, _ = translate_tensor(translator, images, "a2b", True, scale_px=40)
        native, _ = translate_tensor(translator, images, "a2b", True)
    finally:
        del translator.parts
    assert seen == [(60, 40), (120, 80)]
    full = images.float() / 127.5 - 1
    small = torch.nn.functional.interpolate(full, size=(60, 40), mode="bilinear",
                                            antialias=True, align_corners=False)
    generated, small_mask = translator.parts(small, "a2b", True)
    up = {name: torch.nn.functional.interpolate(x, size=(120, 80), mode="bilinear",
                                                align_corners=False)
          for name, x in (("g", generated), ("m", small_mask))}
    expected = up["m"] * up["g"] + (1 - up["m"]) * full
    assert (translated.float() - ((expected + 1) * 127.5).round().clamp(0, 255)).abs().max() <= 1
    assert not torch.equal(translated, native)  # the scale changed what the networks saw


def test_mask_threshold_cuts_hard(translator: Translator) -> None:
    images = torch.randint(0, 256, (1, 3, 64, 48), dtype=torch.uint8)
    half_open = _attention_bias(translator, 0.0)  # mask 0.5 everywhere
    below, mask_below = translate_tensor(half_open, images, "a2b", True, mask_threshold=0.6)
    assert torch.equal(below, images) and mask_below.eq(0).all()
    above, mask_above = translate_tensor(half_open, images, "a2b", True, mask_threshold=0.4)
    generated, _ = translator.parts(images.float() / 127.5 - 1, "a2b", True)
    assert mask_above.eq(255).all()
    expected = ((generated + 1) * 127.5).round().clamp(0, 255)
    assert (above.float() - expected).abs().max() <= 1


@pytest.mark.parametrize("value", ["huge", "8", "-3", "1.5"])
def test_bad_scale_is_one_line(value: str) -> None:
    with pytest.raises(AgganError, match="--scale"):
        parse_scale(value)
