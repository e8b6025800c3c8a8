"""Faults during training lose nothing: SIGTERM, NaN losses, a full disk, two processes on one
run folder, a killed save, a corrupt latest.pt, a data file that vanishes mid-run, a
decompression bomb, and a resume with another run length."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

import aggan.train
from aggan.checkpoint import load_checkpoint
from aggan.cli import main
from aggan.config import build_config
from aggan.errors import AgganError
from aggan.faults import FiniteWatch, run_lock
from aggan.train import train
from conftest import tiny_layer
from test_cli import TINY_FLAGS, assert_one_line_error, run_cli

CHECKPOINTS = "checkpoints"


def stats_steps(run_dir: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (run_dir / "stats.jsonl").read_text().splitlines()]


def wait_for_rows(process: subprocess.Popen, stats: Path, rows: int) -> None:
    deadline = time.monotonic() + 120
    while not (stats.exists() and len(stats.read_text().splitlines()) >= rows):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.2)


@pytest.fixture
def start_training() -> Iterator[Any]:
    """start(run_dir, *flags) -> a long training subprocess, killed at teardown whatever the
    test's outcome."""
    processes: list[subprocess.Popen] = []

    def start(run_dir: Path, *extra: str) -> subprocess.Popen:
        command = [sys.executable, "-m", "aggan", "train", "--data", "synthetic", "--out",
                   str(run_dir), "--steps", "100000", *TINY_FLAGS, "--set",
                   "monitor.log_every_steps=1", *extra]
        processes.append(subprocess.Popen(command, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, text=True,
                                          start_new_session=True))
        return processes[-1]

    yield start
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.communicate()


# --- SIGTERM, and stats.jsonl after a resume ----------------------------------------------------

def test_sigterm_finishes_the_step_saves_and_exits_143(tmp_path: Path, start_training) -> None:
    run_dir = tmp_path / "run"
    process = start_training(run_dir, "--workers", "1",
                             "--set", "monitor.checkpoint_every_steps=100000")
    wait_for_rows(process, run_dir / "stats.jsonl", 3)
    # SLURM and systemd signal the whole process group, data workers included (docker stop and
    # Kubernetes only the main process): the workers must not die before the main has saved.
    os.killpg(process.pid, signal.SIGTERM)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 143, err
    assert "SIGTERM" in err and "Traceback" not in err and "--resume" in out
    step = load_checkpoint(run_dir / CHECKPOINTS / "latest.pt")["step"]
    assert step >= 3  # no periodic checkpoint was due: only the handler saved this


def test_resume_logs_each_step_once(tmp_path: Path) -> None:
    config = build_config(tiny_layer(steps=20, log_every_steps=5, checkpoint_every_steps=10))
    run_dir = tmp_path / "run"
    train(config, run_dir, progress=False)
    # As if killed after logging steps 15 and 20 but before saving step 20.
    shutil.copy(run_dir / CHECKPOINTS / "step-0000010.pt", run_dir / CHECKPOINTS / "latest.pt")
    with (run_dir / "stats.jsonl").open("a") as handle:
        handle.write('{"step": 2')  # and a row cut short by the kill
    train(config, run_dir, resume=True, progress=False)
    assert stats_steps(run_dir) == [5, 10, 15, 20]


# --- NaN ----------------------------------------------------------------------------------------

