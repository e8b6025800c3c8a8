"""The schedule: warm-up, the switch epoch's three changes, lr decay, steps vs epochs."""

from __future__ import annotations

import pytest

from aggan.config import ScheduleConfig
from aggan.errors import AgganError
from aggan.schedule import Schedule, continue_schedule, resolve_schedule


def test_paper_schedule_in_epochs() -> None:
    config = ScheduleConfig(switch_epoch=30, attention_warmup_epoch=0,
                            guided_discriminator="switch")
    schedule = resolve_schedule(config, "aggan", images_per_epoch=1334)
    assert schedule.steps_per_epoch == 1334
    assert schedule.total_steps == 133400
    assert schedule.switch_step == 30 * 1334
    assert schedule.decay_start_step == 50 * 1334
    before, after = schedule.phase(30 * 1334 - 1), schedule.phase(30 * 1334)
    assert (before.tau, before.train_attention, before.normalize_discriminator) == (0, True, True)
    assert (after.tau, after.train_attention, after.normalize_discriminator) == (0.1, False, False)
    assert after.use_attention
    assert schedule.phase(0).lr_factor == schedule.phase(50 * 1334 - 1).lr_factor == 1
    assert schedule.phase(50 * 1334).lr_factor == 1
    assert schedule.phase(75 * 1334).lr_factor == pytest.approx(0.5)
    assert schedule.phase(100 * 1334).lr_factor == 0


def test_steps_keep_the_fractions_of_the_epoch_schedule() -> None:
    schedule = resolve_schedule(ScheduleConfig(steps=1000), "aggan", images_per_epoch=10)
    assert schedule.total_steps == 1000
    assert schedule.attention_warmup_steps == 250
    assert schedule.switch_step == 600
    assert schedule.decay_start_step == 500
    warm_up = schedule.phase(249)
    assert not warm_up.use_attention and not warm_up.train_attention
    assert schedule.phase(250).train_attention


def test_explicit_steps_override_epochs() -> None:
    config = ScheduleConfig(steps=100, switch_step=7, attention_warmup_step=0)
    schedule = resolve_schedule(config, "aggan", images_per_epoch=10)
    assert schedule.switch_step == 7 and schedule.attention_warmup_steps == 0


def test_batch_size_divides_the_epoch() -> None:
    config = ScheduleConfig(epochs=2, decay_start_epoch=1, attention_warmup_epoch=0.5,
                            switch_epoch=1.2)
    schedule = resolve_schedule(config, "aggan", images_per_epoch=10, images_per_step=4)
    assert schedule.steps_per_epoch == 3 and schedule.total_steps == 6


def test_variants() -> None:
    config = ScheduleConfig(steps=100)
    holistic = resolve_schedule(config, "no-attention-d", 10)
    assert holistic.switch_step is None
    assert holistic.phase(99).tau == 0 and holistic.phase(99).normalize_discriminator
    assert holistic.phase(99).train_attention
    cyclegan = resolve_schedule(config, "cyclegan", 10)
    assert not any(cyclegan.phase(s).use_attention for s in (0, 50, 99))


@pytest.mark.parametrize(("variant", "fields", "message"), [
    ("aggan", {"attention_warmup_epoch": 60.0, "switch_epoch": 60.0},
     r"schedule\.attention_warmup_epoch=60\.0 does not end before "
     r"schedule\.switch_epoch=60\.0: the "
     r"attention would never train"),
    ("aggan", {"steps": 100, "attention_warmup_step": 70, "switch_step": 50},
     r"schedule\.attention_warmup_step=70 does not end before schedule\.switch_step=50"),
    ("aggan", {"steps": 100, "attention_warmup_step": 0, "switch_step": 0},
     r"attention_warmup_step=0 does not end before schedule\.switch_step=0"),
    ("aggan", {"switch_epoch": 100.0}, r"schedule\.switch_epoch=100\.0 is not before the end of "
     r"the run \(--epochs 100\.0\).*--variant no-attention-d"),
    ("no-attention-d", {"steps": 10, "attention_warmup_step": 10},
     r"schedule\.attention_warmup_step=10 does not end before the run does \(--steps 10\).*"
     r"--variant cyclegan"),
    ("aggan", {"tau": 0.0}, r"schedule\.tau=0 shows the discriminators the whole image"),
    ("cyclegan", {"steps": 10, "decay_start_step": 11},
     r"schedule\.decay_start_step=11 is after the end of the run \(--steps 10\)"),
])
def test_schedules_that_switch_off_a_part_of_the_method_are_refused(
        variant: str, fields: dict, message: str) -> None:
    with pytest.raises(AgganError, match=message):
        resolve_schedule(ScheduleConfig(**fields), variant, images_per_epoch=10)


