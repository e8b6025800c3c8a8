"""Config resolution: layers, type checks, errors that name the field."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from aggan.config import (
    LossesConfig,
    RunConfig,
    build_config,
    build_saved_config,
    parse_assignment,
    read_config_file,
    section_of,
    to_dict,
)
from aggan.errors import AgganError
from aggan.model_folder import read_model_folder


def test_defaults_are_the_methods_values() -> None:
    config = RunConfig()
    assert config.train.lr == 1e-4 and config.train.adam_beta1 == 0.5
    assert config.losses.cycle_weight == 10 and config.train.pool_size == 50
    assert config.schedule.tau == 0.1 and config.schedule.epochs == 100
    assert config.schedule.decay_start_epoch == 50 and config.train.batch_size == 1
    assert config.model.generator_width == 32 and config.model.generator_blocks == 9
    assert config.data.size_px == 256 and config.data.resolved_load_size_px == 286


def test_official_config_restores_released_behaviour() -> None:
    config = build_config(read_config_file("official"))
    assert config.schedule.switch_epoch == 30 and config.schedule.attention_warmup_epoch == 0
    assert config.model.attention_kernels == "official-1x1"
    # None of what keeps the attention alive on photos is in the released code.
    losses, schedule = config.losses, config.schedule
    assert (losses.attention_cycle_gradient, schedule.guided_discriminator) == (1, "switch")
    assert losses.source_negative_weight == losses.mask_border_weight == 0
    assert losses.mask_area_weight == losses.mask_area_min == 0
    # It trains on every training image and freezes the attention the switch finds.
    assert config.data.validation_images == 0 and schedule.switch_attention == "last"


def test_layers_later_wins_and_set_parses_json() -> None:
    config = build_config({"train": {"lr": 1.0}}, parse_assignment("train.lr=2e-4"),
                          parse_assignment("data.root=some/folder"))
    assert config.train.lr == 2e-4 and config.data.root == "some/folder"


@pytest.mark.parametrize(("layer", "named"), [
    ({"train": {"lrr": 1}}, "train.lrr"),
    ({"schedule": {"steps": "ten"}}, "schedule.steps"),
    ({"schedule": {"tau": 2}}, "schedule.tau"),
    ({"monitor": {"log_every_steps": 0}}, "monitor.log_every_steps"),
    ({"runtime": {"precision": "fp8"}}, "runtime.precision"),
    ({"model": {"variant": "unet"}}, "model.variant"),
    ({"data": {"size_px": 30}}, "--size"),
    ({"data": {"flip": 1}}, "data.flip"),
    ({"losses": {"cycle_weight": 0}}, "losses.cycle_weight"),
    ({"train": {"cycle_weight": 0}}, "losses.cycle_weight"),  # the layout before the sections
])
def test_bad_values_name_the_field(layer: dict, named: str) -> None:
    with pytest.raises(AgganError, match=named.replace(".", r"\.")):
        build_config(layer)


@pytest.mark.parametrize("weight", [f.name for f in dataclasses.fields(LossesConfig)
                                    if f.name.endswith("_weight")])
def test_every_loss_weight_refuses_a_negative(weight: str) -> None:
    with pytest.raises(AgganError, match=rf"losses\.{weight} must be"):
        build_config({"losses": {weight: -1.0}})


def test_run_config_json_loads_back(tmp_path: Path) -> None:
    config = build_config({"schedule": {"steps": 5}, "model": {"variant": "cyclegan"}})
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"config": to_dict(config), "argv": []}))
    assert build_config(read_config_file(str(path))) == config


def test_a_config_from_before_the_sections_loads_into_them() -> None:
    """Checkpoints, model folders, config files and ``--set train.X`` written when every
    setting sat in one ``train`` section (aggan 0.1.0) resolve to the same config, field for
    field, as today's layout; a layer in today's layout still wins over an older one below it."""
    flat = {"train": {"lr": 2e-4, "seed": 3, "steps": 40, "tau": 0.2, "mask_area_min": 0.2,
                      "placement_images": 4, "precision": "bf16"}}
    sectioned = {"train": {"lr": 2e-4, "seed": 3}, "schedule": {"steps": 40, "tau": 0.2},
                 "losses": {"mask_area_min": 0.2}, "monitor": {"placement_images": 4},
                 "runtime": {"precision": "bf16"}}
    assert build_config(flat) == build_config(sectioned)
    assert build_config(flat).losses.mask_area_min == 0.2
    assert build_config(flat, {"schedule": {"tau": 0.3}}).schedule.tau == 0.3
    assert build_config(sectioned, parse_assignment("train.tau=0.4")).schedule.tau == 0.4
    # The config.json of the first shipped horse2zebra-128 (2026-12-02), as aggan 0.1.0 wrote it.
    shipped = json.loads((Path(__file__).parent / "fixtures" / "config_aggan_0.1.0.json")
                         .read_text())
    assert "tau" in shipped["config"]["train"]  # written in the old layout
    config = build_config(shipped["config"])
    assert config.schedule.switch_step is None and config.schedule.tau == 0.1
    assert config.losses.mask_area_min == 0.1 and config.runtime.precision == "bf16"


def test_a_saved_config_keeps_what_its_version_did_where_a_default_changed_since(
        tmp_path: Path, tiny_model_folder: Path) -> None:
    """A run saved before data.validation_images and schedule.switch_attention existed held no
    image out and froze the attention the switch found; loaded from a checkpoint, a model folder
    or its config.json it still does, while a config file that names neither gets today's
    defaults."""
    shipped = json.loads((Path(__file__).parent / "fixtures" / "config_aggan_0.1.0.json")
                         .read_text())
    path = tmp_path / "config.json"
    path.write_text(json.dumps(shipped))
    model = shutil.copytree(tiny_model_folder, tmp_path / "model")
    info = json.loads((model / "config.json").read_text())
    del info["config"]["data"]["validation_images"], info["config"]["schedule"]["switch_attention"]
    (model / "config.json").write_text(json.dumps(info))
    for config in (build_saved_config(shipped["config"]),
                   build_config(read_config_file(str(path))), read_model_folder(model)[1]):
        assert config.data.validation_images == 0
        assert config.schedule.switch_attention == "last"
    assert build_saved_config(shipped["config"]).losses.mask_area_min == 0.1  # saved: kept
    today = build_config({"schedule": {"steps": 5}})
    assert today.data.validation_images is None and today.schedule.switch_attention == "auto"
    assert today.losses.mask_area_min == 0.2
    # A field a saved config holds wins over what its version did.
    assert build_saved_config({"schedule": {"switch_attention": "best-placement"},
                               "data": {"validation_images": 3}}).schedule.switch_attention == (
        "best-placement")


def test_section_of_names_each_fields_section() -> None:
    assert [section_of(name) for name in ("lr", "steps", "tau", "cycle_weight",
                                          "placement_images", "precision")] == [
        "train", "schedule", "schedule", "losses", "monitor", "runtime"]
    with pytest.raises(AgganError, match="no_such_field"):
        section_of("no_such_field")


def test_unreadable_config_file_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    with pytest.raises(AgganError, match=r"bad\.json"):
        read_config_file(str(bad))
    with pytest.raises(AgganError, match=r"missing\.json"):
        read_config_file(str(tmp_path / "missing.json"))
