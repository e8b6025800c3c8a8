"""Unpaired training data: two domains, each shuffled and augmented on its own.

Item ``p`` of the training stream is a pure function of (seed, p): for each domain, the epoch
``p // n`` fixes a permutation, ``p % n`` a place in it, and a per-item generator the crop and
flip. So the stream does not depend on worker count or timing, and resuming at step ``k`` with batch
``B`` continues at item ``k * B`` exactly where the interrupted run would have.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision.transforms.v2 import functional as TF

from aggan.config import VALIDATION_IMAGES_AUTO_MAX, DataConfig
from aggan.domains import DOMAINS
from aggan.errors import AgganError
from aggan.images import list_images, read_image, to_float
from aggan.synthetic import SyntheticDomain, seeded_generator

logger = logging.getLogger(__name__)


class DomainImages(Protocol):
    """The images of one domain and split."""

    def __len__(self) -> int: ...

    def name(self, index: int) -> str: ...

    def load(self, index: int) -> Tensor:
        """uint8 (3, H, W)."""
        ...


class FolderDomain:
    """Image files in one folder, checked once when opened so that a bad file fails at start."""

    def __init__(self, folder: Path, *, check: bool = True) -> None:
        if not folder.is_dir():
            raise AgganError(f"{folder} does not exist or is not a folder")
        self.folder = folder
        self.paths = list_images(folder)
        if not self.paths:
            raise AgganError(f"{folder} holds no images")
        if check:
            with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
                # read_image raises AgganError naming the first bad file.
                for _ in pool.map(read_image, self.paths):
                    pass

    def __len__(self) -> int:
        return len(self.paths)

    def name(self, index: int) -> str:
        return self.paths[index].stem

    def load(self, index: int) -> Tensor:
        return read_image(self.paths[index])


def _split_folder(root: Path, split: str, domain: str) -> Path:
    return root / f"{split}{domain.upper()}"


def open_domain(config: DataConfig, split: str, domain: str) -> DomainImages:
    """Domain ``"a"`` or ``"b"`` of ``split`` (``"train"`` or ``"test"``)."""
    if config.root == "synthetic":
        synthetic = config.synthetic
        count = synthetic.train_images if split == "train" else synthetic.test_images
        return SyntheticDomain(seed=synthetic.seed, split=split, domain=domain, count=count,
                               size_px=config.size_px)
    root = Path(config.root)
    if not root.is_dir():
        raise AgganError(f"--data: {root} does not exist or is not a folder")
    folder = _split_folder(root, split, domain)
    if not folder.is_dir():
        raise AgganError(f"--data: {folder} is missing (expected the CycleGAN layout "
                         "trainA/ trainB/ testA/ testB)")
    return FolderDomain(folder)


class SubsetDomain:
    """Some of a domain's images, by index: the training or the validation part of a split."""

    def __init__(self, images: DomainImages, indices: list[int]) -> None:
        self.images, self.indices = images, indices
        if isinstance(images, FolderDomain):  # what names the set in the feature cache
            self.paths = [images.paths[i] for i in indices]

    def __len__(self) -> int:
        return len(self.indices)

    def name(self, index: int) -> str:
        return self.images.name(self.indices[index])

    def load(self, index: int) -> Tensor:
        return self.images.load(self.indices[index])


