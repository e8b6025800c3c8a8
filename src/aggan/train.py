"""The training loop, top to bottom: resume, build, train, maintenance, done.

What one step computes is in ``step.py``, the losses in ``losses.py``, the training state and
its checkpoint in ``checkpoint.py``, what the run folder records in ``run_folder.py``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from aggan import distributed
from aggan.checkpoint import (
    BEST,
    LATEST,
    check_resumable,
    checkpoint_dir,
    config_of,
    load_checkpoint,
    restore_state,
    save_training_checkpoint,
    schedule_of,
    step_file,
)
from aggan.config import VARIANTS, RunConfig
from aggan.data import (
    DomainImages,
    UnpairedTrainingSet,
    fixed_samples,
    split_training,
    training_loader,
    with_validation_count,
)
from aggan.device import tensor_layout
from aggan.domains import DIRECTIONS, DOMAINS
from aggan.errors import AgganError
from aggan.faults import FiniteWatch, remove_stale_temp_files, run_lock, stop_on_signals
from aggan.images import prepare_output_dir
from aggan.metrics.monitor import SELECTION_KEY, placement_monitor, training_monitor
from aggan.networks import Discriminators, Translator
from aggan.run_folder import (
    SAMPLE_IMAGES,
    CollapseWatch,
    finish_run,
    write_run_config,
    write_samples,
)
from aggan.schedule import Schedule, continue_schedule, resolve_schedule
from aggan.step import StepModules, modules_phase, step_modules, training_step
from aggan.tracking import Tracker
from aggan.train_state import build_state

logger = logging.getLogger(__name__)

BAR_TERMS = ("loss/adversarial", "loss/cycle", "loss/discriminator", "mask/mean")


@dataclass(frozen=True)
class TrainResult:
    checkpoint: Path
    step: int
    metrics: dict[str, dict[str, Any]]  # per direction, where the data has ground truth
    translator: Translator  # the trained networks, on this process's device
    discriminators: Discriminators
    interrupted: str | None = None  # the signal that stopped it, SIGINT or SIGTERM (saved)


def training_images(config: RunConfig) -> dict[str, DomainImages]:
    """Both domains' training images (less the held-out validation images), each file decoded
    once as a check."""
    return {domain: split_training(config.data, domain)[0] for domain in DOMAINS}


def _fresh_schedule(config: RunConfig, images: dict[str, DomainImages],
                    world_size: int) -> Schedule:
    """The schedule of a start, in steps: an epoch is the larger domain's training images."""
    return resolve_schedule(config.schedule, config.model.variant,
                            max(len(domain) for domain in images.values()),
                            config.train.batch_size * world_size)


def planned_schedule(config: RunConfig, world_size: int = 1) -> Schedule:
    """The schedule a start of ``config`` would train, in steps, with every check the start runs
    on the data and the schedule (``--dry-run``)."""
    return _fresh_schedule(config, training_images(config), world_size)


def _resolve_switch_attention(config: RunConfig, placement_measured: bool) -> RunConfig:
    """``schedule.switch_attention`` as this run applies it: "auto" is best-placement where the
    run measures the masks' placement on held-out images in one process and has a switch, else
    the last attention; an explicit best-placement without the measure is an error."""
    setting = config.schedule.switch_attention
    held_out = bool(config.data.validation_images)
    if setting == "best-placement" and not (placement_measured and held_out):
        raise AgganError("schedule.switch_attention=best-placement needs the mask placement during "
                         "training on held-out photos (data.validation_images, "
                         "monitor.placement_images, the FID Inception) and one process")
    if setting != "auto":
        return config
    best = placement_measured and held_out and VARIANTS[config.model.variant].switch
    resolved = "best-placement" if best else "last"
    if VARIANTS[config.model.variant].switch:
        logger.info("the switch will freeze %s (schedule.switch_attention=auto)",
                    "each attention network where its masks were best placed" if best else
                    "the attention as it finds it: no mask placement on held-out photos here")
    return dataclasses.replace(config, schedule=dataclasses.replace(
        config.schedule, switch_attention=resolved))


