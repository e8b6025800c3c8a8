"""``aggan evaluate``: how good a model is, measured the way papers measure it.

Every test image of the source domain is translated once, whole, at its own size; the
translations are compared with the real test images of the target domain by FID and KID x100
(Inception features, ``aggan.metrics``). With ``split="validation"`` the images are instead the
training images the run held out (``data.validation_images``), so that a seed or a checkpoint
is chosen without looking at the test set. Where the data has ground truth (the synthetic dataset),
the ground-truth metrics come too. With an output folder, the translations, masks and an
``index.html`` gallery are written there, with ``metrics.json``.
"""

from __future__ import annotations

import dataclasses
import html
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import torch
from torch import Tensor
from tqdm import tqdm

from aggan.config import DataConfig
from aggan.data import (
    DomainImages,
    ground_truth,
    open_test_domain,
    split_training,
    validation_count,
)
from aggan.domains import DOMAINS, Direction, source_domain, target_domain
from aggan.errors import AgganError
from aggan.images import (
    atomic_write,
    list_images,
    mask_overlay,
    read_image,
    write_json,
    write_png,
)
from aggan.loading import load_model
from aggan.metrics.fid_kid import (
    cached_features,
    domain_identity,
    fid_kid,
    files_identity,
    frechet_distance,
    small_set_notes,
)
from aggan.metrics.groundtruth import ground_truth_metrics
from aggan.metrics.inception import InceptionFeatures
from aggan.metrics.placement import PROBE_IMAGES, DomainProbe, placement, training_probe
from aggan.metrics.table import metric_columns, metrics_table
from aggan.networks import Translator
from aggan.translate import MASKS, Scale, check_mask_threshold, scale_px, translate_tensor

logger = logging.getLogger(__name__)

Split = Literal["test", "validation"]

@dataclass
class DirectionResult:
    direction: Direction
    metrics: dict[str, Any]
    rows: list[dict[str, str]]  # report rows: relative paths of input, mask, output, overlay


def evaluation_images(data: DataConfig, split: Split, domain: str) -> DomainImages:
    """The images of ``domain`` that ``split`` scores: the test folder's, or the training images
    the run held out of training."""
    if split == "validation":
        if not validation_count(data):
            raise AgganError("--split validation: the model held no training images out "
                             "(data.validation_images is 0); train with --set "
                             "data.validation_images=N")
        held_out = split_training(data, domain)[1]
        assert held_out is not None
        return held_out
    images = open_test_domain(data, domain)
    if images is None:
        raise AgganError(f"--data {data.root}: evaluation needs testA/ and testB/")
    return images


def evaluate_direction(translator: Translator, data: DataConfig, direction: Direction, *,
                       inception: InceptionFeatures, use_attention: bool,
                       real_features: dict[str, Tensor], probe: DomainProbe | None,
                       out_dir: Path | None, scale: Scale = "train",
                       mask_threshold: float | None = None, identity_baseline: bool = False,
                       progress: bool = False, split: Split = "test") -> DirectionResult:
    """Translates every image of the source domain in ``split`` and scores the translations.

    Args:
        real_features: Inception features of both domains' images of ``split``, by domain.
        probe: the domain probe that scores where the masks sit (None: not measured).
        identity_baseline: also score the identity (output = input) the same way.
        progress: a progress bar for the translation.
    """
    source, target = source_domain(direction), target_domain(direction)
    inputs = evaluation_images(data, split, source)
    input_images, fake_images, masks, rows = [], [], [], []
    for index in tqdm(range(len(inputs)), desc=f"{direction}: translating", unit="image",
                      leave=False, disable=not progress):
        image = inputs.load(index)
        translated, mask = translate_tensor(translator, image[None], direction, use_attention,
                                            scale_px=scale_px(scale, data.size_px),
                                            mask_threshold=mask_threshold)
        input_images.append(image)
        fake_images.append(translated[0])
        masks.append(mask[0])
        if out_dir is not None:
            name = inputs.name(index)
            files = {"input": f"{direction}/inputs/{name}.png",
                     "mask": f"{direction}/{MASKS}/{name}.png",
                     "translation": f"{direction}/{name}.png",
                     "overlay": f"{direction}/overlays/{name}.png"}
            write_png(image, out_dir / files["input"])
            write_png(mask[0], out_dir / files["mask"])
            write_png(translated[0], out_dir / files["translation"])
            write_png(mask_overlay(image, mask[0]), out_dir / files["overlay"])
            rows.append({"name": name, **files})
    fake_features = inception.extract(iter(fake_images), total=len(fake_images),
                                      description=f"{direction}: features of the translations")
    scores = fid_kid(real_features[target], fake_features)
    for note in small_set_notes(scores):
        logger.warning("%s: %s", direction, note)
    metrics: dict[str, Any] = dataclasses.asdict(scores)
    metrics["fid_source"] = frechet_distance(real_features[source], fake_features)
    metrics["fid_authors"] = (metrics["fid"] + metrics["fid_source"]) / 2
    if identity_baseline:
        identity = fid_kid(real_features[target], real_features[source])
        metrics |= {f"identity_{key}": getattr(identity, key)
                    for key in ("fid", "kid_x100_mean", "kid_x100_std")}
    if use_attention:
        metrics["mean_mask"] = sum(float(m.float().mean()) for m in masks) / len(masks) / 255
        if probe is not None:
            metrics |= placement(probe, inception, input_images, masks, source,
                                 description=f"{direction}: mask placement").summary()
    items = ground_truth(data, source) if split == "test" else None
    if items is not None:
        metrics["ground_truth"] = ground_truth_metrics(
            translator, items, direction, device=next(translator.parameters()).device,
            use_attention=use_attention)
    return DirectionResult(direction, metrics, rows)


