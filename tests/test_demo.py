"""aggan demo, used as a person would: a real browser (Chromium via Playwright) on 127.0.0.1."""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from aggan.cli import main
from aggan.config import build_config
from aggan.demo import build_demo, domain_names, example_rows, read_upload
from aggan.errors import AgganError
from aggan.loading import load_model
from aggan.model_folder import export_model
from aggan.pipeline import Pipeline
from aggan.synthetic import write_dataset
from aggan.train import train
from aggan.translate import translate_tensor
from conftest import SHARED_DATA, tiny_layer

CHROMIUM = "/usr/bin/chromium"
PHOTO = SHARED_DATA / "horse2zebra" / "testA" / "n02381460_1000.jpg"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def demo_model(tiny_model_folder: Path) -> Path:
    """The tiny model; AGGAN_DEMO_MODEL=DIR serves a trained one (for docs/demo_page.png)."""
    return Path(os.environ.get("AGGAN_DEMO_MODEL", tiny_model_folder))


@pytest.fixture(scope="module")
def page_url(demo_model: Path) -> Iterator[str]:
    demo = build_demo(demo_model)
    port = _free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True,
                quiet=True, show_error=True)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    assert os.path.exists(CHROMIUM), (
        f"{CHROMIUM} is missing: apt-get install -y chromium (scripts/test.sh does it as root)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM,
                                              args=["--no-sandbox"], headless=True)
        yield chromium
        chromium.close()


def _translate(page: object, url: str, path: Path) -> str:
    """Opens the page, uploads ``path``, clicks Translate, returns the status text once the
    run is over."""
    page.goto(url)
    page.locator("#photo input[type=file]").set_input_files(str(path))
    page.get_by_text(path.name).first.wait_for(timeout=30_000)  # the upload has landed
    page.locator("#translate").click()
    status = page.locator("#status")
    status.filter(has_text="Translated").or_(status.filter(has_text="Error")).wait_for(
        timeout=60_000)
    return status.inner_text()


def test_a_photo_is_translated_in_the_browser_and_downloads_at_full_size(
        browser: object, page_url: str, demo_model: Path, tmp_path: Path) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    assert "Translated" in _translate(page, page_url, PHOTO)
    with page.expect_download() as download_info:
        page.locator("#download a").first.click()
    downloaded = tmp_path / "result.png"
    download_info.value.save_as(downloaded)
    if os.environ.get("AGGAN_DEMO_SCREENSHOT"):  # how docs/demo_page.png is made
        page.screenshot(path=os.environ["AGGAN_DEMO_SCREENSHOT"], full_page=True)
    page.close()

    photo = np.asarray(Image.open(PHOTO).convert("RGB")).astype(int)
    result = np.asarray(Image.open(downloaded)).astype(int)
    assert result.shape == photo.shape
    model = load_model(demo_model)
    _, mask = translate_tensor(model.translator,
                               torch.from_numpy(photo.astype(np.uint8)).permute(2, 0, 1)[None],
                               "a2b", True, scale_px=model.config.data.size_px)
    mask = mask[0, 0].numpy()
    assert (result[mask == 0] == photo[mask == 0]).all()  # outside the mask: untouched
    assert (np.abs(result - photo).max(axis=-1)[mask > 128] > 0).mean() > 0.5  # inside: changed


def test_bad_uploads_are_messages_on_the_page_and_the_server_keeps_serving(
        browser: object, page_url: str, tmp_path: Path) -> None:
    page = browser.new_page()
    not_an_image = tmp_path / "notes.jpg"
    not_an_image.write_text("not a photo")
    assert "notes.jpg is not an image" in _translate(page, page_url, not_an_image)
    truncated = tmp_path / "cut.png"
    truncated.write_bytes(PHOTO.read_bytes()[:PHOTO.stat().st_size // 2])
    huge = tmp_path / "huge.png"
    Image.new("L", (10_000, 5_000)).save(huge)  # 50 megapixels in a small file
    assert "huge.png is 10000 x 5000 (50 megapixels)" in _translate(page, page_url, huge)
    shutil.copy(PHOTO, tmp_path / "photo.jpg")
    assert "cut.png is damaged or truncated" in _translate(page, page_url, truncated)
    assert "Translated" in _translate(page, page_url, tmp_path / "photo.jpg")  # still serving
    page.close()


def test_oversized_and_truncated_files_are_refused_before_decoding(tmp_path: Path) -> None:
    huge = tmp_path / "huge.png"
    Image.new("L", (10_000, 5_000)).save(huge)  # 50 megapixels, a small file
    with pytest.raises(AgganError, match=r"huge.png is 10000 x 5000 \(50 megapixels\)"):
        read_upload(huge)
    truncated = tmp_path / "cut.jpg"
    truncated.write_bytes(PHOTO.read_bytes()[:PHOTO.stat().st_size // 2])
    with pytest.raises(AgganError, match=r"cut\.jpg is damaged or truncated"):
        read_upload(truncated)


def test_domain_names_come_from_the_data_folder() -> None:
    assert domain_names("../shared/data/horse2zebra") == ("horse", "zebra")
    assert domain_names("synthetic") == ("A", "B")


def test_demo_command_reports_a_missing_model(capsys: pytest.CaptureFixture,
                                              tmp_path: Path) -> None:
    assert main(["demo", "--model", str(tmp_path / "nothing")]) == 2
    assert "aggan: error:" in capsys.readouterr().err


def test_the_demo_finds_its_examples_from_any_folder(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A model folder records its data relative to itself, so the examples are found whatever
    the working directory (the shipped model's too, where shared/ is beside the checkout)."""
    monkeypatch.chdir(tmp_path)
    write_dataset(Path("scenes"), size_px=32, train_images=4, test_images=3, seed=0)
    layer = tiny_layer(steps=6, attention_warmup_step=2, switch_step=4)
    layer["data"]["root"] = "scenes"  # relative, as a user types it
    train(build_config(layer), Path("run"), progress=False, tensorboard=False)
    export_model(Path("run"), Path("models") / "tiny", dtype="float32")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    rows = example_rows(Pipeline.from_pretrained(tmp_path / "models" / "tiny", device="cpu"))
    assert [Path(photo).name for photo, _ in rows] == [
        "testA_00000.png", "testA_00001.png", "testA_00002.png",
        "testB_00000.png", "testB_00001.png", "testB_00002.png"]
    assert all(Path(photo).is_file() for photo, _ in rows)
    if (SHARED_DATA / "horse2zebra").is_dir():
        assert example_rows(Pipeline.from_pretrained("horse2zebra-128", device="cpu"))
