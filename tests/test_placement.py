"""The mask placement (metrics.placement) ranks masks whose answer is known: on the synthetic
scenes (red objects in A, blue in B) the true object masks score above chance, their complement
below, a mask of ones exactly 0. A small stand-in for the Inception (pooled colours through a
fixed 1x1 conv, 2048 features) keeps it fast; the real network is checked on photos by
benchmarks/placement_validity.py."""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from aggan.checkpoint import load_checkpoint
from aggan.cli import main
from aggan.config import build_config
from aggan.data import ground_truth, split_training
from aggan.errors import AgganError
from aggan.evaluate import evaluation_images, placement_probe
from aggan.metrics.inception import InceptionFeatures
from aggan.metrics.monitor import PlacementMonitor, placement_monitor
from aggan.metrics.placement import (
    GREY,
    fit_domain_probe,
    greyed,
    placement,
    shift_offsets,
    training_probe,
)
from aggan.synthetic import write_dataset
from aggan.train import train
from conftest import tiny_layer


class _PooledColours(nn.Module):
    """(N, 3, 299, 299) -> (N, 2048): an 8 x 8 grid of pooled colours through a 1x1 conv."""

    def __init__(self) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.pool = nn.AdaptiveAvgPool2d(8)
        self.conv = nn.Conv2d(3, 32, 1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(32, 3, 1, 1, generator=generator))
            self.conv.bias.copy_(torch.randn(32, generator=generator) * 0.1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(self.pool(images))).flatten(1)


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory: pytest.TempPathFactory) -> InceptionFeatures:
    path = tmp_path_factory.mktemp("network") / "pooled_colours.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch 2.14 calls jit.script deprecated
        torch.jit.script(_PooledColours()).save(str(path))
    return InceptionFeatures(path)


@pytest.fixture(scope="module")
def scenes() -> object:
    layer = tiny_layer()
    layer["data"]["size_px"] = 64
    layer["data"]["synthetic"].update(train_images=60, test_images=16)
    return build_config(layer).data


def _circle(size: int, radius: float) -> torch.Tensor:
    rows = torch.arange(size).view(-1, 1) - (size - 1) / 2
    columns = torch.arange(size).view(1, -1) - (size - 1) / 2
    return ((rows ** 2 + columns ** 2).sqrt() <= radius).float()[None]


def test_true_masks_beat_their_complement_ones_and_a_blob(stand_in: InceptionFeatures,
                                                          scenes: object) -> None:
    probe = training_probe(scenes, stand_in, cache_dir=None)
    assert probe.heldout_accuracy >= 0.9
    for domain in ("a", "b"):
        items = ground_truth(scenes, domain)
        images = [item.image for item in items]
        truth = [item.mask for item in items]

        def score(masks: list[torch.Tensor], images: list = images, domain: str = domain
                  ) -> float:
            return placement(probe, stand_in, images, masks, domain).summary()["placement_nats"]

        true_score = score(truth)
        assert true_score > 0.5
        assert score([255 - mask for mask in truth]) < 0
        assert score([torch.full_like(mask, 255) for mask in truth]) == 0
        blobs = [_circle(64, math.sqrt(float(m.float().mean() / 255) * 64 * 64 / math.pi))
                 for m in truth]
        assert score(blobs) < true_score
        # The mask may be uint8 (0-255) or float (0-1): the same score.
        assert score([mask.float() / 255 for mask in truth]) == pytest.approx(true_score)
        summary = placement(probe, stand_in, images, truth, domain).summary()
        assert summary["placement_images"] == len(items)
        assert 0.5 < summary["placement_hit_rate"] <= 1


def test_the_evidence_is_the_source_domains(stand_in: InceptionFeatures, scenes: object) -> None:
    """Scoring A's photos as if they were B's flips the sign: the measure reads the evidence for
    the photo's own domain, which greying its objects removes."""
    probe = training_probe(scenes, stand_in, cache_dir=None)
    items = ground_truth(scenes, "a")
    images, masks = [item.image for item in items], [item.mask for item in items]
    own = placement(probe, stand_in, images, masks, "a").scores
    other = placement(probe, stand_in, images, masks, "b").scores
    torch.testing.assert_close(own, -other)