def _train(config: RunConfig, run_dir: Path, context: distributed.Context, device: torch.device,
           *, resume: bool, stop_at_step: int | None, progress: bool,
           tensorboard: bool) -> TrainResult:
    main = context.is_main
    config = dataclasses.replace(config, data=with_validation_count(config.data))

    # --- Resume: the run folder holds a run only if --resume says to continue it.
    latest = checkpoint_dir(run_dir) / LATEST
    saved = None
    if resume:
        if not latest.is_file():
            raise AgganError(f"--resume: {run_dir} holds no checkpoints/{LATEST} to resume from")
        saved = load_checkpoint(latest)
        check_resumable(config_of(saved, latest), config, latest)
    elif latest.exists():
        raise AgganError(f"--out {run_dir} already holds a run; pass --resume to continue it or "
                         "choose another --out")
    if main:
        remove_stale_temp_files(run_dir)

    # --- Build: data, schedule, state, run folder, loader.
    images = training_images(config)
    schedule = _fresh_schedule(config, images, context.world_size)
    if saved is not None:
        schedule = continue_schedule(schedule_of(saved), schedule, int(saved["step"]),
                                     config.schedule)
    state = build_state(config, device, context.rank)
    if saved is not None:
        restore_state(state, saved, latest, device, context.rank)
        logger.info("resumed %s at step %d", latest, state.step)
    placement = placement_monitor(config, device, images) if main else None
    config = _resolve_switch_attention(config, placement is not None and not context.enabled)
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_run_config(run_dir, config, schedule, device, context.world_size)
        samples = {domain: fixed_samples(config.data, domain, SAMPLE_IMAGES).to(device)
                   for domain in DOMAINS}
    # Rows after the start step are from a run killed before it saved them: dropped.
    tracker = Tracker(run_dir, tensorboard=tensorboard, start_step=state.step) if main else None
    monitor = training_monitor(config, device) if main else None
    dataset = UnpairedTrainingSet(images["a"], images["b"], config.data, config.train.seed)
    loader = training_loader(dataset, batch_size=config.train.batch_size, start_step=state.step,
                             workers=config.data.workers, pin_memory=device.type == "cuda",
                             rank=context.rank, world_size=context.world_size)
    end_step = min(schedule.total_steps, stop_at_step or schedule.total_steps)
    layout = tensor_layout(config.runtime)
    logger.info("training %s on %s: %d steps (%d per epoch, %d processes), warm-up until %d, "
                "switch at %s, lr decay from %d", config.model.variant, config.data.root,
                schedule.total_steps, schedule.steps_per_epoch, context.world_size,
                schedule.attention_warmup_steps, schedule.switch_step, schedule.decay_start_step)

    finite = FiniteWatch(device)
    saved_step = state.step

    def last_good() -> str:
        if saved_step == 0:
            return "no checkpoint (none was saved yet)"
        return f"{checkpoint_dir(run_dir) / LATEST} (step {saved_step})"

    def save(*names: str) -> None:
        finite.check(last_good())  # never a checkpoint of NaN weights
        save_training_checkpoint(state, config, schedule, run_dir, names, context)

    # --- Train.
    bar = tqdm(total=end_step, initial=state.step, disable=not (progress and main), unit="step",
               dynamic_ncols=True)
    step_started, logged_step = time.perf_counter(), state.step
    data_seconds = 0.0
    modules: StepModules | None = None
    collapse = CollapseWatch(config.monitor.collapse_mask_mean)
    stop = False
    try:
        with stop_on_signals() as interrupt:
            batches = iter(loader)
            while state.step < end_step and not stop:
                waited = time.perf_counter()
                real_a, real_b = next(batches)
                data_seconds += time.perf_counter() - waited
                phase = schedule.phase(state.step)
                if state.best_attention and not phase.train_attention:
                    state.restore_best_attention()  # the switch: freeze the best-placed
                    logger.info("step %d: the switch freezes each attention where it was best "
                                "placed (schedule.switch_attention): %s", state.step, ", ".join(
                                    f"{d} {best['nats']:+.3f} nats at step {best['step']}"
                                    for d, best in state.best_placement.items()))
                if modules is None or modules.phase != modules_phase(phase):
                    modules = step_modules(state, phase, context, device, config)
                for optimizer in (state.optimizer_generators, state.optimizer_discriminators):
                    for group in optimizer.param_groups:
                        group["lr"] = config.train.lr * phase.lr_factor
                real = {domain: batch.to(device, non_blocking=True, memory_format=layout)
                        for domain, batch in (("a", real_a), ("b", real_b))}
                terms = training_step(state, modules, real, phase, config.losses)
                state.step += 1
                finite.update(terms, state.step)
                bar.update(1)

                # --- Maintenance: logs, samples, metrics, checkpoints, a requested stop.
                log_now = state.step % config.monitor.log_every_steps == 0 or state.step == end_step
                if log_now:
                    finite.check(last_good())
                if log_now and tracker is not None:
                    now = time.perf_counter()
                    values = {key: float(value) for key, value in terms.items()}
                    values["time/sec_per_step"] = (now - step_started) / (state.step - logged_step)
                    # Waiting for the loader: near 0 unless data loading starves the step.
                    values["time/data_wait_fraction"] = data_seconds / (now - step_started)
                    values["sched/lr"] = config.train.lr * phase.lr_factor
                    values["sched/tau"] = phase.tau
                    data_seconds, step_started, logged_step = 0.0, now, state.step
                    tracker.scalars(state.step, values)
                    # The method's terms and the masks; the priors' terms are in stats.jsonl.
                    bar.set_postfix({key.split("/")[-1]: f"{value:.3f}"
                                     for key, value in values.items()
                                     if key.startswith(BAR_TERMS)})
                    collapse.check(values, phase, state.step)
                sample_now = (state.step % config.monitor.sample_every_steps == 0
                              or state.step == end_step)
                if sample_now and tracker is not None:
                    write_samples(tracker, state.inference_translator, samples, state.step,
                                  phase)
                    if placement is not None and phase.use_attention:
                        values = placement.measure(state.inference_translator)
                        tracker.scalars(state.step, values, stream="metrics")
                        if (config.schedule.switch_attention == "best-placement"
                                and phase.train_attention):
                            state.offer_attention({d: values[f"placement/nats_{d}"]
                                                   for d in DIRECTIONS})
                        logger.info("step %d: mask placement %s", state.step, ", ".join(
                            f"{d} {values[f'placement/nats_{d}']:+.3f} nats "
                            f"({values[f'placement/hit_rate_{d}']:.0%} above chance)"
                            for d in DIRECTIONS))
                kid_every = config.monitor.kid_every_steps
                if kid_every and state.step % kid_every == 0:
                    improved = False
                    if monitor is not None and tracker is not None:
                        values = monitor.measure(state.inference_translator,
                                                 phase.use_attention)
                        tracker.scalars(state.step, values, stream="metrics")
                        improved = values[SELECTION_KEY] < state.best_kid_x100
                        if improved:
                            state.best_kid_x100 = values[SELECTION_KEY]
                    if distributed.any_rank(context, improved, device):
                        save(BEST)
                if state.step % config.monitor.checkpoint_every_steps == 0:
                    save(step_file(state.step), LATEST)
                    saved_step = state.step
                # Ranks must agree to stop at the same step; one process checks every step,
                # several check at log steps (a collective costs a sync).
                if not context.enabled or log_now:
                    stop = distributed.any_rank(context, interrupt["stop"], device)
            # The final (or interrupted) step is always saved, also mid-interval.
            if saved_step != state.step:
                save(step_file(state.step), LATEST)
    finally:
        bar.close()
        if tracker is not None:
            tracker.close()
        del loader

    # --- Done: galleries and, where the data has ground truth, the final metrics.
    metrics: dict[str, dict[str, Any]] = {}
    if main and state.step == schedule.total_steps:
        metrics = finish_run(run_dir, config, state.inference_translator,
                             schedule.phase(state.step), device)
    return TrainResult(checkpoint=latest, step=state.step, metrics=metrics,
                       translator=state.translator, discriminators=state.discriminators,
                       interrupted=(interrupt["signal"] or "SIGINT") if stop else None)


