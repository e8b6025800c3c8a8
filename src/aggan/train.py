"""The training loop, readable top to bottom (method.md, "Forward pass", "Losses", "The switch").

One step does one forward pass of the translator (both directions and both cycles), then a joint
update of the generators and attention networks with the discriminators frozen, then one update of
both discriminators on fakes drawn from the history pools. (The released TensorFlow code runs four
sequential sub-steps with their own forward passes; this is the same objective at half the cost,
as PyTorch CycleGAN does.)
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import platform
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from aggan import __version__, distributed
from aggan.checkpoint import (
    FORMAT_VERSION,
    LATEST,
    checkpoint_dir,
    config_of,
    load_checkpoint,
    load_state,
    save_checkpoint,
    schedule_dict,
)
from aggan.config import RunConfig, TrainConfig, to_dict
from aggan.data import (
    UnpairedTrainingSet,
    ground_truth,
    open_domain,
    open_test_domain,
    training_loader,
)
from aggan.errors import AgganError
from aggan.images import atomic_write, to_float, write_png
from aggan.losses import cycle_loss, discriminator_loss, generator_adversarial_loss, hard_mask
from aggan.metrics.groundtruth import ground_truth_metrics
from aggan.networks import (
    DIRECTIONS,
    Discriminators,
    Translator,
    init_weights,
    reverse,
    source_domain,
    target_domain,
)
from aggan.pool import HistoryPool
from aggan.schedule import Phase, Schedule, resolve_schedule
from aggan.tracking import Tracker, sample_grid

logger = logging.getLogger(__name__)

BEST = "best.pt"  # the checkpoint with the lowest KID during training
SAMPLE_IMAGES = 4  # rows per sample grid during training
GALLERY_IMAGES = 8  # rows per gallery at the end


@dataclass
class TrainState:
    """Everything that changes while training; exactly what a checkpoint holds."""

    translator: Translator
    discriminators: Discriminators
    optimizer_generators: torch.optim.Adam
    optimizer_discriminators: torch.optim.Adam
    pools: dict[str, HistoryPool]  # keyed by direction: fakes of the target domain
    # Loss scaling for fp16, one per optimizer; pass-throughs at other precisions.
    scaler_generators: torch.amp.GradScaler
    scaler_discriminators: torch.amp.GradScaler
    step: int = 0


@dataclass(frozen=True)
class TrainResult:
    checkpoint: Path
    step: int
    metrics: dict[str, dict[str, Any]]  # per direction, where the data has ground truth
    translator: Translator  # the trained networks, on this process's device
    discriminators: Discriminators
    interrupted: bool = False  # stopped by Ctrl-C (the checkpoint is saved)


class CycleForward(nn.Module):
    """The translator's whole forward pass of a step, as one module call (what DDP wraps).

    s' = A_S(s) * F(s) + (1 - A_S(s)) * s in both directions, then back for the cycle
    (method.md, "Forward pass").
    """

    def __init__(self, translator: Translator) -> None:
        super().__init__()
        self.translator = translator

    def forward(self, real_a: Tensor, real_b: Tensor, use_attention: bool
                ) -> tuple[dict[str, Tensor], dict[str, Tensor], dict[str, Tensor]]:
        real = {"a": real_a, "b": real_b}
        fake, mask = {}, {}
        for direction in DIRECTIONS:
            fake[direction], mask[direction] = self.translator(
                real[source_domain(direction)], direction, use_attention)
        cycled = {direction: self.translator(fake[direction], reverse(direction),
                                             use_attention)[0]
                  for direction in DIRECTIONS}
        return fake, mask, cycled


class DiscriminatorScores(nn.Module):
    """Both discriminators on their (real and pooled fake) inputs, as one module call."""

    def __init__(self, discriminators: Discriminators) -> None:
        super().__init__()
        self.discriminators = discriminators

    def forward(self, inputs: dict[str, Tensor], normalize: bool) -> dict[str, Tensor]:
        return {domain: self.discriminators(images, domain, normalize)
                for domain, images in inputs.items()}


@dataclass
class StepModules:
    """What a step calls: plain modules in one process, DDP-wrapped ones under torchrun, compiled
    ones with ``train.compile``. Rebuilt when the set of trained parameters changes (warm-up end,
    switch), so that DDP never sees a parameter it expects a gradient for and does not get one."""

    cycle: nn.Module  # CycleForward
    scores: nn.Module  # DiscriminatorScores, for the discriminators' update
    judge: nn.Module  # the discriminators as the generators' update calls them (frozen)
    discriminator_params: list[nn.Parameter]
    trained: tuple[bool, bool]  # (attention, discriminator norms)
    autocast: torch.autocast


def tensor_layout(config: TrainConfig) -> torch.memory_format:
    """The memory format of the networks and the batches: ``train.channels_last`` or NCHW."""
    return torch.channels_last if config.channels_last else torch.contiguous_format


def autocast(precision: str, device: torch.device) -> torch.autocast:
    """The autocast context for ``train.precision`` (disabled for fp32)."""
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)
    return torch.autocast(device.type, dtype=dtype, enabled=precision != "fp32")


def step_modules(state: TrainState, phase: Phase, context: distributed.Context,
                 device: torch.device, config: TrainConfig) -> StepModules:
    if state.translator.attention is not None:
        state.translator.attention.requires_grad_(phase.train_attention)
    for discriminator in state.discriminators.by_domain.values():
        # Without instance norm (after the switch) its affine parameters get no gradient.
        discriminator.norms.requires_grad_(phase.normalize_discriminator)
    cycle: nn.Module = CycleForward(state.translator)
    scores: nn.Module = DiscriminatorScores(state.discriminators)
    judge: nn.Module = state.discriminators
    if context.enabled:
        device_ids = [device.index] if device.type == "cuda" else None
        cycle = DistributedDataParallel(cycle, device_ids=device_ids)
        scores = DistributedDataParallel(scores, device_ids=device_ids)
    if config.compile:
        cycle, scores, judge = (torch.compile(module) for module in (cycle, scores, judge))
    return StepModules(cycle, scores, judge,
                       [p for p in state.discriminators.parameters() if p.requires_grad],
                       (phase.train_attention, phase.normalize_discriminator),
                       autocast(config.precision, device))


def training_step(state: TrainState, modules: StepModules, real: dict[str, Tensor], phase: Phase,
                  cycle_weight: float) -> dict[str, Tensor]:
    """One optimisation step on a batch ``real = {"a": (N,3,H,W), "b": (N,3,H,W)}`` in [-1, 1].

    Returns the step's loss terms and mean masks as detached tensors (reading them syncs the
    device, so the caller reads them only when it logs).
    """
    with modules.autocast:
        fake, mask, cycled = modules.cycle(real["a"], real["b"], phase.use_attention)

    # Generators and attention: fool the discriminators on the attended region, close the cycle.
    # The discriminators are frozen here and called unwrapped: no gradient, nothing to sync.
    for parameter in modules.discriminator_params:
        parameter.requires_grad_(False)
    terms: dict[str, Tensor] = {}
    with modules.autocast:
        for direction in DIRECTIONS:
            target = target_domain(direction)
            scores = modules.judge(fake[direction] * hard_mask(mask[direction], phase.tau),
                                   target, phase.normalize_discriminator)
            terms[f"loss/adversarial_{direction}"] = generator_adversarial_loss(scores)
            terms[f"loss/cycle_{source_domain(direction)}"] = cycle_loss(
                cycled[direction], real[source_domain(direction)])
    generator_total = (sum(terms[f"loss/adversarial_{d}"] for d in DIRECTIONS)
                       + cycle_weight * (terms["loss/cycle_a"] + terms["loss/cycle_b"]))
    state.optimizer_generators.zero_grad(set_to_none=True)
    state.scaler_generators.scale(generator_total).backward()
    state.scaler_generators.step(state.optimizer_generators)
    state.scaler_generators.update()

    # Discriminators: real target images under their own attention, fakes from the pool under
    # the masks they were made with; real and fake go through in one batch (instance norm is
    # per image, so this changes nothing but the speed).
    for parameter in modules.discriminator_params:
        parameter.requires_grad_(True)
    inputs = {}
    for direction in DIRECTIONS:
        target = target_domain(direction)
        pooled_fake, pooled_mask = state.pools[direction].query(fake[direction], mask[direction])
        real_mask = mask[reverse(direction)]  # A_T(t): the target domain's own attention
        inputs[target] = torch.cat([real[target] * hard_mask(real_mask, phase.tau),
                                    pooled_fake * hard_mask(pooled_mask, phase.tau)])
    with modules.autocast:
        scores = modules.scores(inputs, phase.normalize_discriminator)
        for domain, domain_scores in scores.items():
            scores_real, scores_fake = domain_scores.chunk(2)
            terms[f"loss/discriminator_{domain}"] = discriminator_loss(scores_real, scores_fake)
    state.optimizer_discriminators.zero_grad(set_to_none=True)
    state.scaler_discriminators.scale(
        terms["loss/discriminator_a"] + terms["loss/discriminator_b"]).backward()
    state.scaler_discriminators.step(state.optimizer_discriminators)
    state.scaler_discriminators.update()

    for direction in DIRECTIONS:
        terms[f"mask/mean_{source_domain(direction)}"] = mask[direction].mean()
    return {key: value.detach() for key, value in terms.items()}


def build_state(config: RunConfig, device: torch.device, rank: int = 0) -> TrainState:
    """Fresh networks (seeded init, the same on every rank), optimizers and this rank's pools."""
    init_generator = torch.Generator().manual_seed(config.train.seed)
    translator = Translator(config.model)
    discriminators = Discriminators(config.model)
    init_weights(translator, init_generator)
    init_weights(discriminators, init_generator)
    layout = tensor_layout(config.train)
    translator.to(device, memory_format=layout)
    discriminators.to(device, memory_format=layout)
    check_precision(config.train.precision, device)

    def adam(module: nn.Module) -> torch.optim.Adam:
        # One fused kernel for all parameters instead of one small loop per tensor.
        return torch.optim.Adam(module.parameters(), lr=config.train.lr,
                                betas=(config.train.adam_beta1, config.train.adam_beta2),
                                fused=True)

    def scaler() -> torch.amp.GradScaler:
        return torch.amp.GradScaler(device.type, enabled=config.train.precision == "fp16")

    return TrainState(
        translator=translator,
        discriminators=discriminators,
        optimizer_generators=adam(translator),
        optimizer_discriminators=adam(discriminators),
        pools={direction: HistoryPool(config.train.pool_size,
                                      seed=(config.train.seed * 2 + i + 1) * 1000 + rank)
               for i, direction in enumerate(DIRECTIONS)},
        scaler_generators=scaler(),
        scaler_discriminators=scaler(),
    )