def validation_count(config: DataConfig) -> int:
    """How many training images per domain ``data.validation_images`` holds out; its default
    (None) counts the photos: a tenth of the smaller domain's, at most
    ``VALIDATION_IMAGES_AUTO_MAX``, and none of the synthetic scenes."""
    if config.validation_images is not None:
        return config.validation_images
    if config.root == "synthetic":
        return 0
    folders = [_split_folder(Path(config.root), "train", domain) for domain in DOMAINS]
    # A missing folder counts none here; opening it names it.
    smaller = min(len(list_images(folder)) if folder.is_dir() else 0 for folder in folders)
    return min(VALIDATION_IMAGES_AUTO_MAX, smaller // 10)


def with_validation_count(config: DataConfig) -> DataConfig:
    """``config`` with ``data.validation_images`` as the number it holds out (what a run
    writes, so that its config says which images it trained on)."""
    return dataclasses.replace(config, validation_images=validation_count(config))


def split_training(config: DataConfig, domain: str) -> tuple[DomainImages, DomainImages | None]:
    """The training images of ``domain`` less the ``data.validation_images`` held out of them,
    and those held out (None where none are)."""
    images = open_domain(config, "train", domain)
    count = validation_count(config)
    if not count:
        return images, None
    if count >= len(images):
        raise AgganError(f"data.validation_images ({count}) leaves no training images of domain "
                         f"{domain.upper()} ({len(images)} in all)")
    order = torch.randperm(len(images), generator=seeded_generator("validation", domain))
    return (SubsetDomain(images, sorted(order[count:].tolist())),
            SubsetDomain(images, sorted(order[:count].tolist())))


def monitored_domain(config: DataConfig, domain: str) -> DomainImages | None:
    """What the monitors during training measure: the validation images where the run holds
    some out, else the test images (None where the data has no test folder)."""
    if validation_count(config):
        return split_training(config, domain)[1]
    return open_test_domain(config, domain)


def open_test_domain(config: DataConfig, domain: str) -> DomainImages | None:
    """The test images of ``domain``, or None where the data has no such folder."""
    if config.root != "synthetic" and not _split_folder(Path(config.root), "test", domain).is_dir():
        return None
    return open_domain(config, "test", domain)


@dataclass(frozen=True)
class GroundTruthItem:
    """A test image with its true object mask (uint8 (1, H, W), 255 inside) and its true
    translation into the other domain (uint8 (3, H, W))."""

    name: str
    image: Tensor
    mask: Tensor
    truth: Tensor


def ground_truth(config: DataConfig, domain: str) -> list[GroundTruthItem] | None:
    """The test set of ``domain`` with ground truth, or None where the data has none (only the
    synthetic dataset, generated or written by ``aggan data synthetic``, has it)."""
    if config.root == "synthetic":
        images = open_domain(config, "test", domain)
        assert isinstance(images, SyntheticDomain)
        items = []
        for index in range(len(images)):
            scene = images.scene(index)
            items.append(GroundTruthItem(images.name(index), scene.image, scene.mask, scene.truth))
        return items
    folder = _split_folder(Path(config.root), "test", domain)
    mask_folder, truth_folder = Path(f"{folder}_mask"), Path(f"{folder}_truth")
    if not (folder.is_dir() and mask_folder.is_dir() and truth_folder.is_dir()):
        return None
    items = []
    for path in list_images(folder):
        mask_path, truth_path = mask_folder / f"{path.stem}.png", truth_folder / f"{path.stem}.png"
        if not (mask_path.is_file() and truth_path.is_file()):
            raise AgganError(f"{path} has no ground truth at {mask_path} and {truth_path}")
        mask = read_image(mask_path)[:1]
        items.append(GroundTruthItem(path.stem, read_image(path), mask, read_image(truth_path)))
    return items


def augment(image: Tensor, *, load_size_px: int, size_px: int, flip: bool,
            generator: torch.Generator) -> Tensor:
    """Resize to a square ``load_size_px``, random crop ``size_px``, random horizontal flip.

    uint8 (3, H, W) in; float32 (3, size_px, size_px) in [-1, 1] out.
    """
    image = TF.resize(image, [load_size_px, load_size_px], antialias=True)
    top, left = (int(v) for v in torch.randint(load_size_px - size_px + 1, (2,),
                                                generator=generator))
    image = TF.crop(image, top, left, size_px, size_px)
    if flip and torch.rand((), generator=generator) < 0.5:
        image = TF.horizontal_flip(image)
    return to_float(image)


class UnpairedTrainingSet(Dataset):
    """Item ``p``: one augmented image of each domain, drawn independently."""

    def __init__(self, images_a: DomainImages, images_b: DomainImages, config: DataConfig,
                 seed: int) -> None:
        self.domains = {"a": images_a, "b": images_b}
        self.config = config
        self.seed = seed
        self._permutations: dict[tuple[str, int], Tensor] = {}
        self._unreadable: set[str] = set()  # warned about once each

    def __len__(self) -> int:
        return max(len(images) for images in self.domains.values())

    def _index(self, domain: str, position: int) -> int:
        count = len(self.domains[domain])
        epoch = position // count
        key = (domain, epoch)
        if key not in self._permutations:
            self._permutations = {k: v for k, v in self._permutations.items() if k[0] != domain}
            self._permutations[key] = torch.randperm(
                count, generator=seeded_generator(self.seed, "order", domain, epoch))
        return int(self._permutations[key][position % count])

    def _load(self, domain: str, index: int) -> Tensor:
        """The image at ``index``, or, if its file went bad since the run started (deleted,
        truncated), a warning naming it and the next readable image: a long run goes on."""
        source = self.domains[domain]
        for offset in range(len(source)):
            try:
                return source.load((index + offset) % len(source))
            except AgganError as error:
                if str(error) not in self._unreadable:
                    self._unreadable.add(str(error))
                    logger.warning("skipping an image that became unreadable during training: "
                                   "%s", error)
        raise AgganError(f"no image of domain {domain.upper()} can be read any more")

    def __getitem__(self, position: int) -> tuple[Tensor, Tensor]:
        images = []
        for domain in self.domains:
            raw = self._load(domain, self._index(domain, position))
            generator = seeded_generator(self.seed, "augment", domain, position)
            images.append(augment(raw, load_size_px=self.config.resolved_load_size_px,
                                  size_px=self.config.size_px, flip=self.config.flip,
                                  generator=generator))
        return images[0], images[1]


class StreamSampler(Sampler[int]):
    """This rank's positions of the training stream from ``start_step`` on, without end.

    Step ``s`` consumes positions ``s * B * W`` to ``(s + 1) * B * W - 1`` of the stream; rank
    ``r`` takes the ``r``-th block of ``B``. So W processes with batch B see exactly what one
    process with batch B x W sees, and every epoch reshuffles for all of them.
    """

    def __init__(self, start_step: int, batch_size: int, rank: int = 0,
                 world_size: int = 1) -> None:
        self.start_step, self.batch_size = start_step, batch_size
        self.rank, self.world_size = rank, world_size

    def __iter__(self) -> Iterator[int]:
        step = self.start_step
        while True:
            first = (step * self.world_size + self.rank) * self.batch_size
            yield from range(first, first + self.batch_size)
            step += 1


def training_loader(dataset: UnpairedTrainingSet, *, batch_size: int, start_step: int,
                    workers: int, pin_memory: bool, rank: int = 0,
                    world_size: int = 1) -> DataLoader:
    """Batches of (real_a, real_b) for this rank from step ``start_step`` on."""
    sampler = StreamSampler(start_step, batch_size, rank, world_size)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                      pin_memory=pin_memory, prefetch_factor=4 if workers else None,
                      worker_init_fn=_ignore_stop_signals)


def _ignore_stop_signals(worker_id: int) -> None:
    """SLURM, systemd and a terminal signal the whole process group: the main process decides
    when to stop (after the step, with a checkpoint), so a worker must not die first."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def fixed_samples(data: DataConfig, domain: str, count: int) -> Tensor:
    """The first ``count`` test images of ``domain`` (train images where there is no test
    folder), resized to the training size: the same rows in every sample grid."""
    images = open_test_domain(data, domain) or open_domain(data, "train", domain)
    size = data.size_px
    rows = []
    for index in range(min(count, len(images))):
        image = images.load(index)
        rows.append(torch.nn.functional.interpolate(
            to_float(image)[None], size=(size, size), mode="bilinear", antialias=True,
            align_corners=False)[0])
    return torch.stack(rows)