def real_features(data: DataConfig, inception: InceptionFeatures, cache_dir: Path | None,
                  split: Split = "test") -> dict[str, Tensor]:
    """Inception features of both domains' images of ``split`` (cached): each is the target of
    one direction and, for the authors' FID, the source of the other."""
    features = {}
    for domain in DOMAINS:
        images = evaluation_images(data, split, domain)
        features[domain] = cached_features(
            domain_identity(images, data, split, domain), len(images), inception.sha1,
            cache_dir, lambda images=images, domain=domain: inception.extract(
                (images.load(i) for i in range(len(images))), total=len(images),
                description=f"{split} {domain.upper()}: features"))
    return features


def placement_probe(data: DataConfig, inception: InceptionFeatures, cache_dir: Path | None,
                    split: Split) -> tuple[DomainProbe | None, dict[str, Any]]:
    """The probe for the mask placement, fit on the data's training images, and what the report
    says of it; without training images (or too few) placement is not measured, and it says
    why. On the test split the probe sees every training image, whatever the run held out, so
    that all models evaluated on one folder are scored by one probe and their placement can be
    compared; on the validation split it never sees the held-out images it scores."""
    if split == "test":
        data = dataclasses.replace(data, validation_images=0)
    try:
        probe = training_probe(data, inception, cache_dir)
    except AgganError as error:
        logger.warning("mask placement not measured: %s", error)
        return None, {"measured": False, "why": str(error)}
    return probe, {"measured": True, "probe_images_per_domain": PROBE_IMAGES,
                   "probe_l2_penalty": probe.penalty,
                   "probe_heldout_accuracy": probe.heldout_accuracy}


def evaluate_checkpoint(checkpoint: str | Path, data_root: str | None,
                        directions: tuple[Direction, ...], *,
                        out_dir: Path | None, device: torch.device,
                        inception: InceptionFeatures, cache_dir: Path | None,
                        scale: Scale = "train", mask_threshold: float | None = None,
                        measure_placement: bool = True, identity_baseline: bool = False,
                        progress: bool = False, split: Split = "test") -> dict[str, Any]:
    """Scores a checkpoint on ``split`` of ``data_root`` (a folder, or ``synthetic`` for the
    built-in scenes the run was configured with; None: the data the run trained on): its test
    images, or the training images the run held out. Returns what ``metrics.json`` holds."""
    check_mask_threshold(mask_threshold)
    model = load_model(checkpoint, device)
    translator, config, use_attention = model.translator, model.config, model.use_attention
    data = dataclasses.replace(config.data, root=data_root or config.data.root)
    data_root = data.root
    features = real_features(data, inception, cache_dir, split)
    probe, placement_info = None, {"measured": False, "why": "--no-placement"}
    if not use_attention:
        placement_info["why"] = "the model has no attention (its mask is 1 everywhere)"
    elif measure_placement:
        probe, placement_info = placement_probe(data, inception, cache_dir, split)
    results = [evaluate_direction(translator, data, direction, inception=inception,
                                  use_attention=use_attention, real_features=features,
                                  probe=probe, out_dir=out_dir, scale=scale,
                                  mask_threshold=mask_threshold,
                                  identity_baseline=identity_baseline, progress=progress,
                                  split=split)
               for direction in directions]
    report = {"checkpoint": str(checkpoint), "data": data_root, "variant": config.model.variant,
              "settings": {"split": split, "scale": scale, "mask_threshold": mask_threshold,
                           "inception": str(inception.path), "inception_sha1": inception.sha1,
                           "images": {d: len(f) for d, f in features.items()}},
              "placement": placement_info,
              "directions": {r.direction: r.metrics for r in results}}
    if out_dir is not None:
        write_report(out_dir, report, results)
    return report


