"""Speed: training and translation against what this machine can do at all.

Measures, on one device:

- the ceiling: the faster of a large matrix product and a large 3x3 convolution, in GFLOP/s, in
  float32 and (where the device has fast bfloat16) in bfloat16;
- training at 128 and 256 px, batch 1 and a larger batch, per option set (``--options``): steps/s,
  images/s, the FLOPs of one step counted by ``torch.utils.flop_counter``, the GFLOP/s achieved
  and their share of the ceiling of the same precision, peak memory (resident set on CPU, with
  the process's resident set before any work beside it; max allocated on GPU);
- which network runs how often in one step (forward passes), and on CUDA the host-device
  synchronisations in one step;
- the optimizer step (for-loop, foreach and fused Adam) and the data loader against the step;
- translation at 256 px and at a 1024 x 768 photo, batch 1 and batched, in images/s.

Every timing is the median of ``--repeats`` after warm-up; each training and translation case
runs in a fresh process, so peak memory is its own. Prints tables and a final JSON line and
writes the JSON to ``--out``.

    python benchmarks/speed.py                                 # CPU or GPU, default options
    python benchmarks/speed.py --options plain default bf16 \\
        --out benchmarks/results/speed/speed_cpu.json
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from aggan import distributed
from aggan.config import RunConfig, build_config
from aggan.data import UnpairedTrainingSet, open_domain, training_loader
from aggan.device import has_fast_bf16, resolve_device, tensor_layout
from aggan.images import write_json
from aggan.schedule import Phase
from aggan.step import StepModules, step_modules, training_step
from aggan.train_state import TrainState, build_state
from aggan.translate import translate_tensor

# Option sets: config overrides of the default run. "plain": contiguous (NCHW) tensors, the
# layout before the speed work; the layout-independent changes (fused Adam, the narrow output
# convs) apply to it too. (Adam's variants are timed on their own: adam_step_ms.)
OPTIONS: dict[str, dict[str, Any]] = {
    "plain": {"channels_last": False, "precision": "fp32"},
    "default": {},
    "bf16": {"precision": "bf16"},
    "fp16": {"precision": "fp16"},
    "compile": {"compile": True},
    "bf16-compile": {"precision": "bf16", "compile": True},
}
# The most expensive phase: attention in use and trained, discriminators normalised (warm-up
# over, switch not reached).
PHASE = Phase(lr_factor=1.0, tau=0.0, use_attention=True, train_attention=True,
              normalize_discriminator=True)
TRANSLATION_SIZES = ((256, 256), (768, 1024))  # (height, width)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(run: Callable[[], Any], device: torch.device, warmup: int,
                   repeats: int) -> float:
    for _ in range(warmup):
        run()
    synchronize(device)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        synchronize(device)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def measure_ceiling(device: torch.device, repeats: int) -> dict[str, Any]:
    """GFLOP/s of a large matmul and a large 3x3 conv (both memory formats), per dtype."""
    dtypes = [torch.float32] + ([torch.bfloat16] if has_fast_bf16(device) else [])
    big = device.type == "cuda"
    n = 8192 if big else 2048
    batch, channels, pixels = (32, 256, 64) if big else (4, 128, 64)
    result: dict[str, Any] = {}
    for dtype in dtypes:
        name = "fp32" if dtype == torch.float32 else "bf16"
        a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
        measured = {"matmul": 2 * n**3 / median_seconds(lambda a=a, b=b: a @ b, device, 2,
                                                        repeats) / 1e9}
        for layout in (torch.contiguous_format, torch.channels_last):
            x = torch.randn(batch, channels, pixels, pixels, device=device,
                            dtype=dtype).contiguous(memory_format=layout)
            w = torch.randn(channels, channels, 3, 3, device=device,
                            dtype=dtype).contiguous(memory_format=layout)
            flops = 2 * batch * channels * channels * 9 * pixels * pixels
            with torch.no_grad():
                seconds = median_seconds(
                    lambda x=x, w=w: torch.nn.functional.conv2d(x, w, padding=1), device, 2,
                    repeats)
            key = "conv3x3_channels_last" if layout == torch.channels_last else "conv3x3"
            measured[key] = flops / seconds / 1e9
        result[name] = {"gflops": max(measured.values()),
                        "by_kernel": {k: round(v, 1) for k, v in measured.items()}}
    return result


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_config(option: str, size: int, batch: int, device: torch.device) -> RunConfig:
    return build_config({"data": {"size_px": size, "workers": 0}, "train": {"batch_size": batch},
                         "runtime": {"device": str(device), **OPTIONS[option]}})


def peak_memory_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def prepared_step(config: RunConfig, device: torch.device
                  ) -> tuple[TrainState, StepModules, Callable[[], Any]]:
    """Fresh state and step modules, and a closure that runs one training step in ``PHASE`` on
    fixed random batches of the config's size, laid out as training lays them out."""
    state = build_state(config, device)
    modules = step_modules(state, PHASE, distributed.Context(), device, config)
    size, batch = config.data.size_px, config.train.batch_size
    generator = torch.Generator().manual_seed(0)
    real = {domain: (torch.rand(batch, 3, size, size, generator=generator) * 2 - 1).to(
        device, memory_format=tensor_layout(config.runtime)) for domain in ("a", "b")}
    return state, modules, lambda: training_step(state, modules, real, PHASE,
                                                     config.losses)


