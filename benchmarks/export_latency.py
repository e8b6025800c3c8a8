"""Latency of the exported graph in onnxruntime against PyTorch, and the files' sizes.

Exports the default architecture (random weights: latency does not depend on them; or
``--model`` for a trained one) as uint8 ONNX and pt2 graphs, then times one image per call at
each size: onnxruntime on the ONNX file, the pt2 program, and PyTorch as ``aggan translate
--scale native`` runs it (channels-last, inference mode). Median of ``--repeats`` after a
warm-up call. Prints a table and a final JSON line; ``--json`` writes the results.

    python benchmarks/export_latency.py --json benchmarks/results/export_latency/export_latency.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch

from aggan.config import ModelConfig
from aggan.export import check_images, export_graph
from aggan.images import write_json
from aggan.loading import load_model
from aggan.networks import Translator
from aggan.translate import translate_tensor
from speed import cpu_name  # benchmarks/speed.py


def median_seconds(run: Callable[[], object], repeats: int) -> float:
    run()  # warm-up: allocations, oneDNN primitive caches, onnxruntime's first-run setup
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a model folder or shipped name (default: random "
                        "weights of the default architecture)")
    parser.add_argument("--sizes", nargs="+", default=["256x256", "768x1024"],
                        help="HEIGHTxWIDTH")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    import onnxruntime

    if args.model:
        model = load_model(args.model)
        translator, size_px = model.translator, model.config.data.size_px
    else:
        translator, size_px = Translator(ModelConfig()).eval(), 256
    translator = translator.to(memory_format=torch.channels_last)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as temp:
        files = {fmt: Path(temp) / f"model.{fmt}" for fmt in ("onnx", "pt2")}
        for fmt, path in files.items():
            export_graph(translator, path, fmt=fmt, directions=("a2b",), input_kind="uint8",
                         size_px=size_px)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        session = onnxruntime.InferenceSession(str(files["onnx"]), options,
                                               providers=["CPUExecutionProvider"])
        program = torch.export.load(files["pt2"]).module()
        for size in args.sizes:
            height, width = (int(x) for x in size.split("x"))
            images = check_images((height, width), "uint8", batch=1)
            with torch.inference_mode():
                timings = {
                    "pytorch": median_seconds(partial(translate_tensor, translator, images,
                                                      "a2b", True), args.repeats),
                    "onnxruntime": median_seconds(partial(session.run, None,
                                                          {"images": images.numpy()}),
                                                  args.repeats),
                    "pt2": median_seconds(partial(program, images), args.repeats),
                }
            rows.append({"size": size, **{f"{k}_s": round(v, 4) for k, v in timings.items()}})
        sizes_mb = {fmt: round(path.stat().st_size / 1e6, 2) for fmt, path in files.items()}
    print(f"{'size':<12}{'pytorch s':>12}{'onnxruntime s':>15}{'pt2 s':>10}{'ort / torch':>13}")
    for row in rows:
        print(f"{row['size']:<12}{row['pytorch_s']:>12.3f}{row['onnxruntime_s']:>15.3f}"
              f"{row['pt2_s']:>10.3f}{row['onnxruntime_s'] / row['pytorch_s']:>13.2f}")
    print(f"file sizes (MB): {sizes_mb}")
    result = {"benchmark": "export_latency", "torch": torch.__version__,
              "onnxruntime": onnxruntime.__version__, "threads": torch.get_num_threads(),
              "cpu": cpu_name(), "model": args.model or "random",
              "file_mb": sizes_mb, "rows": rows}
    print(json.dumps(result))
    if args.json:
        write_json(args.json, result)


if __name__ == "__main__":
    main()