def check_no_masks(paths: list[Path], flag: str) -> None:
    """Refuses a folder that holds attention masks beside images (``x.png`` and
    ``x_mask.png``, as earlier versions of translate wrote them): scoring masks as images
    gives a wrong FID and KID without any warning."""
    stems = {path.stem for path in paths}
    for path in paths:
        if path.stem.endswith("_mask") and path.stem.removesuffix("_mask") in stems:
            raise AgganError(f"{flag}: {path.parent} mixes images and attention masks ({path.name} "
                             f"beside {path.stem.removesuffix('_mask')}); move the masks out "
                             f"(aggan translate writes them to {MASKS}/)")


def evaluate_folders(real: Path, fake: Path, *, inception: InceptionFeatures,
                     cache_dir: Path | None, out_dir: Path | None) -> dict[str, Any]:
    """FID and KID between two folders of images, both cached."""
    listed = []
    for flag, folder in (("--real", real), ("--fake", fake)):  # both checked before any work
        if not folder.is_dir():
            raise AgganError(f"{flag}: {folder} does not exist or is not a folder")
        paths = list_images(folder)
        if not paths:
            raise AgganError(f"{flag}: {folder} holds no images")
        check_no_masks(paths, flag)
        listed.append((flag, paths))
    features = []
    for flag, paths in listed:
        features.append(cached_features(
            files_identity(paths), len(paths), inception.sha1, cache_dir,
            lambda paths=paths, flag=flag: inception.extract(
                (read_image(p) for p in paths), total=len(paths),
                description=f"{flag}: features")))
    scores = fid_kid(features[0], features[1])
    for note in small_set_notes(scores):
        logger.warning("%s", note)
    report = {"real": str(real), "fake": str(fake),
              "settings": {"inception": str(inception.path), "inception_sha1": inception.sha1},
              "metrics": dataclasses.asdict(scores)}
    if out_dir is not None:
        write_json(out_dir / "metrics.json", report)
    return report


def format_report(report: dict[str, Any]) -> str:
    table = metrics_table(report["directions"])
    if report["settings"]["split"] != "validation":
        return table
    images = report["settings"]["images"]
    return (f"validation split: the {images['a']} + {images['b']} training images the run held "
            f"out, not the test set\n{table}")


def write_report(out_dir: Path, report: dict[str, Any], results: list[DirectionResult]) -> None:
    """``metrics.json`` and a self-contained ``index.html`` (relative image paths)."""
    write_json(out_dir / "metrics.json", report)
    esc = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>aggan evaluation: {esc(Path(report['checkpoint']).name)}</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{padding:4px 10px;text-align:left}img{width:160px;image-rendering:pixelated}"
        ".metrics td{border-bottom:1px solid #ddd}.gallery td{vertical-align:top}</style>",
        "</head><body>",
        f"<h1>aggan evaluation</h1><p>checkpoint <code>{esc(report['checkpoint'])}</code>, "
        f"variant <b>{esc(report['variant'])}</b>, data <code>{esc(report['data'])}</code></p>",
        "<p>" + ", ".join(f"{esc(key)} <code>{esc(str(value))}</code>"
                          for key, value in report["settings"].items()) + "</p>",
        "<table class='metrics'><tr><th>metric</th>"
        + "".join(f"<th>{esc(d)}</th>" for d in report["directions"]) + "</tr>",
    ]
    labels, values = metric_columns(report["directions"])
    for label in labels:
        parts.append(f"<tr><td>{esc(label)}</td>"
                     + "".join(f"<td>{esc(values[d].get(label, ''))}</td>" for d in values)
                     + "</tr>")
    parts.append("</table>")
    for result in results:
        parts.append(f"<h2>{esc(result.direction)}: test{source_domain(result.direction).upper()}"
                     f" translated into {target_domain(result.direction).upper()}</h2>")
        parts.append("<table class='gallery'><tr><th>image</th><th>input</th>"
                     "<th>attention mask</th><th>translation</th><th>mask over input</th></tr>")
        for row in result.rows:
            cells = "".join(f"<td><img src='{esc(quote(row[key]))}' alt='{key}'></td>"
                            for key in ("input", "mask", "translation", "overlay"))
            parts.append(f"<tr><td>{esc(row['name'])}</td>{cells}</tr>")
        parts.append("</table>")
    parts.append("</body></html>")
    page = "\n".join(parts) + "\n"
    atomic_write(out_dir / "index.html", lambda temp: temp.write_text(page))