def train_worker(option: str, size: int, batch: int, device: torch.device, warmup: int,
                 repeats: int) -> dict[str, Any]:
    config = run_config(option, size, batch, device)
    _, _, step = prepared_step(config, device)
    step()  # the first step compiles where asked; not counted
    with FlopCounterMode(display=False) as counter:
        step()
    flops = counter.get_total_flops()
    seconds = median_seconds(step, device, warmup, repeats)
    return {"option": option, "precision": config.runtime.precision, "size_px": size,
            "batch": batch, "sec_per_step": seconds, "steps_per_s": 1 / seconds,
            "images_per_s": 2 * batch / seconds,  # a step translates one batch of each domain
            "gflop_per_step": flops / 1e9, "achieved_gflops": flops / seconds / 1e9,
            "peak_memory_mib": peak_memory_mib(device)}


def translate_worker(option: str, height: int, width: int, batch: int, device: torch.device,
                     warmup: int, repeats: int) -> dict[str, Any]:
    config = run_config(option, 256, 1, device)
    translator = build_state(config, device).translator.eval()
    images = torch.randint(0, 256, (batch, 3, height, width), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))
    seconds = median_seconds(lambda: translate_tensor(translator, images, "a2b", True), device,
                             warmup, repeats)
    return {"option": option, "height": height, "width": width, "batch": batch,
            "images_per_s": batch / seconds, "sec_per_batch": seconds,
            "peak_memory_mib": peak_memory_mib(device)}


def forward_passes(device: torch.device) -> dict[str, int]:
    """How many times each network runs in one training step (tiny widths; counts only)."""
    config = build_config({"model": {"generator_width": 8, "generator_blocks": 1,
                                      "attention_width": 8, "discriminator_width": 8},
                           "data": {"size_px": 32}, "runtime": {"device": str(device)}})
    state, modules, step = prepared_step(config, device)
    calls: Counter[str] = Counter()
    networks = {**{f"generator_{d}": m for d, m in state.translator.generators.items()},
                **{f"attention_{d}": m for d, m in state.translator.attention.items()},
                **{f"discriminator_{d}": m
                   for d, m in state.discriminators.by_domain.items()}}
    for name, network in networks.items():
        network.register_forward_hook(lambda *_, name=name: calls.update([name]))
    modules.cycle.register_forward_hook(lambda *_: calls.update(["translator_step_forward"]))
    step()
    return dict(sorted(calls.items()))


def host_syncs_per_step(device: torch.device) -> int | None:
    """Host-device synchronisations in one training step on CUDA (None elsewhere), counted by
    CUDA's sync debug mode in the step after a warm-up step."""
    if device.type != "cuda":
        return None
    _, _, step = prepared_step(run_config("default", 64, 1, device), device)
    step()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            step()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


def adam_step_ms(device: torch.device, repeats: int) -> dict[str, float]:
    """One optimizer step over the translator's and discriminators' parameters."""
    state = build_state(build_config({"runtime": {"device": str(device)}}), device)
    params = [*state.translator.parameters(), *state.discriminators.parameters()]
    for p in params:
        p.grad = torch.randn_like(p)
    result = {}
    for name, kwargs in (("for-loop", {"foreach": False}), ("foreach", {"foreach": True}),
                         ("fused", {"fused": True})):
        optimizer = torch.optim.Adam(params, lr=1e-4, betas=(0.5, 0.999), **kwargs)
        result[name] = median_seconds(optimizer.step, device, 2, repeats) * 1e3
    return result


def loader_batches_per_s(size: int, batch: int, workers: int, count: int) -> float:
    """Batches/s the training loader delivers from the built-in synthetic data."""
    config = build_config({"data": {"size_px": size, "workers": workers}})
    images = {d: open_domain(config.data, "train", d) for d in ("a", "b")}
    loader = training_loader(UnpairedTrainingSet(images["a"], images["b"], config.data, 0),
                             batch_size=batch, start_step=0, workers=workers, pin_memory=False)
    batches = iter(loader)
    next(batches)  # worker start-up is not the steady rate
    started = time.perf_counter()
    for _ in range(count):
        next(batches)
    return count / (time.perf_counter() - started)


