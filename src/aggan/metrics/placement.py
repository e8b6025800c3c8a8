"""Where an attention mask sits, measured without mask labels: an occlusion test.

Two unpaired domains differ in their objects (horses and zebras); the backgrounds are alike. A
classifier that tells the domains apart therefore takes its evidence from the objects, and a
mask on the objects hides that evidence when the region it covers is greyed out. The same mask
moved elsewhere in the photo hides less. So, per photo ``x`` with mask ``m``:

    placement = mean_k L(grey(x, shift_k(m))) - L(grey(x, m))

where ``L`` is the classifier's log-odds for the photo's own (source) domain, ``grey(x, m)``
is ``x * (1 - m) + grey * m``, and ``shift_k`` are circular shifts by a quarter to three
quarters of each side (the same shape and area, placed elsewhere). Log-odds, as in Zintgraf et
al.'s prediction difference analysis, so that a confidently classified photo counts as much as
an uncertain one. Read it as: how many nats of domain evidence the mask hides beyond a mask of
the same shape at a chance place. 0 is chance; a mask of ones scores 0 exactly (every shift is
itself); a mask on the background scores below 0. ``hit_rate`` is the share of photos where the
mask hides more than the mean of its shifts.

The classifier is a logistic-regression probe on the FID Inception's pool3 features (the network
ships without a classifier head) of photos from the *training* split of both domains, its L2
penalty chosen on a held-out part of them: no test photo, and no mask label, ever reaches it.
Why this measure and not the others measured (``benchmarks/README.md``, "A number for where the
mask is"): it asks the question that matters, "is the mask on what makes the photo a horse",
where agreement of the two attentions across the cycle rewards any consistent place (the sky
too) and agreement with image edges rewards texture wherever it is.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from aggan.config import DataConfig
from aggan.data import DomainImages, split_training
from aggan.domains import DOMAINS
from aggan.errors import AgganError
from aggan.metrics.fid_kid import cached_features, domain_identity
from aggan.metrics.inception import InceptionFeatures

logger = logging.getLogger(__name__)

PROBE_IMAGES = 200  # training photos per domain the probe is fit on (at most)
MIN_PROBE_IMAGES = 10  # fewer per domain: no probe, no placement
SHIFTS = 4  # placements of the same shape elsewhere, per photo
GREY = 128  # uint8: 0 in [-1, 1], and 0 after the Inception's (x - 128) / 128
PROBE_PENALTIES = (1e-3, 1e-2, 1e-1, 1.0)  # L2 penalties tried; the held-out loss picks one
SEED = 0


@dataclass(frozen=True)
class DomainProbe:
    """Logistic regression on standardised Inception features: log-odds of domain b."""

    mean: Tensor  # (2048,)
    scale: Tensor  # (2048,)
    weight: Tensor  # (2048,)
    bias: Tensor  # ()
    penalty: float  # the L2 penalty it was fit with
    heldout_accuracy: float  # on the held-out part of the training photos

    def log_odds_b(self, features: Tensor) -> Tensor:
        return ((features - self.mean) / self.scale) @ self.weight + self.bias

    def log_odds(self, features: Tensor, domain: str) -> Tensor:
        """Log-odds of ``domain`` ("a" or "b") for (N, 2048) features: (N,)."""
        log_odds_b = self.log_odds_b(features)
        return log_odds_b if domain == "b" else -log_odds_b


def _fit_logistic(features: Tensor, labels: Tensor, penalty: float) -> tuple[Tensor, Tensor]:
    """Weights and bias minimising the mean logistic loss + penalty / 2 * |w|^2 (L-BFGS; the
    problem is convex, so the start does not matter)."""
    weight = torch.zeros(features.shape[1], dtype=torch.float64, requires_grad=True)
    bias = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=500, tolerance_grad=1e-9,
                                  line_search_fn="strong_wolfe")

    def objective() -> Tensor:
        optimizer.zero_grad()
        loss = (torch.nn.functional.binary_cross_entropy_with_logits(
            features @ weight + bias, labels) + penalty / 2 * weight.square().sum())
        loss.backward()
        return loss

    optimizer.step(objective)
    return weight.detach(), bias.detach()


def fit_domain_probe(features_a: Tensor, features_b: Tensor) -> DomainProbe:
    """The probe for (N, 2048) features of domain a and (M, 2048) of domain b. A fifth of each
    is held out (a seeded draw) to choose the penalty; the probe is then refit on all."""
    if min(len(features_a), len(features_b)) < MIN_PROBE_IMAGES:
        raise AgganError(f"the placement probe needs at least {MIN_PROBE_IMAGES} training "
                         f"images per domain, got {len(features_a)} and {len(features_b)}")
    features = torch.cat([features_a, features_b]).double()
    labels = torch.cat([torch.zeros(len(features_a)), torch.ones(len(features_b))]).double()
    mean, scale = features.mean(0), features.std(0).clamp(min=1e-6)
    standardised = (features - mean) / scale
    generator = torch.Generator().manual_seed(SEED)
    heldout = torch.zeros(len(features), dtype=torch.bool)
    for members in (torch.arange(len(features_a)), len(features_a) + torch.arange(len(features_b))):
        chosen = members[torch.randperm(len(members), generator=generator)]
        heldout[chosen[:max(1, len(members) // 5)]] = True
    best: tuple[float, float, float] | None = None  # (held-out loss, penalty, accuracy)
    for penalty in PROBE_PENALTIES:
        weight, bias = _fit_logistic(standardised[~heldout], labels[~heldout], penalty)
        logits = standardised[heldout] @ weight + bias
        loss = float(torch.nn.functional.binary_cross_entropy_with_logits(
            logits, labels[heldout]))
        accuracy = float(((logits > 0).double() == labels[heldout]).double().mean())
        if best is None or loss < best[0]:
            best = (loss, penalty, accuracy)
    assert best is not None
    _, penalty, accuracy = best
    weight, bias = _fit_logistic(standardised, labels, penalty)
    return DomainProbe(mean=mean.float(), scale=scale.float(), weight=weight.float(),
                       bias=bias.float(), penalty=penalty, heldout_accuracy=accuracy)


def training_probe(data: DataConfig, inception: InceptionFeatures, cache_dir: Path | None,
                   images_per_domain: int = PROBE_IMAGES,
                   training: Mapping[str, DomainImages] | None = None) -> DomainProbe:
    """The probe fit on up to ``images_per_domain`` training images of each domain of ``data``
    (a seeded draw, never one of the validation images; their features cached like the test
    sets'). ``training``: those images by domain where the caller has them open already."""
    images_by_domain = training or {domain: split_training(data, domain)[0]
                                    for domain in DOMAINS}
    if min(len(images) for images in images_by_domain.values()) < MIN_PROBE_IMAGES:
        raise AgganError(f"the placement probe needs at least {MIN_PROBE_IMAGES} training "
                         f"images per domain in {data.root}")
    features = {}
    for domain, images in images_by_domain.items():
        order = torch.randperm(len(images), generator=torch.Generator().manual_seed(SEED))
        chosen = sorted(order[:images_per_domain].tolist())
        features[domain] = cached_features(
            domain_identity(images, data, "train", domain, chosen), len(chosen),
            inception.sha1, cache_dir,
            lambda images=images, chosen=chosen, domain=domain: inception.extract(
                (images.load(i) for i in chosen), total=len(chosen),
                description=f"train{domain.upper()}: features for the placement probe"))
    probe = fit_domain_probe(features["a"], features["b"])
    logger.info("placement probe: %d + %d training images, L2 penalty %g, held-out accuracy "
                "%.3f", len(features["a"]), len(features["b"]), probe.penalty,
                probe.heldout_accuracy)
    return probe


def shift_offsets(count: int, height: int, width: int, generator: torch.Generator
                  ) -> list[tuple[int, int]]:
    """``count`` circular shifts of a quarter to three quarters of each side: the shape moved
    well away from where it was, whole (what leaves one edge comes in at the other)."""
    offsets = []
    for _ in range(count):
        dy = int(torch.randint(height // 4, max(height // 4 + 1, 3 * height // 4), (1,),
                               generator=generator))
        dx = int(torch.randint(width // 4, max(width // 4 + 1, 3 * width // 4), (1,),
                               generator=generator))
        offsets.append((dy, dx))
    return offsets


def greyed(image: Tensor, mask: Tensor) -> Tensor:
    """uint8 (3, H, W) with the region of ``mask`` (float (1, H, W) in [0, 1]) blended to grey."""
    return (image.float() * (1 - mask) + GREY * mask).round().clamp(0, 255).to(torch.uint8)


def as_float_mask(mask: Tensor) -> Tensor:
    """A uint8 (0-255) or float (0-1) mask (1, H, W) as float in [0, 1]."""
    return mask.float() / 255 if mask.dtype == torch.uint8 else mask.float()


def _occlusions(images: Sequence[Tensor], masks: Sequence[Tensor], shifts: int
                ) -> Iterator[Tensor]:
    generator = torch.Generator().manual_seed(SEED)
    for image, mask in zip(images, masks, strict=True):
        mask = as_float_mask(mask)
        yield greyed(image, mask)
        for dy, dx in shift_offsets(shifts, *mask.shape[-2:], generator):
            yield greyed(image, torch.roll(mask, (dy, dx), dims=(-2, -1)))


@dataclass(frozen=True)
class Placement:
    """Per-photo scores (nats of domain evidence hidden beyond chance) and their summary."""

    scores: Tensor  # (N,)

    def summary(self) -> dict[str, float | int]:
        count = len(self.scores)
        spread = float(self.scores.std()) / count ** 0.5 if count > 1 else 0.0
        return {"placement_nats": float(self.scores.mean()),
                "placement_nats_stderr": spread,
                "placement_hit_rate": float((self.scores > 0).float().mean()),
                "placement_images": count}


def placement(probe: DomainProbe, inception: InceptionFeatures, images: Sequence[Tensor],
              masks: Sequence[Tensor], source: str, *, shifts: int = SHIFTS,
              description: str | None = None) -> Placement:
    """The occlusion placement of ``masks`` on ``images`` of domain ``source``.

    Args:
        images: uint8 (3, H, W) photos of the source domain (any sizes).
        masks: their masks, (1, H, W), uint8 (0-255) or float (0-1).
        shifts: placements of the same shape elsewhere to compare with, per photo.
        description: the progress bar's (where the Inception shows progress).
    """
    if not images:
        raise AgganError("placement needs at least one image")
    features = inception.extract(_occlusions(images, masks, shifts),
                                 total=len(images) * (1 + shifts), description=description)
    log_odds = probe.log_odds(features, source).view(len(images), 1 + shifts)
    return Placement(scores=log_odds[:, 1:].mean(1) - log_odds[:, 0])
