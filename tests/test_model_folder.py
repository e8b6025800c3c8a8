"""A trained model as a shareable folder: export, load without pickle, find by name or Hub id."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import torch

from aggan.cli import main
from aggan.config import build_config
from aggan.errors import AgganError
from aggan.loading import load_model
from aggan.model_folder import CONFIG_FILE, WEIGHTS_FILE, export_model
from aggan.networks import Translator
from aggan.train import train
from aggan.translate import translate_tensor
from conftest import tiny_layer


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny run that got past its warm-up and its switch."""
    run_dir = tmp_path_factory.mktemp("export") / "run"
    train(build_config(tiny_layer(steps=6, attention_warmup_step=2, switch_step=4,
                                  checkpoint_every_steps=3)),
          run_dir, progress=False, tensorboard=False)
    return run_dir


def _images() -> torch.Tensor:
    return torch.randint(0, 256, (2, 3, 40, 52), dtype=torch.uint8,
                         generator=torch.Generator().manual_seed(3))


def _translations(translator: Translator) -> list[torch.Tensor]:
    return [x for direction in ("a2b", "b2a")
            for x in translate_tensor(translator, _images(), direction, True, scale_px=32)]


def test_export_then_load_reproduces_the_checkpoint(finished_run: Path,
                                                               tmp_path: Path) -> None:
    info = export_model(finished_run, tmp_path / "model", dtype="float32")
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == [CONFIG_FILE, WEIGHTS_FILE]
    assert info["size_px"] == 32 and info["step"] == 6 and info["weights"]["dtype"] == "float32"
    assert json.loads((tmp_path / "model" / CONFIG_FILE).read_text()) == info
    original = load_model(finished_run).translator
    loaded = load_model(tmp_path / "model").translator
    assert not loaded.training
    for exact, again in zip(_translations(original), _translations(loaded), strict=True):
        assert torch.equal(exact, again)
    # The folder holds the translator only: no discriminators, no optimizer state.
    from safetensors.torch import load_file
    assert set(load_file(tmp_path / "model" / WEIGHTS_FILE)) == set(original.state_dict())


@pytest.mark.parametrize(("field", "value"), [("attention_from", "generator"),
                                               ("generator_upsample", "resize")])
def test_architecture_options_export_and_reproduce(tmp_path: Path, field: str,
                                                   value: str) -> None:
    layer = tiny_layer(steps=4, attention_warmup_step=2, switch_step=3, checkpoint_every_steps=4)
    layer["model"][field] = value
    train(build_config(layer), tmp_path / "run", progress=False, tensorboard=False)
    info = export_model(tmp_path / "run", tmp_path / "model", dtype="float32")
    assert info["config"]["model"][field] == value
    original = load_model(tmp_path / "run").translator
    loaded = load_model(tmp_path / "model").translator
    for exact, again in zip(_translations(original), _translations(loaded), strict=True):
        assert torch.equal(exact, again)


def test_float16_keeps_outputs_within_one_level(finished_run: Path, tmp_path: Path) -> None:
    info = export_model(finished_run, tmp_path / "half", dtype="float16")
    assert info["weights"]["dtype"] == "float16"
    assert info["weights"]["float16_max_level_change"] <= 1
    full = export_model(finished_run, tmp_path / "full", dtype="float32")
    assert full["weights"]["float16_max_level_change"] is None
    sizes = [(tmp_path / name / WEIGHTS_FILE).stat().st_size for name in ("half", "full")]
    assert sizes[0] < 0.55 * sizes[1]
    original = load_model(finished_run).translator
    half = load_model(tmp_path / "half").translator
    for exact, approximate in zip(_translations(original), _translations(half), strict=True):
        assert (exact.int() - approximate.int()).abs().max() <= 1


