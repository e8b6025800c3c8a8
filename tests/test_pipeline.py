"""The Python API: the README's snippet runs as written, and a call returns what went in."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from aggan import Pipeline
from aggan.errors import AgganError
from aggan.images import read_image
from aggan.loading import load_model
from aggan.translate import translate_tensor
from conftest import REPO, SHARED_DATA


def test_the_readme_snippet_runs_as_written(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    if not (SHARED_DATA / "horse2zebra").is_dir():
        pytest.skip("the README's photo is in ../shared/data (shared/ beside the checkout)")
    readme = (REPO / "README.md").read_text()
    snippet = next(block for block in re.findall(r"```python\n(.*?)```", readme, re.DOTALL)
                   if "Pipeline.from_pretrained(\"horse2zebra-128\")" in block)
    monkeypatch.chdir(REPO)  # the README's commands run from the checkout
    photo = SHARED_DATA / "horse2zebra" / "testA" / "n02381460_1000.jpg"
    snippet = snippet.replace('"zebra.png"', repr(str(tmp_path / "zebra.png"))).replace(
        '"zebra_mask.png"', repr(str(tmp_path / "zebra_mask.png")))
    exec(compile(snippet, "README.md", "exec"), {})
    zebra, mask = Image.open(tmp_path / "zebra.png"), Image.open(tmp_path / "zebra_mask.png")
    assert zebra.size == mask.size == Image.open(photo).size
    assert zebra.mode == "RGB" and mask.mode == "L"
    model = load_model("horse2zebra-128")
    expected, expected_mask = translate_tensor(model.translator, read_image(photo)[None], "a2b",
                                               True, scale_px=model.config.data.size_px)
    assert np.array_equal(np.array(zebra), expected[0].permute(1, 2, 0).numpy())
    assert np.array_equal(np.array(mask), expected_mask[0, 0].numpy())


def test_a_call_returns_the_type_that_came_in(tiny_model_folder: Path, tmp_path: Path) -> None:
    pipe = Pipeline.from_pretrained(tiny_model_folder, device="cpu")
    rng = np.random.default_rng(0)
    array = rng.integers(0, 256, (30, 44, 3), dtype=np.uint8)
    picture = Image.fromarray(array)
    picture.save(tmp_path / "x.png")
    from_array = pipe(array, direction="b2a")
    assert isinstance(from_array.image, np.ndarray) and from_array.image.shape == (30, 44, 3)
    assert from_array.mask.shape == (30, 44) and from_array.mask.dtype == np.uint8
    from_path = pipe(tmp_path / "x.png", direction="b2a")
    from_picture = pipe(picture, direction="b2a")
    for result in (from_path, from_picture):
        assert isinstance(result.image, Image.Image) and result.image.size == (44, 30)
        assert np.array_equal(np.array(result.image), from_array.image)
        assert np.array_equal(np.array(result.mask), from_array.mask)
    grey = pipe(array[..., 0], direction="b2a")  # (H, W): read as grey RGB
    assert grey.image.shape == (30, 44, 3)
    # A list: one result each, in order, batched or not, the same pixels.
    other = rng.integers(0, 256, (30, 44, 3), dtype=np.uint8)
    one_by_one = [pipe(x, direction="b2a") for x in (array, other)]
    batched = pipe([array, other], direction="b2a", batch_size=2)
    for single, in_batch in zip(one_by_one, batched, strict=True):
        assert np.array_equal(single.image, in_batch.image)
    # The command's options: a hard mask has only 0 and 255.
    hard = pipe(array, direction="b2a", mask_threshold=0.5, scale="native")
    assert set(np.unique(hard.mask)) <= {0, 255}
    expected = translate_tensor(pipe.translator, torch.from_numpy(array).permute(2, 0, 1)[None],
                                "b2a", True, scale_px=None, mask_threshold=0.5)[0]
    assert np.array_equal(hard.image, expected[0].permute(1, 2, 0).numpy())


@pytest.mark.parametrize(("call", "message"), [
    (lambda pipe: pipe(np.zeros((8, 8, 3), dtype=np.float32)), "uint8"),
    (lambda pipe: pipe(42), "cannot translate a int"),
    (lambda pipe: pipe(np.zeros((20, 20, 3), dtype=np.uint8), direction="sideways"), "a2b or b2a"),
    (lambda pipe: pipe(np.zeros((20, 20, 3), dtype=np.uint8), mask_threshold=2), "threshold"),
    (lambda pipe: pipe(Path("/nonexistent/x.jpg")), "does not exist"),
])
def test_bad_calls_are_one_clear_error(tiny_model_folder: Path, call, message: str) -> None:
    pipe = Pipeline.from_pretrained(tiny_model_folder, device="cpu")
    with pytest.raises(AgganError, match=message):
        call(pipe)