def check_precision(precision: str, device: torch.device) -> None:
    """fp16 trains only on CUDA; bf16 where the device has it."""
    if precision == "fp16" and device.type != "cuda":
        raise AgganError(f"train.precision=fp16 needs a CUDA device, not {device} (bf16 works "
                         "on CPUs and GPUs)")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise AgganError(f"train.precision=bf16: {torch.cuda.get_device_name(device)} has no "
                         "bfloat16; use fp16")


def state_dict(state: TrainState, config: RunConfig, schedule: Schedule,
               pools: list[dict[str, Any]], best_kid_x100: float = math.inf) -> dict[str, Any]:
    """The checkpoint dict; ``pools`` holds every rank's pools, in rank order."""
    return {
        "best_kid_x100": best_kid_x100,
        "format_version": FORMAT_VERSION,
        "aggan_version": __version__,
        "config": to_dict(config),
        "schedule": schedule_dict(schedule),
        "step": state.step,
        "translator": state.translator.state_dict(),
        "discriminators": state.discriminators.state_dict(),
        "optimizer_generators": state.optimizer_generators.state_dict(),
        "optimizer_discriminators": state.optimizer_discriminators.state_dict(),
        "pools": {str(rank): rank_pools for rank, rank_pools in enumerate(pools)},
        "scaler_generators": state.scaler_generators.state_dict(),
        "scaler_discriminators": state.scaler_discriminators.state_dict(),
    }


