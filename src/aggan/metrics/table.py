"""Every metric aggan reports, in one table (StyleGAN3's registry, as rows).

The evaluate report, the console tables of ``train`` and ``evaluate`` and the KID monitor
during training all read this table; a new metric is one row here and its computation where
its ``source`` is computed (``fid_kid`` for ``inception``, ``placement`` for ``placement``,
``groundtruth`` for ``ground_truth``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal


@dataclass(frozen=True)
class Metric:
    key: str  # in one direction's metrics (metrics.json)
    label: str
    show: Callable[[Mapping[str, Any]], str]  # the value as text, from one direction's metrics
    source: Literal["inception", "placement", "ground_truth"]
    monitor: bool = False  # also measured during training (monitor.kid_every_steps)


def _number(key: str, spec: str, unit: str = "") -> Callable[[Mapping[str, Any]], str]:
    return lambda values: f"{values[key]:{spec}}{unit}"


METRICS: tuple[Metric, ...] = (
    Metric("fid", "FID", lambda m: f"{m['fid']:.2f} ({m['real_images']} real, "
                                   f"{m['fake_images']} translated)", "inception"),
    # The first author's protocol (the released repository's issue #3): the mean of the FID
    # against the target domain's test images and against the source domain's.
    Metric("fid_authors", "FID, authors' protocol",
           lambda m: f"{m['fid_authors']:.2f} (mean of {m['fid']:.2f} and {m['fid_source']:.2f} "
                     f"against the source domain)", "inception"),
    Metric("kid_x100_mean", "KID x100",
           lambda m: f"{m['kid_x100_mean']:.2f} ± {m['kid_x100_std']:.2f} "
                     f"({m['kid_subsets']} subsets of {m['kid_subset_size']})",
           "inception", monitor=True),
    Metric("identity_kid_x100_mean", "KID x100, identity",
           lambda m: f"{m['identity_kid_x100_mean']:.2f} ± {m['identity_kid_x100_std']:.2f} "
                     "(output = input)", "inception"),
    Metric("identity_fid", "FID, identity", _number("identity_fid", ".2f"), "inception"),
    Metric("placement_nats", "mask placement",
           lambda m: f"{m['placement_nats']:+.3f} ± {m['placement_nats_stderr']:.3f} nats, "
                     f"{m['placement_hit_rate']:.0%} of {m['placement_images']} photos above "
                     "chance",
           "placement"),
    Metric("mean_mask", "mean mask", _number("mean_mask", ".3f"), "placement"),
    Metric("mask_iou", "mask IoU", _number("mask_iou", ".3f"), "ground_truth"),
    Metric("background_psnr_db", "background PSNR", _number("background_psnr_db", ".2f", " dB"),
           "ground_truth"),
    Metric("truth_psnr_db", "truth PSNR", _number("truth_psnr_db", ".2f", " dB"),
           "ground_truth"),
    Metric("identity_truth_psnr_db", "identity truth PSNR",
           _number("identity_truth_psnr_db", ".2f", " dB"), "ground_truth"),
    Metric("mask_inside", "mean mask inside objects", _number("mask_inside", ".3f"),
           "ground_truth"),
    Metric("mask_outside", "mean mask outside objects", _number("mask_outside", ".3f"),
           "ground_truth"),
    Metric("collapsed", "collapsed", lambda m: str(m["collapsed"]), "ground_truth"),
)
MONITORED = tuple(metric for metric in METRICS if metric.monitor)


def metric_rows(metrics: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(label, value) for each metric that one direction's ``metrics`` holds; ground-truth
    metrics may sit directly in it (training) or under ``ground_truth`` (evaluate)."""
    truth = metrics.get("ground_truth", metrics)
    rows = []
    for metric in METRICS:
        values = truth if metric.source == "ground_truth" else metrics
        if metric.key in values:
            rows.append((metric.label, metric.show(values)))
    return rows


def metric_columns(by_direction: Mapping[str, Mapping[str, Any]]
                   ) -> tuple[list[str], dict[str, dict[str, str]]]:
    """The row labels, and per direction its values by label: the layout of every table."""
    columns = {direction: dict(metric_rows(values)) for direction, values in by_direction.items()}
    return list(next(iter(columns.values()))), columns


def metrics_table(by_direction: Mapping[str, Mapping[str, Any]]) -> str:
    """A console table: one row per metric, one column per direction."""
    labels, columns = metric_columns(by_direction)
    width = max(len(label) for label in labels) + 2
    cell = max(len(value) for values in columns.values() for value in values.values()) + 2
    lines = [f"{'metric':<{width}}" + "".join(f"{d:>{cell}}" for d in columns)]
    lines += [f"{label:<{width}}" + "".join(f"{values.get(label, ''):>{cell}}"
                                            for values in columns.values())
              for label in labels]
    return "\n".join(lines)
