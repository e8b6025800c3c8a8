"""FID and KID from Inception features, computed by torchmetrics, with an on-disk feature cache.

torchmetrics' ``FrechetInceptionDistance`` and ``KernelInceptionDistance`` take any feature
module; we give them features we extracted ourselves (through a pass-through module), so that the
features of real image sets can be cached and a second evaluation of the same data costs nothing.

KID is reported x100, mean +- std over random subsets, as the attention-GAN papers do; FID with
its sample sizes (with 100-odd test images FID is strongly biased upwards; KID is not).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import pickle
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

from aggan.config import DataConfig
from aggan.data import DomainImages
from aggan.errors import AgganError
from aggan.images import atomic_write
from aggan.metrics.inception import FEATURES

logger = logging.getLogger(__name__)

KID_SUBSETS = 100
KID_SUBSET_SIZE = 100  # capped at the smaller sample size
CACHE_PROTOCOL = "nvlabs-tf-bilinear-299-uint8-v1"


class _Precomputed(nn.Module):
    """Hands torchmetrics features that are already computed."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, features: Tensor) -> Tensor:
        return features


@dataclass(frozen=True)
class FidKid:
    """FID, and KID x100 as mean and std over ``kid_subsets`` subsets of ``kid_subset_size``."""

    fid: float
    kid_x100_mean: float
    kid_x100_std: float
    real_images: int
    fake_images: int
    kid_subsets: int
    kid_subset_size: int


def frechet_distance(real: Tensor, fake: Tensor) -> float:
    """FID between two (N, D) feature sets (torchmetrics, float64 statistics)."""
    metric = FrechetInceptionDistance(feature=_Precomputed(real.shape[1]))
    metric.update(real.double(), real=True)
    metric.update(fake.double(), real=False)
    return float(metric.compute())


def kernel_distance(real: Tensor, fake: Tensor, *, subsets: int = KID_SUBSETS,
                    subset_size: int = KID_SUBSET_SIZE, seed: int = 0) -> tuple[float, float]:
    """KID (unbiased MMD^2, cubic polynomial kernel): mean and std over random subsets.

    torchmetrics draws the subsets from the global generator; it is forked and seeded here so the
    value is reproducible and the caller's random state is untouched.
    """
    size = min(subset_size, len(real), len(fake))
    if size < 2:
        raise AgganError(f"KID needs at least 2 images per set, got {len(real)} and {len(fake)}")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*will save all extracted features")
        metric = KernelInceptionDistance(feature=_Precomputed(real.shape[1]), subsets=subsets,
                                         subset_size=size)
    metric.update(real.double(), real=True)
    metric.update(fake.double(), real=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mean, std = metric.compute()
    return float(mean), float(std)


def fid_kid(real: Tensor, fake: Tensor, *, seed: int = 0) -> FidKid:
    """Both metrics for (N, 2048) real and (M, 2048) fake features."""
    size = min(KID_SUBSET_SIZE, len(real), len(fake))
    kid_mean, kid_std = kernel_distance(real, fake, subset_size=size, seed=seed)
    return FidKid(fid=frechet_distance(real, fake), kid_x100_mean=100 * kid_mean,
                  kid_x100_std=100 * kid_std, real_images=len(real), fake_images=len(fake),
                  kid_subsets=KID_SUBSETS, kid_subset_size=size)


FID_MIN_IMAGES = 50  # per set: below it, FID's bias swamps differences between models


def small_set_notes(scores: FidKid) -> list[str]:
    """What a reader must know when the sets are too small for the numbers to mean much."""
    notes = []
    smaller = min(scores.real_images, scores.fake_images)
    if scores.kid_subset_size >= smaller:
        notes.append(f"KID: with {smaller} images every one of the {scores.kid_subsets} subsets "
                     f"of {scores.kid_subset_size} is the whole set, so its ± is 0 and says "
                     f"nothing; the subsets differ from {KID_SUBSET_SIZE + 1} images per set on")
    if smaller < FID_MIN_IMAGES:
        notes.append(f"FID: {smaller} images per set is too few (under {FID_MIN_IMAGES}) for FID "
                     "to tell models apart; compare KID")
    return notes


def files_identity(paths: Sequence[Path]) -> dict[str, Any]:
    """What identifies a set of image files: each file's path, byte size and modification time."""
    files = []
    for path in paths:
        stat = path.stat()
        files.append([str(path.resolve()), stat.st_size, stat.st_mtime_ns])
    return {"files": files}


def domain_identity(images: DomainImages, data: DataConfig, split: str, domain: str,
                    indices: Sequence[int] | None = None) -> dict[str, Any]:
    """What names a set of real images (all of a domain's, or those at ``indices``) for the
    feature cache."""
    all_paths = getattr(images, "paths", None)  # a folder, or a part of one
    if all_paths is not None:
        paths = all_paths if indices is None else [all_paths[i] for i in indices]
        return files_identity(paths)
    synthetic = dataclasses.asdict(data.synthetic)
    identity = {"synthetic": synthetic, "size_px": data.size_px, "split": split,
                "domain": domain}
    return identity if indices is None else {**identity, "indices": list(indices)}


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/aggan`` (``~/.cache/aggan``): where features of real images are kept."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "aggan"


def cache_key(identity: dict[str, Any], network_sha1: str) -> str:
    """Names a feature set by what identifies its images, the network and the preprocessing, so
    that a change to any of them misses the cache."""
    blob = json.dumps({**identity, "network": network_sha1, "protocol": CACHE_PROTOCOL},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def cached_features(identity: dict[str, Any], count: int, network_sha1: str,
                    cache_dir: Path | None, compute: Callable[[], Tensor]) -> Tensor:
    """Features of ``count`` images from the cache, or computed and stored there atomically."""
    if cache_dir is None:
        return compute()
    path = cache_dir / f"features-{cache_key(identity, network_sha1)}.pt"
    if path.is_file():
        try:
            features = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(features, Tensor) and features.shape == (count, FEATURES):
                logger.info("features of %d images from cache %s", count, path)
                return features
        except (pickle.UnpicklingError, RuntimeError, OSError, ValueError, EOFError):
            pass  # a broken cache entry is recomputed and replaced
        logger.warning("ignoring unreadable feature cache %s", path)
    features = compute()
    atomic_write(path, lambda temp: torch.save(features, temp))
    return features