def test_float16_that_changes_outputs_is_refused(finished_run: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("aggan.model_folder.float16_level_change", lambda *args: 3)
    with pytest.raises(AgganError, match="3 levels"):
        export_model(finished_run, tmp_path / "half", dtype="float16")
    assert not (tmp_path / "half").exists()
    info = export_model(finished_run, tmp_path / "auto")  # auto falls back to float32
    assert info["weights"]["dtype"] == "float32"


def test_export_refuses_a_checkpoint_inside_the_warm_up(tmp_path: Path) -> None:
    """Stopped at step 2 of a warm-up until 4: the attention was never used."""
    early = tmp_path / "early"
    train(build_config(tiny_layer(steps=6, attention_warmup_step=4, switch_step=5)), early,
          stop_at_step=2, progress=False, tensorboard=False)
    with pytest.raises(AgganError, match="inside the attention warm-up"):
        export_model(early, tmp_path / "model")


def test_export_never_overwrites_another_folder(finished_run: Path, tmp_path: Path) -> None:
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "keep.jpg").write_bytes(b"mine")
    with pytest.raises(AgganError, match="not a model folder"):
        export_model(finished_run, tmp_path / "photos")
    assert (tmp_path / "photos" / "keep.jpg").read_bytes() == b"mine"
    export_model(finished_run, tmp_path / "model")
    export_model(finished_run, tmp_path / "model")  # a model folder is replaced in place
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp left over


def test_cli_export_then_translate_with_model(finished_run: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export-weights", "--checkpoint", str(finished_run), "--out",
                 str(tmp_path / "model")]) == 0
    assert "model.safetensors" in capsys.readouterr().out
    image = tmp_path / "in" / "x.png"
    image.parent.mkdir()
    from aggan.images import write_png
    write_png(_images()[0], image)
    assert main(["translate", "--model", str(tmp_path / "model"), "--input", str(image),
                 "--out", str(tmp_path / "out"), "--direction", "a2b"]) == 0
    assert (tmp_path / "out" / "x.png").is_file()
    assert (tmp_path / "out" / "masks" / "x.png").is_file()


def test_cli_export_records_measured_metrics(finished_run: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    run_metrics = json.loads((finished_run / "metrics.json").read_text())
    assert export_model(finished_run, tmp_path / "own")["metrics"] == run_metrics
    measured = tmp_path / "real_quality.json"
    measured.write_text(json.dumps({"size": 32, "rows": [{"direction": "a2b", "kid": 1.5}]}))
    assert main(["export-weights", "--checkpoint", str(finished_run), "--out",
                 str(tmp_path / "model"), "--metrics", str(measured)]) == 0
    info = json.loads((tmp_path / "model" / CONFIG_FILE).read_text())
    assert info["metrics"] == {"size": 32, "rows": [{"direction": "a2b", "kid": 1.5}]}
    capsys.readouterr()
    for text, error in (("[1, 2]", "must hold a JSON object"), ("{", "is not valid JSON")):
        measured.write_text(text)
        assert main(["export-weights", "--checkpoint", str(finished_run), "--out",
                     str(tmp_path / "other"), "--metrics", str(measured)]) == 2
        message = capsys.readouterr().err.strip()
        assert message.count("\n") == 0 and error in message and str(measured) in message
        assert not (tmp_path / "other").exists()
    assert main(["export-weights", "--checkpoint", str(finished_run), "--out",
                 str(tmp_path / "other"), "--metrics", str(tmp_path / "absent.json")]) == 2
    assert "--metrics: cannot read" in capsys.readouterr().err


def test_exported_folder_is_readable_by_the_team(finished_run: Path, tmp_path: Path) -> None:
    previous = os.umask(0o022)
    try:
        export_model(finished_run, tmp_path / "model", dtype="float32")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "model").stat().st_mode) == 0o755  # not mkdtemp's 0700
    for name in (WEIGHTS_FILE, CONFIG_FILE):  # safetensors alone would write 0600
        assert stat.S_IMODE((tmp_path / "model" / name).stat().st_mode) == 0o644, name
