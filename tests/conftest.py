"""Shared fixtures: a tiny, fast config and factories for image folders with odd files."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from aggan.config import RunConfig, build_config, section_of

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _deterministic() -> None:
    torch.manual_seed(0)


def tiny_layer(**fields: object) -> dict:
    """32 px, narrow networks, no workers: a training step in milliseconds. Each keyword is a
    field of a section below the data (``steps=8``: ``schedule.steps``), set in its section."""
    layer: dict[str, dict] = {
        "model": {"generator_width": 8, "generator_blocks": 2, "attention_width": 8,
                  "discriminator_width": 8},
        "data": {"root": "synthetic", "size_px": 32, "workers": 0,
                 "synthetic": {"train_images": 40, "test_images": 6}},
        "schedule": {"steps": 20},
        "monitor": {"log_every_steps": 5, "sample_every_steps": 10, "checkpoint_every_steps": 10},
        "runtime": {"device": "cpu"},
    }
    for name, value in fields.items():
        layer.setdefault(section_of(name), {})[name] = value
    return layer


def with_fields(config: RunConfig, **fields: object) -> RunConfig:
    """``config`` with each keyword's field replaced in its section."""
    changes: dict[str, dict[str, object]] = {}
    for name, value in fields.items():
        changes.setdefault(section_of(name), {})[name] = value
    return dataclasses.replace(config, **{
        section: dataclasses.replace(getattr(config, section), **values)
        for section, values in changes.items()})


@pytest.fixture
def tiny_config() -> RunConfig:
    return build_config(tiny_layer())


def random_image(rng: np.random.Generator, height: int, width: int) -> Image.Image:
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


@pytest.fixture(scope="session")
def learned_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A short run of the default recipe (warm-up, attention, switch) at 48 px, 600 steps: long
    enough for the attention to find the objects (about a CPU minute). At 32 px the attention's
    1/4-resolution maps are 8 x 8 and the run collapses or not by float rounding alone
    (measured: 3 of 4 runs collapsed, seeds 0-2); at 48 px seeds 0-2 all reached IoU 0.77-0.83
    before the photo additions of issue #11, seed 0 0.84 and 0.85 with them. Its area floor is
    the one those were measured with, 0.1 (about the scenes' objects' share; the photos'
    default of 0.2 pushed the masks past the objects and the a2b FID above the identity's)."""
    from aggan.train import train

    layer = tiny_layer(steps=600, log_every_steps=50, sample_every_steps=600,
                       checkpoint_every_steps=600, lr=2e-4, mask_area_min=0.1)
    layer["model"].update(generator_width=16, attention_width=16, generator_blocks=3,
                          discriminator_width=32)
    layer["data"]["synthetic"].update(train_images=400, test_images=24)
    layer["data"]["size_px"] = 48
    run_dir = tmp_path_factory.mktemp("learned")
    train(build_config(layer), run_dir, progress=False, tensorboard=False)
    return run_dir


@pytest.fixture(scope="session")
def tiny_model_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model past its warm-up and switch (6 steps), exported as a model folder."""
    from aggan.model_folder import export_model
    from aggan.train import train

    root = tmp_path_factory.mktemp("tiny_model")
    train(build_config(tiny_layer(steps=6, attention_warmup_step=2, switch_step=4)),
          root / "run", progress=False, tensorboard=False)
    export_model(root / "run", root / "model", dtype="float32")
    return root / "model"


@pytest.fixture
def image_folder_factory(tmp_path: Path):
    """make(name, count, size) -> a CycleGAN-layout root with trainA/trainB/testA/testB."""

    def make(name: str = "data", count: int = 3, size: tuple[int, int] = (40, 48)) -> Path:
        rng = np.random.default_rng(0)
        root = tmp_path / name
        for folder in ("trainA", "trainB", "testA", "testB"):
            (root / folder).mkdir(parents=True)
            for index in range(count):
                random_image(rng, *size).save(root / folder / f"img{index}.png")
        return root

    return make
