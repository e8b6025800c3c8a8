"""The unpaired training stream: deterministic, independent of workers, resumable by position."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from aggan.config import DataConfig
from aggan.data import (
    FolderDomain,
    UnpairedTrainingSet,
    augment,
    ground_truth,
    monitored_domain,
    open_domain,
    split_training,
    training_loader,
    validation_count,
    with_validation_count,
)
from aggan.errors import AgganError
from aggan.images import read_image
from aggan.synthetic import write_dataset


def _dataset(root: str = "synthetic") -> UnpairedTrainingSet:
    config = DataConfig(root=root, size_px=32, workers=0)
    return UnpairedTrainingSet(open_domain(config, "train", "a"), open_domain(config, "train", "b"),
                               config, seed=0)


def _take(loader: torch.utils.data.DataLoader, count: int) -> list[torch.Tensor]:
    batches = []
    for index, (real_a, real_b) in enumerate(loader):
        batches.append(torch.cat([real_a, real_b]))
        if index + 1 == count:
            return batches
    raise AssertionError("stream ended")


def test_stream_is_independent_of_workers_and_resumes_by_position(
        image_folder_factory) -> None:
    dataset = _dataset(str(image_folder_factory(count=5)))
    plain = _take(training_loader(dataset, batch_size=2, start_step=0, workers=0,
                                  pin_memory=False), 6)
    threaded = _take(training_loader(dataset, batch_size=2, start_step=0, workers=2,
                                     pin_memory=False), 6)
    resumed = _take(training_loader(dataset, batch_size=2, start_step=3, workers=0,
                                    pin_memory=False), 3)
    for expected, actual in zip(plain, threaded, strict=True):
        assert torch.equal(expected, actual)
    for expected, actual in zip(plain[3:], resumed, strict=True):
        assert torch.equal(expected, actual)


def test_each_epoch_visits_every_image_once_and_domains_shuffle_independently() -> None:
    dataset = _dataset()
    count = len(dataset.domains["a"])
    order_a = [dataset._index("a", p) for p in range(count)]
    order_b = [dataset._index("b", p) for p in range(count)]
    assert sorted(order_a) == list(range(count))
    assert order_a != order_b
    assert [dataset._index("a", p) for p in range(count, 2 * count)] != order_a


def test_augment_shape_range_and_determinism() -> None:
    image = torch.randint(0, 256, (3, 40, 50), dtype=torch.uint8)
    out = augment(image, load_size_px=36, size_px=32, flip=True,
                  generator=torch.Generator().manual_seed(1))
    again = augment(image, load_size_px=36, size_px=32, flip=True,
                    generator=torch.Generator().manual_seed(1))
    assert out.shape == (3, 32, 32) and out.min() >= -1 and out.max() <= 1
    assert torch.equal(out, again)


def test_folder_errors_name_the_folder(tmp_path: Path, image_folder_factory) -> None:
    with pytest.raises(AgganError, match="missing"):
        open_domain(DataConfig(root=str(tmp_path), size_px=32), "train", "a")
    (tmp_path / "empty").mkdir()
    with pytest.raises(AgganError, match="holds no images"):
        FolderDomain(tmp_path / "empty")
    root = image_folder_factory()
    (root / "trainA" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(AgganError, match=r"broken\.png"):
        open_domain(DataConfig(root=str(root), size_px=32), "train", "a")


def test_ground_truth_from_written_synthetic_matches_generated(tmp_path: Path) -> None:
    write_dataset(tmp_path, size_px=32, train_images=2, test_images=3, seed=0)
    from_disk = ground_truth(DataConfig(root=str(tmp_path), size_px=32), "a")
    generated = ground_truth(DataConfig(size_px=32), "a")
    assert from_disk is not None and generated is not None
    assert len(from_disk) == 3 and len(generated) == 50
    for disk, live in zip(from_disk, generated, strict=False):
        assert torch.equal(disk.image, live.image) and torch.equal(disk.truth, live.truth)
        assert torch.equal(disk.mask, live.mask)
    assert ground_truth(DataConfig(root=str(tmp_path / "nowhere"), size_px=32), "a") is None


def test_validation_images_are_held_out_of_training(image_folder_factory) -> None:
    """data.validation_images: a seeded draw of training images per domain that training never
    sees and the monitors measure on; the same draw every time; too many is one line."""
    root = image_folder_factory(count=7)
    config = DataConfig(root=str(root), size_px=32, validation_images=3)
    for domain in "ab":
        kept, held = split_training(config, domain)
        assert held is not None and (len(kept), len(held)) == (4, 3)
        names = {kept.name(i) for i in range(len(kept))}
        held_names = {held.name(i) for i in range(len(held))}
        assert not names & held_names and len(names | held_names) == 7
        assert torch.equal(held.load(0), read_image(root / f"train{domain.upper()}" /
                                                    f"{held.name(0)}.png"))
        again = split_training(config, domain)[1]
        assert [again.name(i) for i in range(3)] == [held.name(i) for i in range(3)]
        monitored = monitored_domain(config, domain)
        assert [monitored.name(i) for i in range(3)] == [held.name(i) for i in range(3)]
    plain = DataConfig(root=str(root), size_px=32)
    assert split_training(plain, "a")[1] is None and len(split_training(plain, "a")[0]) == 7
    assert monitored_domain(plain, "a").name(0) == "img0"  # the test images
    with pytest.raises(AgganError, match=r"data.validation_images \(7\) leaves no training"):
        split_training(DataConfig(root=str(root), size_px=32, validation_images=7), "a")


@pytest.mark.parametrize(("photos", "held_out"), [((1500, 1200), 100), ((1500, 35), 3),
                                                  ((35, 1500), 3), ((9, 9), 0)])
def test_by_default_a_tenth_of_the_smaller_domain_is_held_out(tmp_path: Path,
                                                              photos: tuple[int, int],
                                                              held_out: int) -> None:
    """data.validation_images=None (the default): a tenth of the smaller domain's training
    photos, at most 100, and what a run writes is that number; none of the synthetic scenes;
    a number given is kept."""
    for domain, count in zip("AB", photos, strict=True):
        (tmp_path / f"train{domain}").mkdir()
        for index in range(count):  # counted, never decoded
            (tmp_path / f"train{domain}" / f"{index}.png").touch()
    config = DataConfig(root=str(tmp_path), size_px=32)
    assert validation_count(config) == held_out
    assert with_validation_count(config).validation_images == held_out
    assert validation_count(dataclasses.replace(config, validation_images=7)) == 7
    assert validation_count(DataConfig(size_px=32)) == 0  # the synthetic scenes
