"""``loading.load_model``: one LoadedModel from every kind of source a user names."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import pytest
import torch

from aggan.cli import main
from aggan.config import build_config
from aggan.errors import AgganError
from aggan.loading import find_model, load_model
from aggan.model_folder import WEIGHTS_FILE, export_model
from aggan.train import train
from conftest import tiny_layer


def test_every_source_gives_the_same_model(tiny_model_folder: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A model folder, its run folder, the run's checkpoint file and a shipped name: one type,
    the same weights, each ready to translate (eval mode, channels-last)."""
    run = tiny_model_folder.parent / "run"
    shutil.copytree(tiny_model_folder, tmp_path / "models" / "tiny")
    monkeypatch.setenv("AGGAN_MODELS", str(tmp_path / "models"))
    sources = {tiny_model_folder: tiny_model_folder, run: run / "checkpoints" / "latest.pt",
               run / "checkpoints" / "latest.pt": run / "checkpoints" / "latest.pt",
               "tiny": tmp_path / "models" / "tiny"}
    reference = load_model(tiny_model_folder).translator.state_dict()
    for source, read_from in sources.items():
        model = load_model(source)
        assert model.source == read_from and model.use_attention
        assert not model.translator.training and model.config.data.size_px == 32
        weight = model.translator.generators["a2b"].layers[0].weight
        assert weight.is_contiguous(memory_format=torch.channels_last)
        for name, tensor in model.translator.state_dict().items():
            assert torch.equal(tensor, reference[name]), (source, name)


def test_a_model_without_attention_says_so(tmp_path: Path) -> None:
    """The cyclegan variant has no attention networks: use_attention is False whether it is
    read from its checkpoint or from its model folder."""
    layer = tiny_layer(steps=2)
    layer["model"]["variant"] = "cyclegan"
    train(build_config(layer), tmp_path / "run", progress=False, tensorboard=False)
    export_model(tmp_path / "run", tmp_path / "model", dtype="float32")
    for source in (tmp_path / "run", tmp_path / "model"):
        model = load_model(source)
        assert not model.use_attention and model.translator.attention is None


def test_loading_runs_no_pickle(tiny_model_folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("unpickling")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    model = load_model(tiny_model_folder)
    assert model.use_attention and model.config.data.size_px == 32
    assert model.translator.attention is not None


def test_find_model_errors_are_one_line(tmp_path: Path, tiny_model_folder: Path) -> None:
    with pytest.raises(AgganError, match="no such model folder"):
        find_model(tmp_path / "missing")
    with pytest.raises(AgganError, match="not a model folder"):
        find_model(tiny_model_folder.parent / "run")
    with pytest.raises(AgganError, match="no model 'no-such-model'"):
        find_model("no-such-model")
    shutil.copytree(tiny_model_folder, tmp_path / "model")
    (tmp_path / "model" / WEIGHTS_FILE).write_bytes(b"not safetensors")
    with pytest.raises(AgganError, match=WEIGHTS_FILE):
        load_model(tmp_path / "model")


def test_a_folder_that_is_not_there_is_not_a_hub_id(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """The README's models/my-h2z before it was exported: a path (its first part is a folder
    here), so it gets one line naming the folder, and the Hub is never asked."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    monkeypatch.setattr("aggan.loading._hub_download",
                        lambda repo_id: pytest.fail(f"asked the Hub for {repo_id}"))
    for name in ("models/my-h2z", "./my-h2z", "runs/a/model", "~/my-h2z", "h2z.safetensors"):
        with pytest.raises(AgganError, match="no such model folder"):
            find_model(name)
    with pytest.raises(AgganError, match="no such model folder: models/my-h2z"):
        load_model("models/my-h2z")
    assert main(["translate", "--model", "models/my-h2z", "--input", str(tmp_path),
                 "--out", str(tmp_path / "out"), "--direction", "a2b"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "no such model folder: models/my-h2z" in error
    assert str(tmp_path / "models" / "my-h2z") in error


def test_shipped_names_resolve_through_aggan_models(tiny_model_folder: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copytree(tiny_model_folder, tmp_path / "models" / "tiny-32")
    monkeypatch.setenv("AGGAN_MODELS", str(tmp_path / "models"))
    assert find_model("tiny-32") == tmp_path / "models" / "tiny-32"


def test_hub_id_from_the_local_cache(tiny_model_folder: Path, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The Hub path through huggingface_hub itself, offline: a cached snapshot of owner/name
    in the layout the Hub client keeps, as a download leaves it."""
    pytest.importorskip("huggingface_hub")
    cache = tmp_path / "hub"
    revision = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / "models--someone--tiny-32"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision)
    shutil.copytree(tiny_model_folder, repo / "snapshots" / revision)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(cache))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    loaded = load_model("someone/tiny-32")
    original = load_model(tiny_model_folder).translator
    assert all(torch.equal(exact, again) for exact, again in zip(
        original.state_dict().values(), loaded.translator.state_dict().values(), strict=True))
    with pytest.raises(AgganError, match=r"someone/absent: offline, and the Hub cache holds no"):
        load_model("someone/absent")
