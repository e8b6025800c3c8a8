"""The training schedule as a pure function of the step (method.md, "Training schedule").

Epoch-based fields become steps once, here; after that only the step matters, so resuming
restores the step and nothing else.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from aggan.config import VARIANTS, ScheduleConfig, Variant
from aggan.errors import AgganError


@dataclass(frozen=True)
class Phase:
    """What one step does."""

    lr_factor: float  # multiplies the base learning rate
    tau: float  # hard-mask threshold on the discriminator input (0: whole image)
    use_attention: bool  # False: mask fixed at 1 (CycleGAN; the warm-up)
    train_attention: bool  # False once the attention is frozen at the switch
    normalize_discriminator: bool  # instance norm in the discriminators


@dataclass(frozen=True)
class Schedule:
    """Schedule points in steps. ``switch_step`` is None for variants without a switch."""

    steps_per_epoch: int
    total_steps: int
    decay_start_step: int
    attention_warmup_steps: int
    switch_step: int | None
    tau: float
    variant: Variant
    # From here the discriminators see only attended regions (tau), before the switch too;
    # None: from the switch, as released.
    guided_step: int | None = None

    def phase(self, step: int) -> Phase:
        if step < self.decay_start_step:
            lr_factor = 1.0
        else:
            decay_steps = max(self.total_steps - self.decay_start_step, 1)
            lr_factor = max(0.0, (self.total_steps - step) / decay_steps)
        use_attention = (VARIANTS[self.variant].attention
                         and step >= self.attention_warmup_steps)
        switched = self.switch_step is not None and step >= self.switch_step
        guided = switched or (self.guided_step is not None and step >= self.guided_step)
        return Phase(lr_factor=lr_factor, tau=self.tau if guided else 0.0,
                     use_attention=use_attention, train_attention=use_attention and not switched,
                     normalize_discriminator=not switched)


def resolve_schedule(config: ScheduleConfig, variant: Variant, images_per_epoch: int,
                     images_per_step: int = 1) -> Schedule:
    """Turns the config's epochs (or steps) into steps.

    Args:
        config: the schedule's config.
        variant: a key of ``VARIANTS``: whether it has attention and a switch.
        images_per_epoch: max(|A|, |B|) (an epoch, as in the paper).
        images_per_step: the images of each domain a step consumes: the batch size times the
            processes training data-parallel.
    """
    steps_per_epoch = max(1, math.ceil(images_per_epoch / images_per_step))
    if config.steps is not None:
        total = config.steps

        def point(epoch: float, step: int | None) -> int:
            return step if step is not None else round(epoch / config.epochs * total)
    else:
        total = max(1, round(config.epochs * steps_per_epoch))

        def point(epoch: float, step: int | None) -> int:
            return step if step is not None else round(epoch * steps_per_epoch)

    warmup = point(config.attention_warmup_epoch, config.attention_warmup_step)
    switch = point(config.switch_epoch, config.switch_step) if VARIANTS[variant].switch else None
    schedule = Schedule(
        steps_per_epoch=steps_per_epoch,
        total_steps=total,
        decay_start_step=point(config.decay_start_epoch, config.decay_start_step),
        attention_warmup_steps=warmup,
        switch_step=switch,
        tau=config.tau,
        variant=variant,
        guided_step=(warmup if switch is not None and config.guided_discriminator == "attention"
                     else None),
    )
    check_schedule(schedule, config)
    return schedule


def _named(config: ScheduleConfig, point: str) -> str:
    """How the config gave a schedule point: ``schedule.switch_step=700`` or
    ``schedule.switch_epoch=60.0``."""
    step = getattr(config, f"{point}_step")
    if step is not None:
        return f"schedule.{point}_step={step}"
    return f"schedule.{point}_epoch={getattr(config, f'{point}_epoch')}"


def check_schedule(schedule: Schedule, config: ScheduleConfig) -> None:
    """Refuses a schedule that would silently switch off a part of the method."""
    variant = VARIANTS[schedule.variant]
    length = (f"--steps {config.steps}" if config.steps is not None
              else f"--epochs {config.epochs}")
    if variant.attention and schedule.attention_warmup_steps >= schedule.total_steps:
        raise AgganError(f"{_named(config, 'attention_warmup')} does not end before the run does "
                         f"({length}): the attention would never be used (that is --variant "
                         "cyclegan)")
    if schedule.switch_step is not None:
        if schedule.attention_warmup_steps >= schedule.switch_step:
            raise AgganError(f"{_named(config, 'attention_warmup')} does not end before "
                             f"{_named(config, 'switch')}: the attention would never train")
        if schedule.switch_step >= schedule.total_steps:
            raise AgganError(f"{_named(config, 'switch')} is not before the end of the run "
                             f"({length}): the attention-guided discriminator would never be "
                             "used (that is --variant no-attention-d)")
        if schedule.tau == 0:
            raise AgganError("schedule.tau=0 shows the discriminators the whole image after the "
                             "switch: the attention-guided discriminator would never be used "
                             "(that is --variant no-attention-d)")
    if schedule.decay_start_step > schedule.total_steps:
        raise AgganError(f"{_named(config, 'decay_start')} is after the end of the run "
                         f"({length}): the learning rate would never decay")


POINTS = {"attention_warmup_steps": "the attention warm-up's end",
          "switch_step": "the switch", "guided_step": "the guided discriminator's start",
          "decay_start_step": "the learning-rate decay's start"}


def continue_schedule(saved: Schedule, requested: Schedule, step: int,
                      config: ScheduleConfig) -> Schedule:
    """The schedule of a run resumed at ``step`` with a possibly different length.

    Points the run has passed stay where they were (the run lived them); points ahead move with
    the new length, as they would in a fresh run of it. Refuses a length the run has already
    reached, and one that would put a point still ahead of the run behind it.
    """
    if requested == saved:
        return saved
    length = (f"--steps {config.steps}" if config.steps is not None
              else f"--epochs {config.epochs}")
    if requested.total_steps <= step:
        raise AgganError(f"{length} ({requested.total_steps} steps) is not beyond step {step}, "
                         "which this run has reached; pass a longer run to extend it")
    points = {}
    for name, what in POINTS.items():
        was, now = getattr(saved, name), getattr(requested, name)
        if was is not None and was <= step:
            points[name] = was
        elif now is not None and now < step:
            raise AgganError(f"{length} would move {what} from step {was} to step {now}, behind "
                             f"step {step} which this run has reached; pass a longer run")
        else:
            points[name] = now
    schedule = dataclasses.replace(requested, **points)
    check_schedule(schedule, config)
    return schedule


def schedule_dict(schedule: Schedule) -> dict[str, Any]:
    """The schedule's points in steps, as config.json and checkpoints record them."""
    return dataclasses.asdict(schedule)