def test_schedules_without_the_parts_a_variant_lacks_are_accepted() -> None:
    # cyclegan has no attention and no switch; no-attention-d no switch; tau 0 is theirs.
    resolve_schedule(ScheduleConfig(attention_warmup_epoch=100.0, tau=0.0), "cyclegan", 10)
    resolve_schedule(ScheduleConfig(switch_epoch=100.0, tau=0.0), "no-attention-d", 10)
    # The released code: no warm-up, switch at 30.
    resolve_schedule(ScheduleConfig(attention_warmup_epoch=0, switch_epoch=30), "aggan", 10)


def test_schedule_edges() -> None:
    # The last step before the end trains at 1 / (decay steps) of the lr, never at 0.
    schedule = resolve_schedule(ScheduleConfig(steps=10, decay_start_step=9), "cyclegan", 10)
    assert schedule.phase(9).lr_factor == 1 and schedule.phase(10).lr_factor == 0
    # No decay at all is allowed: it starts at the end.
    resolve_schedule(ScheduleConfig(steps=10, decay_start_step=10), "cyclegan", 10)
    # An epoch is at least one step, a run at least one step.
    tiny = resolve_schedule(ScheduleConfig(epochs=0.1, decay_start_epoch=0.1), "cyclegan",
                            images_per_epoch=3, images_per_step=4)
    assert tiny.steps_per_epoch == 1 and tiny.total_steps == 1
    # A point given in steps wins over its epoch, also when the run is given in epochs.
    assert resolve_schedule(ScheduleConfig(switch_step=7000), "aggan", 100).switch_step == 7000


@pytest.mark.parametrize("variant", ["aggan", "no-attention-d"])
def test_guided_discriminator_from_the_attention(variant: str) -> None:
    """``guided_discriminator=attention``: tau applies from the warm-up's end, while the
    attention still trains and the discriminators keep their norm until the switch. A variant
    without a switch stays holistic."""
    config = ScheduleConfig(steps=1000, guided_discriminator="attention", tau=0.2)
    schedule = resolve_schedule(config, variant, images_per_epoch=10)
    warm, started, switched = (schedule.phase(s) for s in (249, 250, 600))
    assert warm.tau == 0
    if variant == "aggan":
        assert (started.tau, started.train_attention, started.normalize_discriminator) == (
            0.2, True, True)
        assert (switched.tau, switched.train_attention, switched.normalize_discriminator) == (
            0.2, False, False)
    else:
        assert started.tau == switched.tau == 0
    released = resolve_schedule(ScheduleConfig(steps=1000, tau=0.2, guided_discriminator="switch"),
                                variant, images_per_epoch=10)
    assert released.phase(250).tau == 0


def _steps(total: int) -> tuple[ScheduleConfig, Schedule]:
    config = ScheduleConfig(steps=total)
    return config, resolve_schedule(config, "aggan", images_per_epoch=10)


def test_continuing_keeps_passed_points_and_moves_those_ahead() -> None:
    _, saved = _steps(1000)  # warm-up 250, decay 500, switch 600
    config, longer = _steps(2000)  # warm-up 500, decay 1000, switch 1200
    at_warmup = continue_schedule(saved, longer, 250, config)  # reached at exactly its step
    assert (at_warmup.attention_warmup_steps, at_warmup.guided_step) == (250, 250)
    assert (at_warmup.decay_start_step, at_warmup.switch_step) == (1000, 1200)
    before = continue_schedule(saved, longer, 249, config)
    assert before == longer  # nothing passed yet: the longer run's own schedule
    past_all = continue_schedule(saved, longer, 600, config)
    assert (past_all.attention_warmup_steps, past_all.decay_start_step,
            past_all.switch_step, past_all.total_steps) == (250, 500, 600, 2000)
    assert continue_schedule(saved, saved, 600, ScheduleConfig(steps=1000)) == saved


def test_continuing_refuses_what_cannot_be_right() -> None:
    _, saved = _steps(1000)
    config, shorter = _steps(800)  # warm-up 200, decay 400, switch 480
    assert continue_schedule(saved, shorter, 200, config).attention_warmup_steps == 200
    with pytest.raises(AgganError, match="move the attention warm-up's end from step 250 to "
                                         "step 200, behind step 201"):
        continue_schedule(saved, shorter, 201, config)
    with pytest.raises(AgganError, match=r"--steps 800 \(800 steps\) is not beyond step 800"):
        continue_schedule(saved, shorter, 800, config)
