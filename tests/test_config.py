"""Config resolution: layers, type checks, errors that name the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aggan.config import RunConfig, build_config, parse_assignment, read_config_file, to_dict
from aggan.errors import AgganError


def test_defaults_are_the_methods_values() -> None:
    config = RunConfig()
    assert config.train.lr == 1e-4 and config.train.adam_beta1 == 0.5
    assert config.train.cycle_weight == 10 and config.train.pool_size == 50
    assert config.train.tau == 0.1 and config.train.epochs == 100
    assert config.train.decay_start_epoch == 50 and config.train.batch_size == 1
    assert config.model.generator_width == 32 and config.model.generator_blocks == 9
    assert config.data.size_px == 256 and config.data.resolved_load_size_px == 286


def test_official_config_restores_released_behaviour() -> None:
    config = build_config(read_config_file("official"))
    assert config.train.switch_epoch == 30 and config.train.attention_warmup_epoch == 0
    assert config.model.attention_kernels == "official-1x1"
    # None of what keeps the attention alive on photos is in the released code.
    train = config.train
    assert (train.attention_cycle_gradient, train.guided_discriminator) == (1, "switch")
    assert train.source_negative_weight == train.mask_border_weight == 0
    assert train.mask_area_weight == train.mask_area_min == 0


def test_layers_later_wins_and_set_parses_json() -> None:
    config = build_config({"train": {"lr": 1.0}}, parse_assignment("train.lr=2e-4"),
                          parse_assignment("data.root=some/folder"))
    assert config.train.lr == 2e-4 and config.data.root == "some/folder"


@pytest.mark.parametrize(("layer", "named"), [
    ({"train": {"lrr": 1}}, "train.lrr"),
    ({"train": {"steps": "ten"}}, "train.steps"),
    ({"model": {"variant": "unet"}}, "model.variant"),
    ({"data": {"size_px": 30}}, "--size"),
    ({"data": {"flip": 1}}, "data.flip"),
    ({"train": {"cycle_weight": 0}}, "train.cycle_weight"),
])
def test_bad_values_name_the_field(layer: dict, named: str) -> None:
    with pytest.raises(AgganError, match=named.replace(".", r"\.")):
        build_config(layer)


def test_run_config_json_loads_back(tmp_path: Path) -> None:
    config = build_config({"train": {"steps": 5}, "model": {"variant": "cyclegan"}})
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"config": to_dict(config), "argv": []}))
    assert build_config(read_config_file(str(path))) == config


def test_unreadable_config_file_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    with pytest.raises(AgganError, match=r"bad\.json"):
        read_config_file(str(bad))
    with pytest.raises(AgganError, match=r"missing\.json"):
        read_config_file(str(tmp_path / "missing.json"))
