"""aggan evaluate: a trained model beats the identity, and the report shows every image."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import pytest

from aggan.checkpoint import load_checkpoint
from aggan.cli import main
from aggan.config import build_config
from aggan.images import list_images, read_image
from aggan.metrics.fid_kid import fid_kid
from aggan.metrics.inception import STANDARD_SHA1, InceptionFeatures
from aggan.synthetic import write_dataset
from aggan.train import train
from conftest import tiny_layer

pytestmark = pytest.mark.slow


class _Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.sources.append(dict(attrs)["src"] or "")


def test_trained_model_beats_identity_and_report_is_complete(
        learned_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = load_checkpoint(learned_run / "checkpoints" / "latest.pt")["config"]
    data = tmp_path / "synthetic"
    write_dataset(data, size_px=config["data"]["size_px"], train_images=1, test_images=24,
                  seed=config["data"]["synthetic"]["seed"])
    cache, report = tmp_path / "cache", tmp_path / "report"
    assert main(["evaluate", "--checkpoint", str(learned_run), "--data", str(data), "--out",
                 str(report), "--cache-dir", str(cache), "--device", "cpu"]) == 0
    everything = json.loads((report / "metrics.json").read_text())
    metrics = everything["directions"]
    assert metrics["a2b"]["ground_truth"]["mask_iou"] >= 0
    # One training image per domain: too few for the placement probe, and the report says so.
    assert not everything["placement"]["measured"]
    assert "at least 10 training images" in everything["placement"]["why"]
    assert "FID, authors' protocol" in capsys.readouterr().out
    for direction, real, fake in (("a2b", "testB", "testA"), ("b2a", "testA", "testB")):
        assert main(["evaluate", "--real", str(data / real), "--fake", str(data / fake),
                     "--out", str(tmp_path / f"identity_{direction}"), "--cache-dir",
                     str(cache)]) == 0
        identity = json.loads((tmp_path / f"identity_{direction}" / "metrics.json").read_text())
        assert metrics[direction]["kid_x100_mean"] < identity["metrics"]["kid_x100_mean"]
        assert metrics[direction]["fid"] < identity["metrics"]["fid"]
        # The authors' FID, by hand: the mean of the translations' FID against the target
        # domain's test images and against the source domain's (their inputs).
        by_hand = []
        for reals in (real, fake):
            assert main(["evaluate", "--real", str(data / reals), "--fake",
                         str(report / direction), "--out", str(tmp_path / "by_hand"),
                         "--cache-dir", str(cache)]) == 0
            by_hand.append(json.loads((tmp_path / "by_hand" / "metrics.json").read_text())
                           ["metrics"]["fid"])
        assert metrics[direction]["fid"] == pytest.approx(by_hand[0], rel=1e-6)
        assert metrics[direction]["fid_authors"] == pytest.approx(sum(by_hand) / 2, rel=1e-6)
        assert metrics[direction]["fid_source"] != pytest.approx(by_hand[0], rel=1e-3)
    assert "KID x100" in capsys.readouterr().out

    parser = _Images()
    parser.feed((report / "index.html").read_text())
    assert len(parser.sources) == 2 * 24 * 4  # both directions, every image, four views each
    for source in parser.sources:
        assert not source.startswith(("/", "http")) and (report / unquote(source)).is_file()


def test_kid_during_training_keeps_the_best_checkpoint(tmp_path: Path) -> None:
    layer = tiny_layer(steps=10, kid_every_steps=5, kid_images=4, checkpoint_every_steps=10)
    train(build_config(layer), tmp_path, progress=False, tensorboard=False)
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [5, 10]
    assert all(line["metrics/kid_x100_mean"] > -100 for line in lines)
    best = load_checkpoint(tmp_path / "checkpoints" / "best.pt")
    assert best["best_kid_x100"] == min(line["metrics/kid_x100_mean"] for line in lines)
    assert best["step"] in (5, 10)


def test_evaluate_flag_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", "--real", str(tmp_path)]) == 2
    assert "--real and --fake go together" in capsys.readouterr().err
    assert main(["evaluate", "--real", str(tmp_path / "x"), "--fake", str(tmp_path)]) == 2
    assert "--real" in capsys.readouterr().err


def test_evaluate_scores_what_translate_wrote_and_refuses_masks(
        learned_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The README's workflow: translate a folder, then score the output folder. Only the
    translations are scored; a folder with masks beside the images is refused, not scored."""
    data = tmp_path / "synthetic"
    write_dataset(data, size_px=48, train_images=1, test_images=5, seed=0)
    out = tmp_path / "out"
    assert main(["translate", "--checkpoint", str(learned_run), "--input", str(data / "testA"),
                 "--out", str(out), "--direction", "a2b", "--device", "cpu"]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--real", str(data / "testB"), "--fake", str(out),
                 "--no-cache"]) == 0
    assert "(5 real, 5 fake)" in capsys.readouterr().out
    (out / "testA_00000_mask.png").write_bytes((out / "masks" / "testA_00000.png").read_bytes())
    assert main(["evaluate", "--real", str(data / "testB"), "--fake", str(out),
                 "--no-cache"]) == 2
    error = capsys.readouterr().err
    assert "--fake" in error and "mixes images and attention masks" in error
    assert len(error.strip().splitlines()) == 1


def test_evaluate_records_what_it_measured_and_warns_on_small_sets(
        tiny_model_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    """metrics.json and the report say how the numbers were made (scale, mask threshold, the
    Inception file, the image counts); --baseline identity scores output = input the same way;
    a set too small for KID's subsets or for FID gets one line each; progress bars show."""
    data = tmp_path / "scenes"
    write_dataset(data, size_px=32, train_images=1, test_images=20, seed=0)
    with caplog.at_level("WARNING"):
        assert main(["evaluate", "--model", str(tiny_model_folder), "--data", str(data), "--out",
                     str(tmp_path / "report"), "--no-cache", "--baseline", "identity",
                     "--mask-threshold", "0.5", "--scale", "native", "--direction", "a2b"]) == 0
    report = json.loads((tmp_path / "report" / "metrics.json").read_text())
    settings = report["settings"]
    assert settings["scale"] == "native" and settings["mask_threshold"] == 0.5
    assert settings["inception_sha1"] == STANDARD_SHA1 and settings["images"] == {
        "a": 20, "b": 20}
    metrics = report["directions"]["a2b"]
    # The identity baseline by hand: KID of the real source images against the target's.
    by_hand = []
    for folder in ("testB", "testA"):
        by_hand.append(InceptionFeatures().extract(read_image(p) for p in
                                                   list_images(data / folder)))
    identity = fid_kid(by_hand[0], by_hand[1])
    assert metrics["identity_kid_x100_mean"] == pytest.approx(identity.kid_x100_mean)
    assert metrics["identity_fid"] == pytest.approx(identity.fid)
    notes = [r.getMessage() for r in caplog.records if r.name == "aggan.evaluate"]
    assert any("every one of the 100 subsets of 20 is the whole set" in n for n in notes)
    assert any("FID: 20 images per set is too few" in n for n in notes)
    captured = capsys.readouterr()
    assert "KID x100, identity" in captured.out
    assert "a2b: translating" in captured.err
    assert "a2b: features of the translations" in captured.err
    assert "inception_sha1" in (tmp_path / "report" / "index.html").read_text()