def pool_states(state: TrainState) -> dict[str, Any]:
    return {direction: pool.state_dict() for direction, pool in state.pools.items()}


def restore_state(state: TrainState, saved: dict[str, Any], path: Path,
                  device: torch.device, rank: int = 0) -> None:
    """Restores a checkpoint; this rank's pools where the checkpoint has them (a run resumed with
    more processes than it was saved from starts the extra ranks' pools empty)."""
    load_state(state.translator, saved["translator"], path, "networks")
    load_state(state.discriminators, saved["discriminators"], path, "discriminators")
    try:
        state.optimizer_generators.load_state_dict(saved["optimizer_generators"])
        state.optimizer_discriminators.load_state_dict(saved["optimizer_discriminators"])
        for direction, pool in state.pools.items():
            if str(rank) in saved["pools"]:
                pool.load_state_dict(saved["pools"][str(rank)][direction], device)
        # Empty unless the run trained in fp16; a precision change starts a fresh scale.
        for name in ("scaler_generators", "scaler_discriminators"):
            if saved.get(name) and getattr(state, name).is_enabled():
                getattr(state, name).load_state_dict(saved[name])
    except (KeyError, ValueError, RuntimeError) as error:
        raise AgganError(f"checkpoint {path}: its training state is incomplete ({error})") from None
    state.step = int(saved["step"])