def test_greying_and_shifts() -> None:
    image = torch.full((3, 4, 4), 200, dtype=torch.uint8)
    mask = torch.zeros(1, 4, 4)
    mask[:, :2] = 1.0
    mask[:, 2, 0] = 0.5
    out = greyed(image, mask)
    assert (out[:, :2] == GREY).all() and (out[:, 3] == 200).all()
    assert int(out[0, 2, 0]) == round((200 + GREY) / 2)
    generator = torch.Generator().manual_seed(0)
    for dy, dx in shift_offsets(50, 64, 48, generator):
        assert 16 <= dy < 48 and 12 <= dx < 36


def test_probe_refuses_too_few_images_and_picks_a_penalty() -> None:
    generator = torch.Generator().manual_seed(0)
    features_a = torch.randn(30, 2048, generator=generator)
    features_b = torch.randn(30, 2048, generator=generator) + 0.5
    probe = fit_domain_probe(features_a, features_b)
    assert (probe.log_odds(features_b, "b") > 0).float().mean() > 0.9
    torch.testing.assert_close(probe.log_odds(features_a, "a"), -probe.log_odds(features_a, "b"))
    with pytest.raises(AgganError, match="at least 10 training images per domain"):
        fit_domain_probe(features_a[:5], features_b)


def test_features_for_the_probe_are_cached(stand_in: InceptionFeatures, scenes: object,
                                           tmp_path: Path) -> None:
    first = training_probe(scenes, stand_in, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("features-*.pt"))) == 2
    second = training_probe(scenes, stand_in, cache_dir=tmp_path)
    torch.testing.assert_close(first.weight, second.weight)