def test_nan_loss_stops_at_its_step_and_keeps_the_last_good_checkpoint(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = build_config(tiny_layer(steps=30, log_every_steps=5, checkpoint_every_steps=10))
    run_dir = tmp_path / "run"
    real_step = aggan.train.training_step

    def poisoned_step(state, modules, real, phase, losses):  # type: ignore[no-untyped-def]
        terms = real_step(state, modules, real, phase, losses)
        if state.step + 1 == 13:  # the 13th step: the weights turn NaN with it
            with torch.no_grad():
                next(state.translator.parameters()).fill_(float("nan"))
            terms["loss/cycle_a"] = terms["loss/cycle_a"] * float("nan")
        return terms

    monkeypatch.setattr(aggan.train, "training_step", poisoned_step)
    with pytest.raises(AgganError, match=r"step 13: loss/cycle_a(, \S+)* became NaN or infinite.*"
                                         r"latest\.pt \(step 10\) is the last good state"):
        train(config, run_dir, progress=False, tensorboard=False)
    saved = load_checkpoint(run_dir / CHECKPOINTS / "latest.pt")
    assert saved["step"] == 10
    assert all(torch.isfinite(t).all() for t in saved["translator"].values())
    assert sorted(p.name for p in (run_dir / CHECKPOINTS).iterdir()) == [
        "latest.pt", "step-0000010.pt"]
    monkeypatch.setattr(aggan.train, "training_step", real_step)
    assert train(config, run_dir, resume=True, progress=False, tensorboard=False).step == 30


def test_finite_watch_names_the_first_bad_step_and_terms() -> None:
    watch = FiniteWatch(torch.device("cpu"))
    finite = {"x": torch.tensor(1.0), "y": torch.tensor(2.0)}
    watch.update(finite, 1)
    watch.check("ckpt")
    watch.update({"x": torch.tensor(1.0), "y": torch.tensor(float("inf"))}, 2)
    watch.update({"x": torch.tensor(float("nan")), "y": torch.tensor(1.0)}, 3)
    with pytest.raises(AgganError, match=r"^step 2: y became NaN or infinite.*ckpt is the last"):
        watch.check("ckpt")


def test_finite_watch_keeps_what_it_found_when_the_terms_change() -> None:
    """The warm-up's end adds the mask priors' terms: a NaN found before is still reported."""
    watch = FiniteWatch(torch.device("cpu"))
    watch.update({"x": torch.tensor(float("nan"))}, 4)
    watch.update({"x": torch.tensor(1.0), "prior": torch.tensor(float("inf"))}, 5)
    with pytest.raises(AgganError, match=r"^step 4: x became"):
        watch.check("ckpt")
    watch = FiniteWatch(torch.device("cpu"))
    watch.update({"x": torch.tensor(1.0)}, 4)
    watch.update({"x": torch.tensor(1.0), "prior": torch.tensor(float("inf"))}, 5)
    with pytest.raises(AgganError, match=r"^step 5: prior became"):
        watch.check("ckpt")


# --- A full disk --------------------------------------------------------------------------------

@contextlib.contextmanager
def small_disk(path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An 8 MB tmpfs at ``path`` where mounting works (root on Linux); elsewhere ENOSPC injected
    into every write of a checkpoint after the first."""
    path.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(path)],
                             capture_output=True).returncode == 0
    if not mounted:
        real_save = torch.save
        calls = {"n": 0}

        def full_save(obj, f, *args, **kwargs):  # type: ignore[no-untyped-def]
            calls["n"] += 1
            if calls["n"] > 1:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real_save(obj, f, *args, **kwargs)

        monkeypatch.setattr(torch, "save", full_save)
    try:
        yield "tmpfs" if mounted else "injected"
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(path)], check=True)


def test_full_disk_while_saving_keeps_the_previous_checkpoint(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    layer = tiny_layer(steps=30, log_every_steps=10, sample_every_steps=1000,
                       checkpoint_every_steps=10)
    config = build_config(layer)  # a checkpoint is 3.1-3.4 MB: two fit in 8 MB, three do not
    with small_disk(tmp_path / "disk", monkeypatch):
        run_dir = tmp_path / "disk" / "run"
        with pytest.raises(AgganError, match=r"cannot write checkpoint .*step-0000020\.pt .*MB "
                                             r"free on its disk\); nothing was replaced"):
            train(config, run_dir, progress=False, tensorboard=False)
        assert load_checkpoint(run_dir / CHECKPOINTS / "latest.pt")["step"] == 10
        assert sorted(p.name for p in (run_dir / CHECKPOINTS).iterdir()) == [
            "latest.pt", "step-0000010.pt"]  # no half-written temp file


# --- Two processes, a killed save ---------------------------------------------------------------

def test_second_trainer_on_the_same_run_refuses_at_once_and_kill_frees_the_lock(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], start_training) -> None:
    run_dir = tmp_path / "run"
    process = start_training(run_dir)
    wait_for_rows(process, run_dir / "stats.jsonl", 1)
    began = time.monotonic()
    code, _, err = run_cli(capsys, "train", "--data", "synthetic", "--out", run_dir,
                           "--steps", "4", *TINY_FLAGS)
    assert_one_line_error(code, err, f"--out {run_dir} is in use by another aggan train "
                                     f"(pid {process.pid})")
    assert time.monotonic() - began < 10
    process.kill()  # SIGKILL: no handler runs, the kernel drops the lock
    process.communicate(timeout=60)
    with run_lock(run_dir):
        pass


def test_temp_files_of_a_killed_save_are_removed_on_resume(tmp_path: Path) -> None:
    config = build_config(tiny_layer(steps=4, checkpoint_every_steps=2))
    run_dir = tmp_path / "run"
    train(config, run_dir, stop_at_step=2, progress=False, tensorboard=False)
    leftover = run_dir / CHECKPOINTS / ".latest.pt.abc123.tmp.pt"
    leftover.write_bytes(b"\0" * 1000)
    train(config, run_dir, resume=True, progress=False, tensorboard=False)
    assert not leftover.exists()


def test_corrupt_latest_names_an_intact_step_checkpoint(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = tmp_path / "run"
    assert main(["train", "--data", "synthetic", "--out", str(run_dir), "--steps", "4",
                 *TINY_FLAGS]) == 0
    latest = run_dir / CHECKPOINTS / "latest.pt"
    latest.write_bytes(latest.read_bytes()[:5000])
    code, _, err = run_cli(capsys, "train", "--out", run_dir, "--resume", "--no-progress")
    assert_one_line_error(code, err, "latest.pt is unreadable", "step-0000004.pt (step 4) is "
                          "intact: copy it over latest.pt")
    text = tmp_path / "notes.txt"
    text.write_text("not a checkpoint\n")
    code, _, err = run_cli(capsys, "translate", "--checkpoint", text, "--input", text, "--out",
                           tmp_path / "o", "--direction", "a2b")
    assert_one_line_error(code, err, str(text))
    assert "weights_only" not in err


# --- Data that goes bad ---------------------------------------------------------------------------

def bomb_png(path: Path, side: int = 50_000) -> None:
    """A valid 60-byte PNG whose header claims side x side pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))

    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                     + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