def check_resumable(saved_config: RunConfig, config: RunConfig, path: Path) -> None:
    """Architecture and image size are fixed for the life of a run."""
    for section, field_names in (("model", None), ("data", ("size_px",))):
        saved_section, section_now = getattr(saved_config, section), getattr(config, section)
        for field in dataclasses.fields(saved_section):
            if field_names is not None and field.name not in field_names:
                continue
            was, now = getattr(saved_section, field.name), getattr(section_now, field.name)
            if was != now:
                raise AgganError(f"--resume: {path} was trained with {section}.{field.name}="
                                 f"{was!r}, not {now!r}")


def write_run_config(run_dir: Path, config: RunConfig, schedule: Schedule,
                     device: torch.device, world_size: int) -> None:
    record = {
        "config": to_dict(config),
        "schedule": schedule_dict(schedule),
        "device": str(device),
        "world_size": world_size,
        "global_batch_size": config.train.batch_size * world_size,
        "versions": {"aggan": __version__, "torch": torch.__version__,
                     "python": platform.python_version()},
        "argv": sys.argv,
    }
    atomic_write(run_dir / "config.json",
                 lambda temp: temp.write_text(json.dumps(record, indent=2) + "\n"))


@contextmanager
def stop_on_interrupt() -> Iterator[dict[str, bool]]:
    """The first Ctrl-C asks the loop to stop after the current step (it then checkpoints);
    a second one interrupts at once."""
    flag = {"stop": False}

    def handler(signum: int, frame: Any) -> None:
        flag["stop"] = True
        signal.signal(signal.SIGINT, previous)
        logger.warning("interrupted: saving a checkpoint after this step (Ctrl-C again to abort)")

    try:
        previous = signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread: no handler, plain KeyboardInterrupt
        yield flag
        return
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


def fixed_samples(config: RunConfig, domain: str, count: int) -> Tensor:
    """The first ``count`` test images of ``domain`` (train images where there is no test
    folder), resized to the training size: the same rows in every sample grid."""
    images = open_test_domain(config.data, domain) or open_domain(config.data, "train", domain)
    size = config.data.size_px
    rows = []
    for index in range(min(count, len(images))):
        image = images.load(index)
        rows.append(torch.nn.functional.interpolate(
            to_float(image)[None], size=(size, size), mode="bilinear", antialias=True,
            align_corners=False)[0])
    return torch.stack(rows)


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
    context, device = distributed.setup(config.train.device, config.train.distributed_timeout_s)
    try:
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


