"""What keeps a run's work safe when something goes wrong: one training process per run folder
(a lock that a ``kill -9`` cannot leave stuck), Ctrl-C and SIGTERM finishing the step and saving,
a NaN or infinite loss stopping the run before it can reach a checkpoint, and the temp files of a
save that was killed."""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from aggan.errors import AgganError

logger = logging.getLogger(__name__)

LOCK_FILE = ".lock"
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)  # Ctrl-C; SLURM, docker stop, Kubernetes


@contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Holds an exclusive lock on ``run_dir`` while training. The kernel drops the lock when the
    process dies, however it dies, so it is never left stuck. Without ``fcntl`` (Windows) runs
    are not locked."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / LOCK_FILE, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise AgganError(f"--out {run_dir} is in use by another aggan train (pid {holder}); "
                             "wait for it to finish or choose another --out") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def remove_stale_temp_files(run_dir: Path) -> None:
    """Deletes the temp files that a killed save leaves (``.latest.pt.*.tmp.pt``: a whole
    checkpoint each). Call it holding the run lock: no other process can be saving."""
    stale = [path for folder in (run_dir, run_dir / "checkpoints", run_dir / "samples")
             if folder.is_dir() for path in folder.glob(".*.tmp*") if path.is_file()]
    if stale:
        size_mb = sum(path.stat().st_size for path in stale) / 1e6
        for path in stale:
            path.unlink(missing_ok=True)
        logger.info("removed %d temp files (%.1f MB) left by an interrupted save", len(stale),
                    size_mb)


@contextmanager
def stop_on_signals() -> Iterator[dict[str, Any]]:
    """The first Ctrl-C or SIGTERM asks the loop to stop after the current step (it then
    checkpoints); ``flag["signal"]`` names it. A second Ctrl-C interrupts at once."""
    flag: dict[str, Any] = {"stop": False, "signal": None}
    previous: dict[int, Any] = {}

    def handler(signum: int, frame: Any) -> None:
        flag["stop"] = True
        flag["signal"] = signal.Signals(signum).name
        signal.signal(signum, previous[signum])
        logger.warning("%s: saving a checkpoint after this step (Ctrl-C again to abort)",
                       flag["signal"])

    try:
        for signum in STOP_SIGNALS:
            previous[signum] = signal.signal(signum, handler)
    except ValueError:  # not the main thread: no handler, plain KeyboardInterrupt
        yield flag
        return
    try:
        yield flag
    finally:
        for signum, before in previous.items():
            signal.signal(signum, before)


class FiniteWatch:
    """Remembers the first step whose loss terms were not all finite, on the device and without
    a sync; :meth:`check` (at log steps and before every save) turns it into an error, so NaN
    weights never reach a checkpoint."""

    def __init__(self, device: torch.device) -> None:
        self.first_step = torch.full((), -1, dtype=torch.int64, device=device)
        self.bad_terms: Tensor | None = None
        self.names: list[str] = []
        self.earlier: tuple[int, list[str]] | None = None  # found before the terms changed

    def _settle(self) -> None:
        """Reads what was found (a sync) before the set of terms changes (the warm-up's end)."""
        if self.bad_terms is not None and self.earlier is None and int(self.first_step) >= 0:
            self.earlier = int(self.first_step), [
                name for name, bad in zip(self.names, self.bad_terms.tolist(), strict=True)
                if bad]

    def update(self, terms: dict[str, Tensor], step: int) -> None:
        if list(terms) != self.names:
            self._settle()
            self.names, self.bad_terms = list(terms), None
        values = torch.stack([value.detach().float().reshape(()) for value in terms.values()])
        bad = ~torch.isfinite(values)
        if self.bad_terms is None:
            self.bad_terms = torch.zeros_like(bad)
        first = (self.first_step < 0) & bad.any()
        self.first_step = torch.where(first, step, self.first_step)
        self.bad_terms = torch.where(first, bad, self.bad_terms)

    def check(self, last_checkpoint: str) -> None:
        self._settle()
        if self.earlier is None:
            return
        step, names = self.earlier
        raise AgganError(f"step {step}: {', '.join(names)} became NaN or infinite; training "
                         f"stopped without saving it; {last_checkpoint} is the last good state "
                         "(resume it with --resume, perhaps with a lower train.lr or --precision "
                         "fp32)")