def in_fresh_process(args: argparse.Namespace, *worker_args: str) -> dict[str, Any]:
    command = [sys.executable, __file__, "--device", args.device, "--warmup", str(args.warmup),
               "--repeats", str(args.repeats), "--worker", *worker_args]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def format_tables(result: dict[str, Any]) -> str:
    ceiling = result["ceiling"]
    lines = ["ceiling GFLOP/s: " + "; ".join(
        f"{name} {c['gflops']:.0f} ({', '.join(f'{k} {v:.0f}' for k, v in c['by_kernel'].items())})"
        for name, c in ceiling.items())]
    header = (f"{'option':<14}{'px':>5}{'batch':>6}{'steps/s':>9}{'img/s':>8}{'GFLOP/step':>12}"
              f"{'GFLOP/s':>9}{'% ceil':>8}{'peak MiB':>10}{'base MiB':>10}")
    lines += ["", header, "-" * len(header)]
    for row in result["training"]:
        lines.append(f"{row['option']:<14}{row['size_px']:>5}{row['batch']:>6}"
                     f"{row['steps_per_s']:>9.3f}{row['images_per_s']:>8.2f}"
                     f"{row['gflop_per_step']:>12.1f}{row['achieved_gflops']:>9.1f}"
                     f"{100 * row['fraction_of_ceiling']:>7.1f}%{row['peak_memory_mib']:>10.0f}"
                     f"{row['base_memory_mib']:>10.0f}")
    header = f"{'option':<14}{'size':>10}{'batch':>6}{'img/s':>9}{'peak MiB':>10}{'base MiB':>10}"
    if result["translation"]:
        lines += ["", header, "-" * len(header)]
    for row in result["translation"]:
        lines.append(f"{row['option']:<14}{row['width']:>5}x{row['height']:<4}{row['batch']:>6}"
                     f"{row['images_per_s']:>9.2f}{row['peak_memory_mib']:>10.0f}"
                     f"{row['base_memory_mib']:>10.0f}")
    lines += ["", "forward passes per training step: " + ", ".join(
        f"{k} {v}" for k, v in result["forward_passes"].items())]
    if result["host_syncs_per_step"] is not None:
        lines.append(f"host-device syncs per training step: {result['host_syncs_per_step']}")
    lines.append("Adam step ms: " + ", ".join(
        f"{k} {v:.1f}" for k, v in result["adam_step_ms"].items()))
    if result.get("loader"):
        lines.append("loader batches/s: " + ", ".join(
            f"{k} {v:.1f}" for k, v in result["loader"].items()))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--options", nargs="+", default=["default"], choices=sorted(OPTIONS))
    parser.add_argument("--sizes", nargs="+", type=int, default=[128, 256])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 4])
    parser.add_argument("--translate-batches", nargs="+", type=int, default=[1, 4])
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    device = resolve_device(args.device)

    if args.worker:  # one case, in its own process: print its JSON
        kind, option, *numbers = args.worker
        values = [int(n) for n in numbers]
        worker = train_worker if kind == "train" else translate_worker
        base = peak_memory_mib(device)  # torch and its libraries, before any work
        row = worker(option, *values, device, args.warmup, args.repeats)
        print(json.dumps({**row, "base_memory_mib": base}))
        return

    result: dict[str, Any] = {
        "device": (torch.cuda.get_device_name(device) if device.type == "cuda"
                   else f"{cpu_name()}, {torch.get_num_threads()} threads"),
        "torch": torch.__version__,
        "ceiling": measure_ceiling(device, args.repeats),
        "forward_passes": forward_passes(device),
        "host_syncs_per_step": host_syncs_per_step(device),
        "adam_step_ms": adam_step_ms(device, args.repeats),
        "training": [], "translation": []}
    for option in args.options:
        for size in args.sizes:
            for batch in args.batches:
                row = in_fresh_process(args, "train", option, str(size), str(batch))
                # fp16 runs at the bf16 rate on the GPUs that have both.
                precision = "fp32" if row["precision"] == "fp32" else "bf16"
                ceiling = result["ceiling"].get(precision, result["ceiling"]["fp32"])["gflops"]
                row["fraction_of_ceiling"] = row["achieved_gflops"] / ceiling
                result["training"].append(row)
                print(f"train {option} {size}px batch {batch}: {row['sec_per_step']:.3f} s/step",
                      file=sys.stderr)
        if OPTIONS[option].get("precision", "fp32") != "fp32" or OPTIONS[option].get("compile"):
            continue  # translation runs in float32, uncompiled
        for height, width in TRANSLATION_SIZES:
            for batch in args.translate_batches:
                result["translation"].append(in_fresh_process(
                    args, "translate", option, str(height), str(width), str(batch)))
    step_seconds = max(row["sec_per_step"] for row in result["training"]
                       if row["size_px"] == max(args.sizes) and row["batch"] == 1)
    result["loader"] = {
        f"{max(args.sizes)}px batch 1, {workers} workers": loader_batches_per_s(
            max(args.sizes), 1, workers, 20) for workers in (0, 2)}
    result["loader"]["steps/s needed (slowest option)"] = 1 / step_seconds
    print(format_tables(result))
    if args.out:
        write_json(args.out, result)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
