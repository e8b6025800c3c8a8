"""Checkpoints: safe loading, clear errors, nothing damaged by a failed resume."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from aggan.checkpoint import load_checkpoint, load_translator
from aggan.cli import main
from aggan.config import build_config
from aggan.errors import AgganError
from aggan.train import train
from conftest import tiny_layer


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("run")
    config = build_config(tiny_layer(steps=12, checkpoint_every_steps=2, attention_warmup_step=8,
                                     switch_step=10))
    train(config, run_dir, stop_at_step=4, progress=False, tensorboard=False)
    return run_dir


def test_translator_loads_from_folder_or_file(trained_run: Path) -> None:
    translator, config, use_attention = load_translator(trained_run, torch.device("cpu"))
    assert config.model.generator_width == 8 and not translator.training
    assert not use_attention  # the run stopped inside its warm-up: mask fixed at 1
    again, _, _ = load_translator(trained_run / "checkpoints" / "step-0000002.pt",
                                  torch.device("cpu"))
    assert again.generators["a2b"].layers[0].weight.shape == (8, 3, 7, 7)


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
        load_translator(wrong, torch.device("cpu"))


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