def train(config: RunConfig, run_dir: Path, *, resume: bool = False,
          stop_at_step: int | None = None, progress: bool = True,
          tensorboard: bool = True) -> TrainResult:
    """Trains (or resumes) a run in ``run_dir`` and returns its final checkpoint.

    Under torchrun every process calls this; they train data-parallel and rank 0 writes.

    Args:
        config: the resolved run config.
        run_dir: where ``config.json``, ``checkpoints/``, ``samples/``, ``stats.jsonl`` and
            ``tensorboard/`` go.
        resume: continue from ``run_dir/checkpoints/latest.pt``; refuses a different architecture.
        stop_at_step: stop (and checkpoint) there without changing the schedule.
        progress: show a progress bar.
        tensorboard: write TensorBoard events.

    Raises:
        AgganError: bad data, a run folder that already holds a run, a checkpoint that does not
            fit, or (distributed) another process of the job that failed or stopped answering.
    """
    context, device = distributed.setup(config.runtime.device, config.runtime.distributed_timeout_s)
    try:
        if context.is_main:
            prepare_output_dir(run_dir, "--out")
        with run_lock(run_dir) if context.is_main else contextlib.nullcontext():
            return _train(config, run_dir, context, device, resume=resume,
                          stop_at_step=stop_at_step, progress=progress, tensorboard=tensorboard)
    except (RuntimeError, torch.distributed.DistBackendError) as error:
        if not context.enabled:
            raise
        first = str(error).strip().splitlines()[0][:300] if str(error) else type(error).__name__
        raise AgganError(f"rank {context.rank}: another process of this job failed or stopped "
                         f"answering ({first}); the last checkpoint in {run_dir} is "
                         "intact") from None
    finally:
        distributed.teardown(context)
