"""Where and how tensors compute: the device from ``--device``, the memory layout and the
precision of training."""

from __future__ import annotations

import logging

import torch

from aggan.config import RuntimeConfig
from aggan.errors import AgganError

logger = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA, then MPS, then CPU; an explicit device must exist here."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise AgganError(f"--device: unknown device {name!r} (use auto, cpu, cuda, cuda:N or "
                         "mps)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise AgganError(f"--device {name}: CUDA is not available on this machine")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise AgganError(f"--device {name}: this machine has {torch.cuda.device_count()} "
                             "CUDA devices")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise AgganError(f"--device {name}: MPS is not available on this machine")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise AgganError(f"--device: unsupported device {name!r} (use auto, cpu, cuda, cuda:N "
                         "or mps)")
    return device


def tensor_layout(config: RuntimeConfig) -> torch.memory_format:
    """The memory format of the networks and the batches: ``runtime.channels_last`` or NCHW."""
    return torch.channels_last if config.channels_last else torch.contiguous_format


def autocast(precision: str, device: torch.device) -> torch.autocast:
    """The autocast context for ``runtime.precision`` (disabled for fp32)."""
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)
    return torch.autocast(device.type, dtype=dtype, enabled=precision != "fp32")


def has_fast_bf16(device: torch.device) -> bool:
    """Whether bfloat16 runs natively: a CUDA GPU with it, or a CPU whose oneDNN has bf16
    instructions (AVX-512 BF16 or AMX). Elsewhere the CPU emulates it."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and torch.backends.mkldnn.is_available() and bool(
        torch.ops.mkldnn._is_mkldnn_bf16_supported())


def check_precision(precision: str, device: torch.device) -> None:
    """fp16 trains only on CUDA; bf16 where the device has it; a warning where a CPU would
    emulate bf16, which is far slower than fp32 (an AVX2-only AMD EPYC: 44 against 1.9 s a
    128 px step)."""
    if precision == "fp16" and device.type != "cuda":
        raise AgganError(f"runtime.precision=fp16 needs a CUDA device, not {device} (bf16 works "
                         "on CPUs and GPUs)")
    if precision != "bf16" or has_fast_bf16(device):
        return
    if device.type == "cuda":
        raise AgganError(f"runtime.precision=bf16: {torch.cuda.get_device_name(device)} has no "
                         "bfloat16; use fp16")
    if device.type == "cpu":
        logger.warning("runtime.precision=bf16: this CPU has no bfloat16 instructions (AVX-512 "
                       "BF16 or AMX), so bf16 is emulated and trains slower than fp32; use "
                       "--precision fp32")