def test_decompression_bomb_is_named_in_data_and_translate(
        tmp_path: Path, image_folder_factory, tiny_model_folder: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    root = image_folder_factory("data", count=2)
    bomb = root / "trainB" / "bomb.png"
    bomb_png(bomb)
    code, _, err = run_cli(capsys, "train", "--data", root, "--out", tmp_path / "run",
                           "--steps", "2", *TINY_FLAGS)
    assert_one_line_error(code, err, str(bomb), "decompression bomb")
    code, _, err = run_cli(capsys, "translate", "--model", tiny_model_folder, "--input", bomb,
                           "--out", tmp_path / "out", "--direction", "b2a")
    assert_one_line_error(code, err, str(bomb), "decompression bomb")


def test_image_vanishing_mid_run_is_skipped_with_a_warning(
        tmp_path: Path, image_folder_factory, caplog: pytest.LogCaptureFixture) -> None:
    from aggan.data import FolderDomain

    root = image_folder_factory("data", count=3, size=(40, 40))
    layer = tiny_layer(steps=8, checkpoint_every_steps=4)
    layer["data"]["root"] = str(root)
    real_init = FolderDomain.__init__

    def open_then_spoil(self, folder: Path, *, check: bool = True) -> None:
        real_init(self, folder, check=check)  # checked and listed at the start, then:
        if folder.name == "trainA":
            (folder / "img1.png").unlink()
        elif folder.name == "trainB":
            (folder / "img2.png").write_bytes((folder / "img2.png").read_bytes()[:100])

    with pytest.MonkeyPatch.context() as patch, caplog.at_level("WARNING"):
        patch.setattr(FolderDomain, "__init__", open_then_spoil)
        result = train(build_config(layer), tmp_path / "run", progress=False, tensorboard=False)
    assert result.step == 8
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert sum("img1.png does not exist" in w for w in warnings) == 1, warnings  # once per file
    assert sum("img2.png" in w and "truncated" in w for w in warnings) == 1, warnings


# --- Resuming with another run length -----------------------------------------------------------

def resume_with(run_dir: Path, steps: int) -> dict:
    layer = tiny_layer(steps=steps)
    train(build_config(layer), run_dir, resume=True, progress=False, tensorboard=False)
    return load_checkpoint(run_dir / CHECKPOINTS / "latest.pt")["schedule"]


def test_extending_a_run_keeps_passed_phase_points(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    # 20 steps: warm-up ends at 5, decay from 10, switch at 12; stopped at 14, past all three.
    train(build_config(tiny_layer(steps=20)), run_dir, stop_at_step=14, progress=False,
          tensorboard=False)
    schedule = resume_with(run_dir, 40)
    assert (schedule["attention_warmup_steps"], schedule["decay_start_step"],
            schedule["switch_step"], schedule["total_steps"]) == (5, 10, 12, 40)


def test_resume_refuses_lengths_it_cannot_honour(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = tmp_path / "run"
    assert main(["train", "--data", "synthetic", "--out", str(run_dir), "--steps", "20",
                 "--stop-at", "8", *TINY_FLAGS]) == 0
    config_before = (run_dir / "config.json").read_bytes()
    code, _, err = run_cli(capsys, "train", "--out", run_dir, "--resume", "--steps", "6")
    assert_one_line_error(code, err, "--steps 6", "not beyond step 8")
    # 12 steps would put the switch (not yet reached, at 12 of 20) at 7: behind step 8.
    code, _, err = run_cli(capsys, "train", "--out", run_dir, "--resume", "--steps", "12")
    assert_one_line_error(code, err, "--steps 12 would move the switch from step 12 to step 7")
    assert (run_dir / "config.json").read_bytes() == config_before
    assert load_checkpoint(run_dir / CHECKPOINTS / "latest.pt")["step"] == 8


# --- Flags that used to end in a traceback or a wrong success -----------------------------------

def test_steps_zero_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "train", "--data", "synthetic", "--out", tmp_path / "run",
                           "--steps", "0", *TINY_FLAGS)
    assert_one_line_error(code, err, "--steps must be at least 1, got 0")


def test_unknown_builtin_config_lists_the_names(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "train", "--out", tmp_path, "--config", "offical",
                           "--dry-run")
    assert_one_line_error(code, err, "offical", "built-in configs: demo, official")


def test_outputs_in_the_way_are_one_line_before_any_work(
        tmp_path: Path, tiny_model_folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a_file = tmp_path / "taken.txt"
    a_file.write_text("x")
    image = tmp_path / "in.png"
    from PIL import Image

    Image.new("RGB", (40, 40)).save(image)
    commands = {
        "train": ["train", "--data", "synthetic", "--steps", "2", *TINY_FLAGS, "--out"],
        "translate": ["translate", "--model", tiny_model_folder, "--input", image,
                      "--direction", "a2b", "--out"],
        "evaluate": ["evaluate", "--real", tmp_path, "--fake", tmp_path, "--out"],
        "data synthetic": ["data", "synthetic", "--size", "32", "--train", "1", "--test", "1",
                           "--out"],
    }
    for name, command in commands.items():
        for out in (a_file, a_file / "below"):  # the file itself, a file as parent
            code, _, err = run_cli(capsys, *command, out)
            assert_one_line_error(code, err, "--out", str(a_file))
            assert a_file.read_text() == "x", name
    # /proc refuses new folders even to root: an unwritable --out and --cache-dir, checked
    # before the Inception pass.
    unwritable = Path("/proc/aggan-out")
    code, _, err = run_cli(capsys, "evaluate", "--real", tmp_path, "--fake", tmp_path,
                           "--out", unwritable)
    assert_one_line_error(code, err, "--out /proc/aggan-out: cannot write there")
    code, _, err = run_cli(capsys, "evaluate", "--real", tmp_path, "--fake", tmp_path,
                           "--cache-dir", unwritable)
    assert_one_line_error(code, err, "--cache-dir /proc/aggan-out: cannot write there")


def test_out_of_memory_names_the_image_and_the_remedy(
        tmp_path: Path, tiny_model_folder: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    import aggan.translate

    def no_memory(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: "
                           "can't allocate memory: you tried to allocate 48000000000 bytes.")

    monkeypatch.setattr(aggan.translate, "translate_tensor", no_memory)
    from PIL import Image

    photo = tmp_path / "photo.jpg"
    Image.new("RGB", (400, 300)).save(photo)
    code, _, err = run_cli(capsys, "translate", "--model", tiny_model_folder, "--input", photo,
                           "--out", tmp_path / "out", "--direction", "a2b", "--scale", "native")
    assert_one_line_error(code, err, str(photo), "out of memory translating 400 x 300 px",
                          "--scale")


def test_synthetic_data_refuses_a_folder_with_files(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    real = tmp_path / "my_dataset"
    (real / "trainA").mkdir(parents=True)
    (real / "trainA" / "horse.jpg").write_bytes(b"precious")
    code, _, err = run_cli(capsys, "data", "synthetic", "--out", real, "--size", "32",
                           "--train", "1", "--test", "1")
    assert_one_line_error(code, err, f"--out {real} is not empty")
    assert sorted(p.name for p in real.rglob("*")) == ["horse.jpg", "trainA"]
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, _ = run_cli(capsys, "data", "synthetic", "--out", empty, "--size", "32",
                         "--train", "1", "--test", "1")
    assert code == 0 and (empty / "synthetic.json").is_file()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
