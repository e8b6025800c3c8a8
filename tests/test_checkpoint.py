"""Checkpoints: safe loading, clear errors, nothing damaged by a failed resume."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from aggan.checkpoint import load_checkpoint, saved_steps, step_file
from aggan.cli import main
from aggan.config import build_config
from aggan.errors import AgganError
from aggan.images import read_image, write_png
from aggan.loading import load_model
from aggan.model_folder import WEIGHTS_FILE, export_model
from aggan.networks import Translator
from aggan.train import train
from aggan.translate import translate_tensor
from conftest import tiny_layer


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("run")
    config = build_config(tiny_layer(steps=12, checkpoint_every_steps=2, attention_warmup_step=8,
                                     switch_step=10))
    train(config, run_dir, stop_at_step=4, progress=False, tensorboard=False)
    return run_dir


def test_translator_loads_from_folder_or_file(trained_run: Path) -> None:
    model = load_model(trained_run, torch.device("cpu"))
    assert model.config.model.generator_width == 8 and not model.translator.training
    assert not model.use_attention  # the run stopped inside its warm-up: mask fixed at 1
    assert model.source == trained_run / "checkpoints" / "latest.pt"
    again = load_model(trained_run / "checkpoints" / "step-0000002.pt").translator
    assert again.generators["a2b"].layers[0].weight.shape == (8, 3, 7, 7)


def test_saved_steps_lists_the_step_checkpoints_in_order(tmp_path: Path) -> None:
    """Only ``step_file`` names count (not latest.pt, best.pt or a temp file), in step order."""
    (tmp_path / "checkpoints").mkdir()
    for name in (step_file(12000), step_file(800), step_file(4800), "latest.pt", "best.pt",
                 "step-0000900.pt.tmp"):
        (tmp_path / "checkpoints" / name).write_bytes(b"")
    assert saved_steps(tmp_path) == [800, 4800, 12000]


def test_truncated_checkpoint_is_named(tmp_path: Path, trained_run: Path) -> None:
    data = (trained_run / "checkpoints" / "latest.pt").read_bytes()
    broken = tmp_path / "broken.pt"
    broken.write_bytes(data[: len(data) // 2])
    with pytest.raises(AgganError, match=r"broken\.pt"):
        load_checkpoint(broken)


class _Exploit:
    def __reduce__(self):  # what a hostile checkpoint would do on a plain torch.load
        return (Path("/tmp/aggan-pwned").touch, ())


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_checkpoint_from_a_stranger_never_runs_code(tmp_path: Path) -> None:
    hostile = tmp_path / "hostile.pt"
    torch.save({"payload": _Exploit()}, hostile)
    marker = Path("/tmp/aggan-pwned")
    marker.unlink(missing_ok=True)
    with pytest.raises(AgganError, match=r"hostile\.pt"):
        load_checkpoint(hostile)
    assert not marker.exists()
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(AgganError, match=r"plain\.pkl"):
        load_checkpoint(plain)


def test_state_dict_that_does_not_fit_is_named(tmp_path: Path, trained_run: Path) -> None:
    state = load_checkpoint(trained_run / "checkpoints" / "latest.pt")
    state["config"]["model"]["generator_width"] = 16
    wrong = tmp_path / "wrong.pt"
    torch.save(state, wrong)
    with pytest.raises(AgganError, match=r"wrong\.pt.*do not fit"):
        load_model(wrong)


def test_checkpoint_of_an_older_geometry_gets_one_line(tmp_path: Path, trained_run: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """Format 2 held the networks before they took the released padding: its weights would load
    into the same shapes and translate wrongly, so it is refused, naming the file."""
    state = load_checkpoint(trained_run / "checkpoints" / "latest.pt")
    state["format_version"] = 2
    old = tmp_path / "old.pt"
    torch.save(state, old)
    code = main(["translate", "--checkpoint", str(old), "--input", str(tmp_path), "--out",
                 str(tmp_path / "out"), "--direction", "a2b"])
    error = capsys.readouterr().err
    assert code == 2 and len(error.strip().splitlines()) == 1
    assert "old.pt has format version 2; this aggan reads version 3" in error


def test_the_weights_average_is_what_translate_export_and_the_model_folder_use(
        tmp_path: Path) -> None:
    """With ``train.translator_ema`` the checkpoint keeps both weights; every inference path
    (load_model, so translate and evaluate; export_model, so the model folder and
    from_pretrained; aggan translate on the CLI) uses the average, never the raw weights."""
    config = build_config(tiny_layer(steps=8, attention_warmup_step=2, switch_step=6,
                                     translator_ema=0.5))
    run = tmp_path / "run"
    train(config, run, progress=False, tensorboard=False)
    state = load_checkpoint(run / "checkpoints" / "latest.pt")
    average, raw = state["translator_ema"], state["translator"]
    assert state["translator_ema_updates"] == 8
    differs = [key for key in raw if not torch.equal(raw[key], average[key])]
    assert differs  # the average lags the weights

    def assert_average(weights: dict[str, torch.Tensor]) -> None:
        for key, tensor in average.items():
            assert torch.equal(weights[key].float(), tensor.float()), key

    translator = load_model(run).translator
    assert_average(translator.state_dict())
    export_model(run, tmp_path / "model", dtype="float32")
    assert_average(load_file(str(tmp_path / "model" / WEIGHTS_FILE)))
    assert_average(load_model(tmp_path / "model").translator.state_dict())

    image = torch.randint(0, 256, (1, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator()
                          .manual_seed(1))
    (tmp_path / "in").mkdir()
    write_png(image[0], tmp_path / "in" / "x.png")
    assert main(["translate", "--checkpoint", str(run), "--input", str(tmp_path / "in"),
                 "--out", str(tmp_path / "out"), "--direction", "a2b"]) == 0
    written = read_image(tmp_path / "out" / "x.png")
    raw_translator = Translator(config.model)
    raw_translator.load_state_dict(raw)
    by_raw = translate_tensor(raw_translator.eval(), image, "a2b", True, scale_px=32)[0][0]
    by_average = translate_tensor(translator, image, "a2b", True, scale_px=32)[0][0]
    assert torch.equal(written, by_average) and not torch.equal(written, by_raw)


def test_the_average_resumes_where_it_was(tmp_path: Path) -> None:
    """A run stopped and resumed keeps its average: the same final average as one run through."""
    layer = tiny_layer(steps=8, attention_warmup_step=2, switch_step=6, translator_ema=0.5,
                       checkpoint_every_steps=4)
    train(build_config(layer), tmp_path / "whole", progress=False, tensorboard=False)
    train(build_config(layer), tmp_path / "split", stop_at_step=4, progress=False,
          tensorboard=False)
    train(build_config(layer), tmp_path / "split", resume=True, progress=False,
          tensorboard=False)
    whole, split = (load_checkpoint(tmp_path / name / "checkpoints" / "latest.pt")
                    for name in ("whole", "split"))
    assert split["translator_ema_updates"] == whole["translator_ema_updates"] == 8
    for key, tensor in whole["translator_ema"].items():
        torch.testing.assert_close(split["translator_ema"][key], tensor, rtol=0, atol=1e-6)
