"""The command line: the contract's flags, and one-line errors for every bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from aggan.cli import main

TINY_FLAGS = ["--size", "32", "--workers", "0", "--device", "cpu", "--no-progress",
              "--set", "model.generator_width=8", "--set", "model.generator_blocks=1",
              "--set", "model.attention_width=8", "--set", "model.discriminator_width=8",
              "--set", "data.synthetic.train_images=8", "--set", "data.synthetic.test_images=2",
              "--set", "monitor.checkpoint_every_steps=2"]


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code: int, err: str, *names: str) -> None:
    assert code == 2
    lines = [line for line in err.splitlines() if line.startswith("aggan: error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for name in names:
        assert name in lines[0], (name, lines[0])


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", "--data", "synthetic", "--out", str(run_dir), "--steps", "4",
                 *TINY_FLAGS]) == 0
    return run_dir


def test_train_translate_and_data_commands(tiny_run: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "data", "synthetic", "--out", tmp_path / "syn", "--size", "32",
                           "--train", "2", "--test", "2")
    assert code == 0 and "wrote" in out
    assert sorted(p.name for p in (tmp_path / "syn").iterdir()) == [
        "synthetic.json", "testA", "testA_mask", "testA_truth", "testB", "testB_mask",
        "testB_truth", "trainA", "trainB"]
    code, out, _ = run_cli(capsys, "translate", "--checkpoint", tiny_run, "--input",
                           tmp_path / "syn" / "testB", "--out", tmp_path / "out",
                           "--direction", "b2a", "--device", "cpu", "--batch-size", "2")
    assert code == 0
    assert sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*")) == [
        "masks", "masks/testB_00000.png", "masks/testB_00001.png", "testB_00000.png",
        "testB_00001.png"]


def test_dry_run_refuses_what_the_start_refuses_and_prints_the_schedule(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A dry run resolves the schedule against the data as the start does: a schedule the
    start refuses, it refuses in the same line; one it accepts, it prints in steps."""
    bad = ("--set", "schedule.attention_warmup_epoch=70", "--set", "schedule.switch_epoch=60")
    code, out, err = run_cli(capsys, "train", "--out", tmp_path / "dry", "--dry-run", *bad)
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "does not end before schedule.switch_epoch=60.0" in err
    code, _, real = run_cli(capsys, "train", "--out", tmp_path / "real", *bad)
    assert code == 2 and real == err
    code, out, _ = run_cli(capsys, "train", "--data", "synthetic", "--out", tmp_path,
                           "--dry-run", "--epochs", "80", "--set",
                           "data.synthetic.train_images=30", "--set", "data.validation_images=5")
    plan = json.loads(out)
    assert code == 0 and plan["config"]["schedule"]["epochs"] == 80.0
    assert plan["schedule"]["steps_per_epoch"] == 25  # 30 less the 5 held out
    assert plan["schedule"]["total_steps"] == 2000
    assert plan["schedule"]["attention_warmup_steps"] == 625  # epoch 25
    assert plan["schedule"]["switch_step"] == 1500


