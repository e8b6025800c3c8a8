"""The synthetic dataset: deterministic, domains differ only inside the objects."""

from __future__ import annotations

from pathlib import Path

import torch

from aggan.images import list_images, read_image
from aggan.synthetic import render_scene, write_dataset


def test_scenes_are_deterministic_and_distinct() -> None:
    first, again = render_scene(0, "train", "a", 3, 32), render_scene(0, "train", "a", 3, 32)
    assert torch.equal(first.image, again.image)
    assert not torch.equal(first.image, render_scene(0, "train", "a", 4, 32).image)
    assert not torch.equal(first.image, render_scene(1, "train", "a", 3, 32).image)


def test_truth_differs_from_image_only_inside_the_mask() -> None:
    for index in range(5):
        scene = render_scene(0, "test", "a", index, 64)
        objects = scene.mask[0] > 127
        assert 0.02 < objects.float().mean() < 0.4
        difference = (scene.image.int() - scene.truth.int()).abs().sum(0)
        assert difference[~objects].max() == 0
        assert difference[objects].float().mean() > 100
        # Red objects in A, blue in B.
        red, blue = scene.image[0][objects].float().mean(), scene.image[2][objects].float().mean()
        assert red > blue + 50


def test_write_dataset_layout(tmp_path: Path) -> None:
    counts = write_dataset(tmp_path, size_px=32, train_images=3, test_images=2, seed=0)
    assert counts == {"trainA": 3, "trainB": 3, "testA": 2, "testB": 2}
    for folder in ("testA_mask", "testA_truth", "testB_mask", "testB_truth"):
        assert len(list_images(tmp_path / folder)) == 2
    scene = render_scene(0, "test", "b", 1, 32)
    assert torch.equal(read_image(tmp_path / "testB" / "testB_00001.png"), scene.image)
    assert (tmp_path / "synthetic.json").is_file()
