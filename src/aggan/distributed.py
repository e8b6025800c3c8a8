"""Data-parallel training with torchrun: process group setup and the few collectives we need.

Without torchrun (no ``RANK`` in the environment) everything here is a no-op for one process.
Under ``torchrun --nproc_per_node N -m aggan train ...`` each process trains on its own shard of
both domains with DistributedDataParallel averaging gradients; rank 0 alone writes files.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from aggan.device import resolve_device
from aggan.errors import AgganError


@dataclass(frozen=True)
class Context:
    """Where this process stands in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def launch_rank() -> int:
    """This process's rank as torchrun set it (0 without torchrun), before any process group
    exists: what decides who writes the run's log."""
    return int(os.environ["RANK"]) if launched_by_torchrun() else 0


def setup(device_name: str, timeout_s: float) -> tuple[Context, torch.device]:
    """Joins the process group torchrun describes (NCCL on CUDA, gloo on CPU) and picks this
    process's device; a single process otherwise.

    Args:
        device_name: the ``--device`` flag; under torchrun, CUDA means ``cuda:LOCAL_RANK``.
        timeout_s: how long a collective waits for a lost process before failing (the job then
            ends instead of hanging).
    """
    if not launched_by_torchrun() or int(os.environ["WORLD_SIZE"]) == 1:
        return Context(), resolve_device(device_name)
    context = Context(rank=launch_rank(), world_size=int(os.environ["WORLD_SIZE"]),
                      local_rank=int(os.environ.get("LOCAL_RANK", 0)))
    device = resolve_device(device_name)
    if device.type == "cuda":
        device = torch.device("cuda", context.local_rank)
        torch.cuda.set_device(device)
    elif device.type != "cpu":
        raise AgganError(f"--device {device_name}: distributed training runs on cuda or cpu")
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                timeout=datetime.timedelta(seconds=timeout_s))
    return context, device


def teardown(context: Context) -> None:
    if context.enabled and dist.is_initialized():
        dist.destroy_process_group()


def gather(context: Context, value: Any) -> list[Any]:
    """Every rank's ``value``, in rank order (a collective: all ranks must call it)."""
    if not context.enabled:
        return [value]
    values: list[Any] = [None] * context.world_size
    dist.all_gather_object(values, value)
    return values


def any_rank(context: Context, flag: bool, device: torch.device) -> bool:
    """True on every rank if ``flag`` is True on any (a collective)."""
    if not context.enabled:
        return flag
    tensor = torch.tensor(float(flag), device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return bool(tensor.item())
