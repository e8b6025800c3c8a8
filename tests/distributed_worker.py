"""Run by torchrun (or plainly) from test_distributed.py: trains the tiny config and saves this
process's final networks as ``OUT/rank<R>.pt`` so the test can compare ranks and runs."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from aggan.config import build_config
from aggan.train import train
from conftest import tiny_layer


def main() -> None:
    run_dir, batch_size = Path(sys.argv[1]), int(sys.argv[2])
    extra = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
    stop_at = extra.pop("stop_at", None)
    resume = extra.pop("resume", False)
    train_fields = {"steps": 12, "switch_step": 6, "attention_warmup_step": 2, "pool_size": 0,
                    "batch_size": batch_size, "checkpoint_every_steps": 100, **extra}
    layer = tiny_layer(**train_fields)
    result = train(build_config(layer), run_dir, resume=resume, stop_at_step=stop_at,
                   progress=False, tensorboard=False)
    rank = os.environ.get("RANK", "0")
    torch.save({"translator": result.translator.state_dict(),
                "discriminators": result.discriminators.state_dict(), "step": result.step},
               run_dir / f"rank{rank}.pt")


if __name__ == "__main__":
    main()