def _train(config: RunConfig, run_dir: Path, context: distributed.Context, device: torch.device,
           *, resume: bool, stop_at_step: int | None, progress: bool,
           tensorboard: bool) -> TrainResult:
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

    images = {domain: open_domain(config.data, "train", domain) for domain in ("a", "b")}
    schedule = resolve_schedule(config.train, config.model.variant,
                                max(len(images["a"]), len(images["b"])), context.world_size)
    state = build_state(config, device, context.rank)
    if saved is not None:
        restore_state(state, saved, latest, device, context.rank)
        logger.info("resumed %s at step %d", latest, state.step)
    main = context.is_main
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_run_config(run_dir, config, schedule, device, context.world_size)
        samples = {domain: fixed_samples(config, domain, SAMPLE_IMAGES).to(device)
                   for domain in ("a", "b")}

    dataset = UnpairedTrainingSet(images["a"], images["b"], config.data, config.train.seed)
    loader = training_loader(dataset, batch_size=config.train.batch_size, start_step=state.step,
                             workers=config.data.workers, pin_memory=device.type == "cuda",
                             rank=context.rank, world_size=context.world_size)
    end_step = min(schedule.total_steps, stop_at_step or schedule.total_steps)
    kid = kid_monitor(config, device) if main else None
    best_kid = saved.get("best_kid_x100", math.inf) if saved is not None else math.inf
    tracker = Tracker(run_dir, tensorboard=tensorboard) if main else None
    logger.info("training %s on %s: %d steps (%d per epoch, %d processes), warm-up until %d, "
                "switch at %s, lr decay from %d", config.model.variant, config.data.root,
                schedule.total_steps, schedule.steps_per_epoch, context.world_size,
                schedule.attention_warmup_steps, schedule.switch_step, schedule.decay_start_step)
    bar = tqdm(total=end_step, initial=state.step, disable=not (progress and main), unit="step",
               dynamic_ncols=True)
    step_started, logged_step, saved_step = time.perf_counter(), state.step, state.step
    data_seconds = 0.0
    modules: StepModules | None = None
    layout = tensor_layout(config.train)
    stop = False
    collapsed: set[str] = set()

    def save(path_step: int) -> None:
        # A collective: every rank hands over its pools; rank 0 writes.
        pools = distributed.gather(context, pool_states(state))
        if main:
            save_training_checkpoint(state_dict(state, config, schedule, pools, best_kid),
                                     run_dir, path_step)

    try:
        with stop_on_interrupt() as interrupt:
            batches = iter(loader)
            while state.step < end_step and not stop:
                waited = time.perf_counter()
                real_a, real_b = next(batches)
                data_seconds += time.perf_counter() - waited
                phase = schedule.phase(state.step)
                if modules is None or modules.trained != (phase.train_attention,
                                                          phase.normalize_discriminator):
                    modules = step_modules(state, phase, context, device, config.train)
                for optimizer in (state.optimizer_generators, state.optimizer_discriminators):
                    for group in optimizer.param_groups:
                        group["lr"] = config.train.lr * phase.lr_factor
                real = {domain: images.to(device, non_blocking=True,
                                          memory_format=layout)
                        for domain, images in (("a", real_a), ("b", real_b))}
                terms = training_step(state, modules, real, phase, config.train.cycle_weight)
                state.step += 1
                bar.update(1)

                log_now = state.step % config.train.log_every_steps == 0 or state.step == end_step
                if log_now and tracker is not None:
                    now = time.perf_counter()
                    values = {key: float(value) for key, value in terms.items()}
                    values["time/sec_per_step"] = (now - step_started) / (state.step - logged_step)
                    # Waiting for the loader: near 0 unless data loading starves the step.
                    values["time/data_wait_fraction"] = data_seconds / (now - step_started)
                    data_seconds = 0.0
                    values["sched/lr"] = config.train.lr * phase.lr_factor
                    values["sched/tau"] = phase.tau
                    step_started, logged_step = now, state.step
                    tracker.scalars(state.step, values)
                    bar.set_postfix({key.split("/")[-1]: f"{value:.3f}"
                                     for key, value in values.items() if key.startswith("loss/")})
                    warn_if_collapsed(values, phase, config.train.collapse_mask_mean, state.step,
                                      collapsed)
                sample_now = (state.step % config.train.sample_every_steps == 0
                              or state.step == end_step)
                if sample_now and tracker is not None:
                    write_samples(tracker, state.translator, samples, state.step, phase)
                if kid is not None and state.step % config.train.kid_every_steps == 0:
                    values = kid.measure(state.translator, phase.use_attention)
                    tracker.scalars(state.step, values, stream="metrics")
                    if values["metrics/kid_x100_mean"] < best_kid:
                        best_kid = values["metrics/kid_x100_mean"]
                        save_checkpoint(state_dict(state, config, schedule,
                                                   [pool_states(state)], best_kid),
                                        checkpoint_dir(run_dir) / BEST)
                if state.step % config.train.checkpoint_every_steps == 0:
                    save(state.step)
                    saved_step = state.step
                # Ranks must agree to stop at the same step; one process checks every step,
                # several check at log steps (a collective costs a sync).
                if not context.enabled or log_now:
                    stop = distributed.any_rank(context, interrupt["stop"], device)
            # The final (or interrupted) step is always saved, also mid-interval.
            if saved_step != state.step:
                save(state.step)
    finally:
        bar.close()
        if tracker is not None:
            tracker.close()
        del loader

    metrics: dict[str, dict[str, Any]] = {}
    if main and state.step == schedule.total_steps:
        final_phase = schedule.phase(state.step)
        for direction in DIRECTIONS:
            gallery = fixed_samples(config, source_domain(direction), GALLERY_IMAGES).to(device)
            write_png(sample_grid(state.translator, gallery, direction, final_phase.use_attention),
                      run_dir / f"gallery_{direction}.png")
        metrics = final_metrics(config, state.translator, final_phase, device)
        if metrics:
            atomic_write(run_dir / "metrics.json",
                         lambda temp: temp.write_text(json.dumps(metrics, indent=2) + "\n"))
    return TrainResult(checkpoint=latest, step=state.step, metrics=metrics,
                       translator=state.translator, discriminators=state.discriminators,
                       interrupted=stop)


