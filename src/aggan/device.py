"""Device selection from the ``--device`` flag."""

from __future__ import annotations

import torch

from aggan.errors import AgganError


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
