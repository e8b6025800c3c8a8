"""aggan export: ONNX and pt2 graphs that match PyTorch, or no file at all."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from aggan import export as export_module
from aggan.cli import main
from aggan.config import build_config
from aggan.errors import AgganError
from aggan.export import TranslationGraph, check_images, export_graph
from aggan.loading import load_model
from aggan.networks import Translator
from aggan.translate import translate_tensor
from conftest import tiny_layer


def run_file(path: Path, images: torch.Tensor) -> list[torch.Tensor]:
    if path.suffix == ".pt2":
        with torch.no_grad():
            return list(torch.export.load(path).module()(images))
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return [torch.from_numpy(x) for x in session.run(None, {"images": images.numpy()})]


@pytest.mark.parametrize("suffix", [".onnx", ".pt2"])
def test_exported_graph_translates_like_translate_at_an_unseen_size(
        tiny_model_folder: Path, tmp_path: Path, suffix: str,
        capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / f"h2z{suffix}"
    assert main(["export", "--model", str(tiny_model_folder), "--out", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    # 45 x 61: odd, non-square, none of the sizes the export checked itself.
    images = torch.randint(0, 256, (2, 3, 45, 61), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(5))
    translation, mask = run_file(out, images)
    expected_translation, expected_mask = translate_tensor(
        load_model(tiny_model_folder).translator, images, "a2b", True)
    assert translation.dtype == torch.uint8 and translation.shape == images.shape
    assert mask.shape == (2, 1, 45, 61)
    assert (translation.int() - expected_translation.int()).abs().max() <= 1
    assert (mask.int() - expected_mask.int()).abs().max() <= 1
    assert (translation != images).any()  # the model translates: not a pass-through


def test_float_graph_of_both_directions(tiny_model_folder: Path, tmp_path: Path) -> None:
    translator = load_model(tiny_model_folder).translator
    report = export_graph(translator, tmp_path / "both.onnx", fmt="onnx",
                          directions=("a2b", "b2a"), input_kind="float", size_px=32)
    assert max(report.max_difference.values()) <= 1e-4 and len(report.max_difference) == 3
    import onnxruntime

    session = onnxruntime.InferenceSession(str(tmp_path / "both.onnx"))
    assert [o.name for o in session.get_outputs()] == [
        "translation_a2b", "mask_a2b", "translation_b2a", "mask_b2a"]
    meta = session.get_modelmeta().custom_metadata_map
    assert meta["training_size_px"] == "32" and meta["input"] == "float"
    images = check_images((37, 50), "float")
    outputs = session.run(None, {"images": images.numpy()})
    for direction, index in (("a2b", 0), ("b2a", 2)):
        expected, expected_mask = translate_tensor(translator, (images * 255).round().to(
            torch.uint8), direction, True)
        assert np.abs(outputs[index] * 255 - expected.numpy()).max() <= 1
        assert np.abs(outputs[index + 1] * 255 - expected_mask.numpy()).max() <= 1


def _legacy_channels_last_export(graph: TranslationGraph, example: torch.Tensor, fmt: str,
                                 path: Path, metadata: dict[str, str]) -> None:
    """What a user gets from torch's TorchScript-based exporter traced in channels-last."""
    graph.translator.to(memory_format=torch.channels_last)
    torch.onnx.export(graph, (example.contiguous(memory_format=torch.channels_last),), str(path),
                      dynamo=False, input_names=["images"],
                      dynamic_axes={"images": {0: "batch", 2: "height", 3: "width"}})


def test_a_wrong_graph_is_never_kept(tiny_model_folder: Path, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The legacy exporter on a channels-last model writes a file without error whose outputs
    are wrong; the check after writing refuses it and leaves nothing behind."""
    monkeypatch.setattr(export_module, "write_graph", _legacy_channels_last_export)
    out = tmp_path / "legacy.onnx"
    with pytest.raises(AgganError, match=r"differs from PyTorch by .* was not written"):
        export_graph(load_model(tiny_model_folder).translator, out, fmt="onnx", directions=("a2b",),
                     input_kind="float", size_px=32)
    assert list(tmp_path.iterdir()) == []


def test_export_leaves_the_callers_model_as_it_was(tiny_model_folder: Path, tmp_path: Path) -> None:
    translator = load_model(tiny_model_folder).translator
    before = {name: p.clone() for name, p in translator.state_dict().items()}
    export_graph(translator, tmp_path / "m.pt2", fmt="pt2", directions=("b2a",),
                 input_kind="uint8", size_px=32)
    assert next(translator.parameters()).is_contiguous(memory_format=torch.channels_last)
    # The file holds only what b2a runs: the b2a generator and domain B's attention.
    names = torch.export.load(tmp_path / "m.pt2").state_dict
    assert names and all(".b2a." in name or ".b." in name for name in names)
    assert all(torch.equal(before[name], p) for name, p in translator.state_dict().items())


def test_cyclegan_variant_exports_a_full_mask(tmp_path: Path) -> None:
    translator = Translator(build_config(tiny_layer(), {"model": {"variant": "cyclegan"}}).model)
    export_graph(translator, tmp_path / "c.pt2", fmt="pt2", directions=("a2b",),
                 input_kind="uint8", size_px=32)
    _, mask = run_file(tmp_path / "c.pt2", check_images((20, 24), "uint8"))
    assert (mask == 255).all()


def test_bad_requests_are_one_line_errors(tiny_model_folder: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    model = str(tiny_model_folder)
    assert main(["export", "--model", model, "--out", str(tmp_path / "m.bin")]) == 2
    assert "--format onnx or pt2" in capsys.readouterr().err
    assert main(["export", "--model", model, "--format", "onnx",
                 "--out", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # not installed
    assert main(["export", "--model", model, "--out", str(tmp_path / "m.onnx")]) == 2
    assert "pip install 'aggan[export]'" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_readme_onnxruntime_example_runs_without_torch(tiny_model_folder: Path,
                                                        tmp_path: Path) -> None:
    """The README's ten lines, as written, in a fresh interpreter that never imports torch."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    example = readme.split("```python\nimport numpy as np, onnxruntime as ort\n")[1]
    example = "import numpy as np, onnxruntime as ort\n" + example.split("```")[0]
    assert len(example.strip().splitlines()) <= 10
    export_graph(load_model(tiny_model_folder).translator, tmp_path / "h2z.onnx", fmt="onnx",
                 directions=("a2b",), input_kind="uint8", size_px=32)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (60, 90, 3), dtype=np.uint8)).save(tmp_path / "horse.jpg")
    check = "\nimport sys\nassert 'torch' not in sys.modules and 'aggan' not in sys.modules\n"
    subprocess.run([sys.executable, "-c", example + check], cwd=tmp_path, check=True)
    zebra, mask = Image.open(tmp_path / "zebra.png"), Image.open(tmp_path / "mask.png")
    assert zebra.size == (48, 32) and zebra.mode == "RGB" and mask.size == (48, 32)