def test_training_logs_placement_at_sample_steps_after_the_warm_up(
        stand_in: InceptionFeatures, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    write_dataset(tmp_path / "photos", size_px=32, train_images=14, test_images=4, seed=0)
    layer = tiny_layer(steps=20, attention_warmup_step=6, switch_step=15, sample_every_steps=5,
                       placement_images=3, inception=str(stand_in.path))
    layer["data"]["root"] = str(tmp_path / "photos")
    train(build_config(layer), tmp_path / "run", progress=False, tensorboard=False)
    assert len(list((tmp_path / "cache" / "aggan").glob("features-*.pt"))) == 2  # the probe's
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    assert [row["step"] for row in rows] == [10, 15, 20]  # step 5 is in the warm-up
    for row in rows:
        assert set(row) == {"step"} | {f"placement/{key}_{d}" for d in ("a2b", "b2a")
                                       for key in ("nats", "nats_stderr", "hit_rate")}
    # With validation images held out, it measures them (and the probe never sees them).
    held_out = build_config(layer, {"data": {"validation_images": 3}})
    monitor = placement_monitor(held_out, torch.device("cpu"))
    held = split_training(held_out.data, "a")[1]
    assert len(monitor.inputs["a2b"]) == 3
    assert all(torch.equal(image, held.load(i)) for i, image in enumerate(monitor.inputs["a2b"]))
    # Off by the field, for a model without attention, and on the synthetic scenes (which have
    # ground truth): no probe is fit.
    config = build_config(layer)
    for change in ({"monitor": {"placement_images": 0}}, {"model": {"variant": "cyclegan"}},
                   {"data": {"root": "synthetic"}}):
        assert placement_monitor(build_config(layer, change), torch.device("cpu")) is None
    assert placement_monitor(config, torch.device("cpu")) is not None


@pytest.mark.slow
def test_evaluate_reports_the_placement_of_a_trained_model(
        stand_in: InceptionFeatures, learned_run: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A model whose masks are on the objects (learned_run: IoU about 0.85) places them well
    above chance, in metrics.json and in the printed table."""
    config = load_checkpoint(learned_run / "checkpoints" / "latest.pt")["config"]
    write_dataset(tmp_path / "scenes", size_px=config["data"]["size_px"], train_images=30,
                  test_images=12, seed=config["data"]["synthetic"]["seed"])
    assert main(["evaluate", "--checkpoint", str(learned_run), "--data", str(tmp_path / "scenes"),
                 "--out", str(tmp_path / "report"), "--no-cache", "--inception",
                 str(stand_in.path), "--device", "cpu"]) == 0
    report = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert report["placement"]["measured"] and report["placement"]["probe_heldout_accuracy"] > 0.9
    for metrics in report["directions"].values():
        assert metrics["placement_nats"] > 3 * metrics["placement_nats_stderr"] > 0
        assert metrics["placement_images"] == 12
        assert 0 < metrics["mean_mask"] < 1
    assert "mask placement" in capsys.readouterr().out


def test_evaluate_on_the_validation_split_scores_the_held_out_images(
        stand_in: InceptionFeatures, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--split validation`` translates and compares the training images the run held out
    (never a test image, never one it trained on), and says so; a model that held none out is
    refused in one line naming the flag."""
    write_dataset(tmp_path / "photos", size_px=32, train_images=14, test_images=4, seed=0)
    layer = tiny_layer(steps=4, attention_warmup_step=1, switch_step=2)
    layer["data"].update(root=str(tmp_path / "photos"), validation_images=5)
    train(build_config(layer), tmp_path / "run", progress=False, tensorboard=False)
    assert main(["evaluate", "--model", str(tmp_path / "run"), "--split", "validation", "--out",
                 str(tmp_path / "report"), "--no-cache", "--no-placement", "--no-progress",
                 "--inception", str(stand_in.path), "--device", "cpu"]) == 0
    assert capsys.readouterr().out.startswith("validation split: the 5 + 5 training images")
    report = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert report["settings"]["split"] == "validation"
    assert report["settings"]["images"] == {"a": 5, "b": 5}
    for direction, source in (("a2b", "a"), ("b2a", "b")):
        held_out = split_training(build_config(layer).data, source)[1]
        assert held_out is not None
        written = {path.stem for path in (tmp_path / "report" / direction).glob("*.png")}
        assert written == {held_out.name(i) for i in range(len(held_out))}
    layer["data"]["validation_images"] = 0
    with pytest.raises(AgganError, match=r"--split validation: the model held no training"):
        evaluation_images(build_config(layer).data, "validation", "a")


def test_evaluate_scores_every_model_on_a_folder_with_one_probe(
        stand_in: InceptionFeatures, tmp_path: Path) -> None:
    """On the test split the placement probe is fit on all training images, whatever the run
    held out, so that models trained with and without a validation split get comparable
    placement; on the validation split it leaves the held-out images out."""
    write_dataset(tmp_path / "photos", size_px=32, train_images=20, test_images=4, seed=0)
    data = build_config(tiny_layer()).data
    kept_all = dataclasses.replace(data, root=str(tmp_path / "photos"))
    held_out = dataclasses.replace(kept_all, validation_images=5)
    probes = {(name, split): placement_probe(config, stand_in, None, split)[0]
              for name, config in (("all", kept_all), ("held", held_out))
              for split in ("test", "validation")}
    assert torch.equal(probes["held", "test"].weight, probes["all", "test"].weight)
    assert not torch.equal(probes["held", "validation"].weight, probes["all", "test"].weight)


def test_the_switch_can_freeze_the_best_placed_attention(
        stand_in: InceptionFeatures, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """schedule.switch_attention=best-placement: the switch freezes each attention network as
    it was at the sample step (before the switch) where its own direction's validation masks
    were best placed, also across a resume."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    write_dataset(tmp_path / "photos", size_px=32, train_images=14, test_images=4, seed=0)
    layer = tiny_layer(steps=24, attention_warmup_step=4, switch_step=16, sample_every_steps=4,
                       checkpoint_every_steps=4, placement_images=3,
                       inception=str(stand_in.path), switch_attention="best-placement")
    layer["data"].update(root=str(tmp_path / "photos"), validation_images=2)
    # Placements at the sample steps after the warm-up, 8, 12, ..., 24 (step 4 ends it), in
    # order; the switch comes after step 16, so while the attention trains a2b's masks are best
    # placed at step 12 and b2a's at step 8 (their mean would pick step 12 for both).
    placements = {"a2b": [0.1, 0.9, 0.3, 2.0, 5.0], "b2a": [0.7, 0.2, 0.3, 2.0, 5.0]}
    measured: list[dict[str, torch.Tensor]] = []

    def measure(self: PlacementMonitor, translator: torch.nn.Module) -> dict[str, float]:
        index = len(measured) % len(placements["a2b"])
        measured.append({k: v.clone() for k, v in translator.attention.state_dict().items()})
        return {f"placement/{kind}_{d}": placements[d][index] for kind in ("nats", "hit_rate")
                for d in ("a2b", "b2a")}

    monkeypatch.setattr(PlacementMonitor, "measure", measure)
    for run, stops in (("whole", (None,)), ("resumed", (12, None))):
        measured.clear()
        for index, stop in enumerate(stops):
            train(build_config(layer), tmp_path / run, resume=index > 0, stop_at_step=stop,
                  progress=False, tensorboard=False)
        assert len(measured) == len(placements["a2b"])
        final = load_checkpoint(tmp_path / run / "checkpoints" / "latest.pt")
        assert "best_attention" not in final
        attention = {key.removeprefix("attention."): value
                     for key, value in final["translator"].items()
                     if key.startswith("attention.")}
        assert not all(torch.equal(attention[k], v) for k, v in measured[2].items())
        for domain, chosen in (("a", measured[1]), ("b", measured[0])):  # steps 12 and 8
            weights = {k: v for k, v in chosen.items() if k.startswith(f"{domain}.")}
            assert weights
            for key, value in weights.items():
                torch.testing.assert_close(attention[key], value, rtol=0, atol=0)
        for domain in "ab":  # the two steps' networks differ, so the test tells them apart
            assert not all(torch.equal(measured[0][k], v) for k, v in measured[1].items()
                           if k.startswith(f"{domain}."))
    before_switch = load_checkpoint(tmp_path / "resumed" / "checkpoints" / "step-0000012.pt")
    assert before_switch["best_placement"] == {"a2b": {"step": 12, "nats": pytest.approx(0.9)},
                                               "b2a": {"step": 8, "nats": pytest.approx(0.7)}}


def test_by_default_the_switch_freezes_the_best_placed_attention_where_photos_are_held_out(
        stand_in: InceptionFeatures, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """schedule.switch_attention=auto (the default) is best-placement where the run holds photos
    out and measures placement on them, and the last attention where it cannot (no photo held
    out, the synthetic scenes) or has no switch; the run's config.json and checkpoints say
    which it was."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    write_dataset(tmp_path / "photos", size_px=32, train_images=20, test_images=4, seed=0)
    layer = tiny_layer(steps=4, attention_warmup_step=1, switch_step=3, sample_every_steps=2,
                       placement_images=2, inception=str(stand_in.path))
    layer["data"]["root"] = str(tmp_path / "photos")
    for name, change, expected in (
            ("photos", {}, ("best-placement", 2)),  # 2 of 20: a tenth
            ("none held out", {"data": {"validation_images": 0}}, ("last", 0)),
            ("no switch", {"model": {"variant": "no-attention-d"}}, ("last", 2)),
            ("scenes", {"data": {"root": "synthetic"}}, ("last", 0))):
        train(build_config(layer, change), tmp_path / name, progress=False, tensorboard=False)
        for saved in (json.loads((tmp_path / name / "config.json").read_text())["config"],
                      load_checkpoint(tmp_path / name / "checkpoints" / "latest.pt")["config"]):
            assert (saved["schedule"]["switch_attention"],
                    saved["data"]["validation_images"]) == expected, name
    rows = [json.loads(line) for line in (tmp_path / "photos" / "metrics.jsonl").open()]
    assert [row["step"] for row in rows] == [2, 4]  # placement measured where it chooses


def test_best_placement_needs_held_out_images(tmp_path: Path) -> None:
    """Asked for by name, best-placement refuses a run that cannot measure placement on held-out
    photos, in one line: when the config says so, else at the start (the synthetic scenes hold
    none out)."""
    no_photos_held = tiny_layer(switch_attention="best-placement")
    no_photos_held["data"]["validation_images"] = 0
    for layer in (no_photos_held, tiny_layer(switch_attention="best-placement",
                                             placement_images=0)):
        with pytest.raises(AgganError,
                           match=r"data\.validation_images and monitor\.placement_images"):
            build_config(layer)
    with pytest.raises(AgganError, match=r"best-placement .*data\.validation_images"):
        train(build_config(tiny_layer(switch_attention="best-placement")), tmp_path / "run",
              progress=False, tensorboard=False)