def test_dry_run_prints_resolved_config(capsys: pytest.CaptureFixture[str],
                                        caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    with caplog.at_level("INFO"):
        code, out, _ = run_cli(capsys, "train", "--out", tmp_path, "--dry-run")
    assert code == 0 and '"size_px": 64' in out and "built-in demo" in caplog.text
    code, out, _ = run_cli(capsys, "train", "--data", "synthetic", "--out", tmp_path,
                           "--dry-run", "--config", "official", "--epochs", "60")
    assert code == 0 and '"attention_kernels": "official-1x1"' in out and '"epochs": 60.0' in out
    assert '"attention_from": "image"' in out and '"generator_upsample": "transpose"' in out
    code, out, _ = run_cli(capsys, "train", "--out", tmp_path, "--dry-run", "--attention-from",
                           "generator", "--generator-upsample", "resize")
    assert code == 0 and '"attention_from": "generator"' in out
    assert '"generator_upsample": "resize"' in out
    code, out, _ = run_cli(capsys, "train", "--out", tmp_path, "--dry-run", "--precision",
                           "bf16", "--compile")
    assert code == 0 and '"precision": "bf16"' in out and '"compile": true' in out
    assert '"channels_last": true' in out


def test_a_run_saved_before_a_default_changed_resumes_as_it_was(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A run whose checkpoint predates data.validation_images (aggan 0.1.0 held no photo out)
    resumes on every training photo, not on today's default, which holds 2 of these 20 out (as
    the dry run prints) and so would refuse to resume a run trained on all of them."""
    from aggan.checkpoint import load_checkpoint, save_checkpoint
    from aggan.synthetic import write_dataset

    write_dataset(tmp_path / "photos", size_px=32, train_images=20, test_images=2, seed=0)
    run_dir = tmp_path / "run"
    flags = (*TINY_FLAGS, "--set", "monitor.placement_images=0")
    code, out, _ = run_cli(capsys, "train", "--data", tmp_path / "photos", "--out", run_dir,
                           "--dry-run", *flags)
    plan = json.loads(out)  # today's default, resolved as a start would
    assert plan["config"]["data"]["validation_images"] == 2
    assert plan["schedule"]["steps_per_epoch"] == 18
    code, _, _ = run_cli(capsys, "train", "--data", tmp_path / "photos", "--out", run_dir,
                         "--steps", "4", "--stop-at", "2", "--set", "data.validation_images=0",
                         *flags)
    assert code == 0
    latest = run_dir / "checkpoints" / "latest.pt"
    checkpoint = load_checkpoint(latest)
    del checkpoint["config"]["data"]["validation_images"]
    del checkpoint["config"]["schedule"]["switch_attention"]
    save_checkpoint(checkpoint, latest)
    code, out, err = run_cli(capsys, "train", "--out", run_dir, "--resume", "--no-progress")
    assert code == 0 and "(step 4)" in out, err
    saved = json.loads((run_dir / "config.json").read_text())["config"]
    assert saved["data"]["validation_images"] == 0
    assert saved["schedule"]["switch_attention"] == "last"


def test_resume_continues_and_finishes(tiny_run: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    run_dir = tmp_path / "run"
    code, _, _ = run_cli(capsys, "train", "--data", "synthetic", "--out", run_dir, "--steps", "4",
                         "--stop-at", "2", *TINY_FLAGS)
    assert code == 0
    # latest.pt's tensors are read once: the CLI maps the file for the saved config only.
    reads = []
    load = torch.load

    def counting_load(path: Path, *args: Any, **kwargs: Any) -> Any:
        reads.append((Path(path).name, kwargs.get("mmap", False)))
        return load(path, *args, **kwargs)

    monkeypatch.setattr(torch, "load", counting_load)
    code, out, _ = run_cli(capsys, "train", "--out", run_dir, "--resume", "--no-progress")
    assert code == 0 and "(step 4)" in out
    assert reads.count(("latest.pt", False)) == 1 and reads.count(("latest.pt", True)) == 1


def _images_folder(root: Path) -> Path:
    for folder in ("trainA", "trainB"):
        (root / folder).mkdir(parents=True)
        for index in range(2):
            Image.new("RGB", (36, 36), (index * 90, 40, 200)).save(root / folder / f"{index}.png")
    return root


def test_bad_data_inputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "never"
    code, _, err = run_cli(capsys, "train", "--data", tmp_path / "missing", "--out", out)
    assert_one_line_error(code, err, "missing")
    (tmp_path / "empty").mkdir()
    code, _, err = run_cli(capsys, "train", "--data", tmp_path / "empty", "--out", out)
    assert_one_line_error(code, err, "trainA")
    root = _images_folder(tmp_path / "data")
    for extra in (root / "trainB").iterdir():
        extra.unlink()
    (root / "trainB" / "readme.txt").write_text("no images here")
    code, _, err = run_cli(capsys, "train", "--data", root, "--out", out, *TINY_FLAGS)
    assert_one_line_error(code, err, "trainB", "no images")


@pytest.mark.parametrize("kind", ["truncated", "not-an-image"])
def test_bad_image_files(tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str) -> None:
    root = _images_folder(tmp_path / "data")
    bad = root / "trainA" / "bad.jpg"
    if kind == "truncated":
        Image.new("RGB", (64, 64), (1, 2, 3)).save(bad)
        bad.write_bytes(bad.read_bytes()[:200])
    else:
        bad.write_text("plain text")
    code, _, err = run_cli(capsys, "train", "--data", root, "--out", tmp_path / "run",
                           *TINY_FLAGS)
    assert_one_line_error(code, err, "bad.jpg")
    code, _, err = run_cli(capsys, "translate", "--checkpoint", tmp_path / "none.pt", "--input",
                           bad, "--out", tmp_path / "o", "--direction", "a2b")
    assert_one_line_error(code, err, "none.pt")


def test_bad_image_while_translating_keeps_the_outputs_around_it(
        tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    Image.new("RGB", (20, 20), (9, 9, 9)).save(inputs / "a_good.png")
    (inputs / "b_bad.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    Image.new("RGB", (20, 20), (99, 9, 9)).save(inputs / "c_good.png")
    code, _, err = run_cli(capsys, "translate", "--checkpoint", tiny_run, "--input", inputs,
                           "--out", tmp_path / "out", "--direction", "a2b", "--device", "cpu")
    assert code == 1 and "1 input(s) could not be read" in err
    for name in ("a_good.png", "c_good.png"):
        assert Image.open(tmp_path / "out" / name).size == (20, 20)
    assert not (tmp_path / "out" / "b_bad.png").exists()


def test_bad_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "train", "--out", tmp_path, "--size", "30")
    assert_one_line_error(code, err, "--size", "30")
    code, _, err = run_cli(capsys, "train", "--out", tmp_path, "--device", "tpu", "--steps", "1")
    assert_one_line_error(code, err, "--device", "tpu")
    code, _, err = run_cli(capsys, "train", "--out", tmp_path, "--device", "cuda:7",
                           "--steps", "1")
    assert_one_line_error(code, err, "--device")
    code, _, err = run_cli(capsys, "train", "--out", tmp_path, "--set", "train.lrr=1")
    assert_one_line_error(code, err, "train.lrr")
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--out", str(tmp_path), "--size", "big"])
    assert exit_info.value.code == 2
    assert_one_line_error(2, capsys.readouterr().err, "--size")


def test_broken_checkpoints(tiny_run: Path, tmp_path: Path,
                            capsys: pytest.CaptureFixture[str]) -> None:
    latest = tiny_run / "checkpoints" / "latest.pt"
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(latest.read_bytes()[:1000])
    code, _, err = run_cli(capsys, "translate", "--checkpoint", truncated, "--input", tmp_path,
                           "--out", tmp_path / "o", "--direction", "a2b")
    assert_one_line_error(code, err, "truncated.pt")
    # A resume with another variant is refused, and the run's checkpoint stays intact.
    before = latest.read_bytes()
    code, _, err = run_cli(capsys, "train", "--out", tiny_run, "--resume", "--variant",
                           "cyclegan", "--no-progress")
    assert_one_line_error(code, err, "variant", "cyclegan")
    assert latest.read_bytes() == before
    code, _, err = run_cli(capsys, "train", "--data", "synthetic", "--out", tiny_run,
                           *TINY_FLAGS)
    assert_one_line_error(code, err, "already holds a run")
    assert latest.read_bytes() == before


def test_module_entry_point_errors_without_traceback(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "aggan", "translate", "--checkpoint",
                             str(tmp_path / "nope"), "--input", str(tmp_path), "--out",
                             str(tmp_path / "o"), "--direction", "a2b"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"aggan: error: --model: no such model folder: {tmp_path / 'nope'}"]


def test_ctrl_c_saves_a_checkpoint_that_resumes(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "aggan", "train", "--data", "synthetic", "--out",
               str(run_dir), "--steps", "100000", *TINY_FLAGS, "--workers", "1",
               "--set", "monitor.log_every_steps=1"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    stats = run_dir / "stats.jsonl"
    deadline = time.monotonic() + 120
    while not (stats.exists() and len(stats.read_text().splitlines()) >= 3):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGINT)  # as a terminal's Ctrl-C: workers too
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "Traceback" not in err and "--resume" in out
    from aggan.checkpoint import load_checkpoint

    step = load_checkpoint(run_dir / "checkpoints" / "latest.pt")["step"]
    assert 3 <= step < 100000
    assert main(["train", "--out", str(run_dir), "--resume", "--stop-at", str(step + 2),
                 "--no-progress"]) == 0
    assert load_checkpoint(run_dir / "checkpoints" / "latest.pt")["step"] == step + 2


def test_other_libraries_info_lines_stay_off_the_console(tmp_path: Path) -> None:
    """What another library logs at INFO (the ONNX exporter's hundred lines) is not printed as
    aggan's; its warnings are, under its own name; aggan's own INFO lines are."""
    script = (
        "import argparse, logging, sys\n"
        "from aggan import cli\n"
        "def run(args):\n"
        "    logging.getLogger('onnx_ir.passes').info('Replaced initializer x')\n"
        "    logging.getLogger('onnxscript.optimizer').warning('a real warning')\n"
        "    logging.getLogger('aggan.export').info('wrote model.onnx')\n"
        "    return 0\n"
        "log_file = sys.argv[2] if len(sys.argv) > 2 else None\n"
        "cli.build_parser = lambda: type('P', (), {'parse_args': lambda self, argv: "
        "argparse.Namespace(run=run, log_file=log_file)})()\n"
        "sys.exit(cli.main(sys.argv[1:]))\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == ["onnxscript: a real warning", "aggan: wrote model.onnx"]
    # --log-file keeps everything, the libraries' INFO lines included; the console is the same.
    result = subprocess.run([sys.executable, "-c", script, "--log-file", "all.log"],
                            capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.stderr.splitlines() == ["onnxscript: a real warning", "aggan: wrote model.onnx"]
    logged = (tmp_path / "all.log").read_text()
    for line in ("onnx_ir.passes: Replaced initializer x", "onnxscript.optimizer: a real warning",
                 "aggan.export: wrote model.onnx"):
        assert line in logged


def test_unreadable_files_do_not_stop_a_folder(tiny_run: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str],
                                              caplog: pytest.LogCaptureFixture) -> None:
    """Every readable image is translated; each unreadable one is named on its own line, with a
    count at the end and exit status 1; a file that is not an image and a dropped transparency
    are named once each."""
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.png", "c.png", "e.jpg"):
        Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(folder / name)
    Image.fromarray(rng.integers(0, 256, (20, 24, 4), dtype=np.uint8), "RGBA").save(
        folder / "d.png")
    (folder / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (folder / "f.jpg").write_bytes(b"not a jpeg")
    (folder / "notes.txt").write_text("taken on a sunny day")
    with caplog.at_level("WARNING"):
        code, out, err = run_cli(capsys, "translate", "--checkpoint", tiny_run, "--input",
                                 folder, "--out", tmp_path / "out", "--direction", "a2b")
    assert code == 1
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == [
        "a.png", "c.png", "d.png", "e.png"]
    assert "translated 4 images" in out
    lines = [record.getMessage() for record in caplog.records]  # the console's lines
    for name in ("b.png", "f.jpg"):
        assert sum(name in line and "skipped" in line for line in lines) == 1
    assert sum("notes.txt" in line and "not an image file" in line for line in lines) == 1
    assert sum("d.png" in line and "transparency is dropped" in line for line in lines) == 1
    assert err.strip() == "aggan: 2 input(s) could not be read (each named above)"