def save_training_checkpoint(checkpoint: dict[str, Any], run_dir: Path, step: int) -> None:
    """``checkpoints/step-NNNNNNN.pt``, then ``latest.pt``: both complete, written atomically."""
    save_checkpoint(checkpoint, checkpoint_dir(run_dir) / f"step-{step:07d}.pt")
    save_checkpoint(checkpoint, checkpoint_dir(run_dir) / LATEST)


def kid_monitor(config: RunConfig, device: torch.device) -> Any:
    """The KID measurement during training, where it is asked for (it needs the Inception)."""
    if not config.train.kid_every_steps:
        return None
    from aggan.evaluate import KidDuringTraining
    from aggan.metrics.inception import InceptionFeatures

    inception = InceptionFeatures(Path(config.train.inception) if config.train.inception
                                  else None, device)
    return KidDuringTraining(config.data, config.train.kid_images, inception)


def warn_if_collapsed(values: dict[str, float], phase: Phase, threshold: float, step: int,
                      collapsed: set[str]) -> None:
    """Warns when an attention mask collapses and says when it recovers (``collapsed`` holds
    the domains now collapsed), so a long collapse is one warning, not one per log step."""
    if not phase.use_attention:
        return
    for domain in ("a", "b"):
        mean = values[f"mask/mean_{domain}"]
        if mean < threshold and domain not in collapsed:
            collapsed.add(domain)
            logger.warning("step %d: attention %s has collapsed (mean mask %.4f < %.4f): the "
                           "translation equals the input. See README, 'Attention collapse'.",
                           step, domain, mean, threshold)
        elif mean >= threshold and domain in collapsed:
            collapsed.discard(domain)
            logger.info("step %d: attention %s recovered (mean mask %.4f)", step, domain, mean)


def write_samples(tracker: Tracker, translator: Translator, samples: dict[str, Tensor], step: int,
                  phase: Phase) -> None:
    for direction in DIRECTIONS:
        grid = sample_grid(translator, samples[source_domain(direction)], direction,
                           phase.use_attention)
        tracker.image(step, direction, grid)


def final_metrics(config: RunConfig, translator: Translator, phase: Phase,
                  device: torch.device) -> dict[str, dict[str, Any]]:
    """Ground-truth metrics per direction on the test set, where the data has ground truth."""
    metrics = {}
    for direction in DIRECTIONS:
        items = ground_truth(config.data, source_domain(direction))
        if items is None:
            return {}
        metrics[direction] = ground_truth_metrics(translator, items, direction, device=device,
                                                  use_attention=phase.use_attention)
    return metrics
