"""The shell scripts users run, run here on a tiny budget so that they cannot rot."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO


@pytest.mark.slow
def test_paper_run_on_the_cpu_with_a_tiny_budget(tmp_path: Path) -> None:
    """The GPU script end to end: probe, a run fitted to the budget, evaluate, export."""
    out = tmp_path / "paper"
    env = {**os.environ, "DATA": "synthetic", "DEVICE": "cpu", "PRECISION": "fp32",
           "PYTHON_BIN": str(Path(sys.executable).parent), "OMP_NUM_THREADS": "2"}
    tiny = ["--size", "32", "--workers", "0", "--set", "model.generator_width=8",
            "--set", "model.generator_blocks=2", "--set", "model.attention_width=8",
            "--set", "model.discriminator_width=8",
            "--set", "data.synthetic.train_images=40", "--set", "data.synthetic.test_images=6"]
    result = subprocess.run(["bash", str(REPO / "scripts" / "paper_run.sh"), str(out), "0.05",
                             *tiny], capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] >= 40
    assert set(summary["metrics"]) == {"a2b", "b2a"}
    assert all(m["kid_x100_mean"] == m["kid_x100_mean"] for m in summary["metrics"].values())
    assert (out / "model" / "model.safetensors").is_file()
    assert (out / "report" / "index.html").is_file()
    assert not (out / "probe").exists()
