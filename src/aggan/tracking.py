"""What a run shows while it trains: scalars in TensorBoard and ``stats.jsonl``, sample grids as
PNG in ``samples/`` and in TensorBoard. The training loop calls it only every N steps, so the hot
path never waits on logging."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from torch import Tensor
from torchvision.utils import make_grid

from aggan.domains import Direction, reverse
from aggan.images import atomic_write, to_uint8, write_png
from aggan.networks import Translator

logger = logging.getLogger(__name__)


@torch.no_grad()
def sample_grid(translator: Translator, images: Tensor, direction: Direction,
                use_attention: bool) -> Tensor:
    """One row per image: input | mask | translation | reconstruction, as uint8 (3, H', W').

    Args:
        images: (N, 3, H, W) in [-1, 1] from the source domain of ``direction``.
    """
    translated, mask = translator(images, direction, use_attention)
    reconstructed, _ = translator(translated, reverse(direction), use_attention)
    mask_rgb = mask.expand_as(images) * 2 - 1
    tiles = torch.stack([images, mask_rgb, translated, reconstructed], dim=1).flatten(0, 1)
    grid = make_grid(tiles, nrow=4, padding=2, pad_value=1.0, value_range=(-1, 1))
    return to_uint8(grid.clamp(-1, 1))


STREAMS = ("stats", "metrics")


def _drop_rows_after(path: Path, step: int) -> None:
    if not path.is_file():
        return
    lines = path.read_text().splitlines(keepends=True)
    # A row cut short by a kill is dropped too.
    kept = []
    for line in lines:
        try:
            if json.loads(line)["step"] <= step:
                kept.append(line)
        except (json.JSONDecodeError, KeyError, TypeError):
            continue
    if len(kept) != len(lines):
        atomic_write(path, lambda temp: temp.write_text("".join(kept)))


class Tracker:
    """TensorBoard writer, ``stats.jsonl`` and sample PNGs of one run folder."""

    def __init__(self, run_dir: Path, *, tensorboard: bool = True, start_step: int = 0) -> None:
        """``start_step``: the step the run starts or resumes from. Rows logged after it by a run
        that stopped before saving them are dropped: this run logs those steps again."""
        self.run_dir = run_dir
        self.writer = None
        for stream in STREAMS:
            _drop_rows_after(run_dir / f"{stream}.jsonl", start_step)
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step: TensorBoard hides the stopped run's events from that step on.
            self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"),
                                        purge_step=start_step + 1)

    def scalars(self, step: int, values: dict[str, float], stream: str = "stats") -> None:
        """To TensorBoard and ``<stream>.jsonl`` (``stats`` for losses, ``metrics`` for KID)."""
        with (self.run_dir / f"{stream}.jsonl").open("a") as handle:
            handle.write(json.dumps({"step": step, **values}) + "\n")
        if self.writer is not None:
            for key, value in values.items():
                self.writer.add_scalar(key, value, step)

    def image(self, step: int, name: str, grid: Tensor) -> Path:
        path = self.run_dir / "samples" / f"step-{step:07d}_{name}.png"
        write_png(grid, path)
        if self.writer is not None:
            self.writer.add_image(f"samples/{name}", grid, step)
        return path

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
