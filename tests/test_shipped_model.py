"""The model shipped in models/: it loads by name and translates a real photo, fast."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from aggan.cli import main
from aggan.loading import find_model
from aggan.model_folder import CONFIG_FILE, WEIGHTS_FILE
from conftest import REPO, SHARED_DATA

SHIPPED = "horse2zebra-128"
PHOTO = SHARED_DATA / "horse2zebra" / "testA" / "n02381460_1000.jpg"


def test_shipped_model_is_small_and_self_describing() -> None:
    folder = find_model(SHIPPED)
    assert folder == REPO / "models" / SHIPPED
    # The translator alone (24 MB in float32, which this model needs: float16 moved outputs by
    # 2 levels); with the discriminators and optimizer state a checkpoint is 160 MB.
    assert (folder / WEIGHTS_FILE).stat().st_size < 30e6
    info = json.loads((folder / CONFIG_FILE).read_text())
    assert info["size_px"] == 128 and info["variant"] == "aggan"
    measured = {(row["direction"], row["method"]) for row in info["metrics"]["rows"]}
    assert {("a2b", "aggan"), ("b2a", "aggan"), ("a2b", "identity")} <= measured
    assert "hours" in (folder / "README.md").read_text()


def test_shipped_model_translates_a_test_photo_by_name(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    """The README's one-line command: only the attended region changes, at full resolution."""
    assert main(["translate", "--model", SHIPPED, "--input", str(PHOTO), "--out",
                 str(tmp_path), "--direction", "a2b"]) == 0
    assert "translated 1 images a2b" in capsys.readouterr().out
    photo = np.asarray(Image.open(PHOTO).convert("RGB")).astype(int)
    zebra = np.asarray(Image.open(tmp_path / f"{PHOTO.stem}.png")).astype(int)
    mask = np.asarray(Image.open(tmp_path / "masks" / f"{PHOTO.stem}.png")) / 255
    assert zebra.shape == photo.shape
    assert 0.05 < mask.mean() < 0.95  # alive, not everything
    changed = np.abs(zebra - photo).max(axis=-1) > 8
    assert changed[mask > 0.5].mean() > 0.3  # the attended region is translated
    assert (zebra[mask == 0] == photo[mask == 0]).all()  # the rest is the photo's own pixels
