"""``aggan export``: the whole translation as one ONNX or ``torch.export`` graph, verified.

The graph takes an image batch of any height and width (at least ``MIN_SIZE_PX``), pads it to a
multiple of 4, runs the generator and the attention, composites and crops back: what
``aggan translate --scale native`` computes, with nothing left for the caller but decoding and
encoding the image. Every file is run after writing (onnxruntime for ONNX, ``torch.export.load``
for pt2) on three sizes and compared with PyTorch; a file that differs by more than the tolerance
is deleted, never shipped. This matters: torch's legacy TorchScript exporter, traced on a
channels-last model, writes an ONNX file without error whose outputs are wrong (measured on a
trained 96 px model: translation off by 0.33, mask by 0.50 on a [0, 1] scale; refused in
``tests/test_export.py``), so the export runs on a contiguous float32 copy and the check stands
behind it.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aggan.domains import DIRECTIONS, Direction, source_domain
from aggan.errors import AgganError
from aggan.images import atomic_write, check_pattern, to_float, to_uint8
from aggan.networks import Translator, composite
from aggan.translate import MIN_SIZE_PX, MULTIPLE

Format = Literal["onnx", "pt2"]
InputKind = Literal["uint8", "float"]
FORMATS: tuple[Format, ...] = ("onnx", "pt2")
INPUT_KINDS: tuple[InputKind, ...] = ("uint8", "float")
# A float graph may differ from PyTorch by float rounding only; a uint8 graph by one level where
# a value falls on a rounding boundary.
TOLERANCE = {"float": 1e-4, "uint8": 1.0}


class TranslationGraph(nn.Module):
    """image (N, 3, H, W) -> (translation (N, 3, H, W), mask (N, 1, H, W)) per direction.

    uint8 graphs take and return values 0..255 (the mask too); float graphs take and return
    values in [0, 1]. With several directions the outputs follow in that order.
    """

    def __init__(self, translator: Translator, directions: tuple[Direction, ...],
                 input_kind: InputKind, use_attention: bool = True) -> None:
        super().__init__()
        self.translator = translator
        self.directions = directions
        self.input_kind = input_kind
        self.use_attention = use_attention

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        height, width = images.shape[-2], images.shape[-1]
        scaled = to_float(images) if self.input_kind == "uint8" else images.float() * 2 - 1
        # Reflect padding, as translate's pad_to_multiple does for inputs of MIN_SIZE_PX or more.
        padded_height = (height + MULTIPLE - 1) // MULTIPLE * MULTIPLE
        padded_width = (width + MULTIPLE - 1) // MULTIPLE * MULTIPLE
        padded = F.pad(scaled, (0, padded_width - width, 0, padded_height - height),
                       mode="reflect")
        outputs: list[Tensor] = []
        for direction in self.directions:
            generated, mask = self.translator.parts(padded, direction, self.use_attention)
            # Cropped by a negative padding: a slice here makes torch.export assume that the
            # input needed padding (a guard that sizes already a multiple of 4 then fail).
            crop = (0, width - padded_width, 0, height - padded_height)
            generated, mask = F.pad(generated, crop), F.pad(mask, crop)
            translated = composite(mask, generated, scaled)
            # The uint8 conversion of translate_tensor, so that both round alike.
            if self.input_kind == "uint8":
                outputs += [to_uint8(translated), to_uint8(mask, value_range=(0.0, 1.0))]
            else:
                outputs += [(translated + 1) / 2, mask]
        return tuple(outputs)


def output_names(directions: tuple[Direction, ...]) -> list[str]:
    if len(directions) == 1:
        return ["translation", "mask"]
    return [f"{kind}_{direction}" for direction in directions for kind in ("translation", "mask")]


def check_sizes(size_px: int) -> list[tuple[int, int]]:
    """The three sizes every exported file is checked on: square, non-square, odd."""
    side = max(size_px, MIN_SIZE_PX)
    return [(side, side), (side, side + side // 2), (side + 1, side + side // 3 + 2)]


def check_images(size: tuple[int, int], input_kind: InputKind, batch: int = 2) -> Tensor:
    """The seeded check pattern as the graph takes it (uint8 or [0, 1])."""
    uint8 = check_pattern(size, batch)
    return uint8 if input_kind == "uint8" else uint8.float() / 255


def _dynamic_shapes() -> dict[str, dict[int, object]]:
    # AUTO, not named ranges: the padding to a multiple of 4 and the networks' "same" padding
    # give guards that torch.export cannot prove for a declared range, though they hold for
    # every size; the sizes checked after writing include odd ones.
    return {"images": {0: torch.export.Dim.AUTO, 2: torch.export.Dim.AUTO,
                       3: torch.export.Dim.AUTO}}


def write_graph(graph: TranslationGraph, example: Tensor, fmt: Format, path: Path,
                metadata: dict[str, str]) -> None:
    """Writes ``graph`` to ``path``: ONNX through the dynamo exporter, or a pt2 archive."""
    if fmt == "pt2":
        program = torch.export.export(graph, (example,), dynamic_shapes=_dynamic_shapes())
        torch.export.save(program, path, extra_files={"aggan.json": json.dumps(metadata)})
        return
    try:
        import onnx
    except ImportError:
        raise AgganError("--format onnx needs onnx, onnxscript and onnxruntime: pip install "
                         "'aggan[export]'") from None
    program = torch.onnx.export(graph, (example,), dynamo=True, dynamic_shapes=_dynamic_shapes(),
                                input_names=["images"], output_names=output_names(graph.directions),
                                verbose=False)
    model = program.model_proto
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save_model(model, str(path))


def _runner(fmt: Format, path: Path) -> Callable[[Tensor], tuple[Tensor, ...]]:
    """Runs the written file: onnxruntime for ONNX, the loaded program for pt2."""
    if fmt == "pt2":
        module = torch.export.load(path).module()
        return lambda images: tuple(module(images))
    try:
        import onnxruntime
    except ImportError:
        raise AgganError("--format onnx checks the file with onnxruntime: pip install "
                         "'aggan[export]'") from None
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda images: tuple(torch.from_numpy(output)
                                for output in session.run(None, {name: images.numpy()}))


def max_differences(graph: TranslationGraph, fmt: Format, path: Path,
                    sizes: list[tuple[int, int]]) -> dict[str, float]:
    """The largest absolute difference between the file's outputs and PyTorch's, per size."""
    run = _runner(fmt, path)
    differences = {}
    for size in sizes:
        images = check_images(size, graph.input_kind)
        with torch.inference_mode():
            expected = graph(images)
        with torch.no_grad():
            actual = run(images)
        differences[f"{size[0]}x{size[1]}"] = max(
            float((got.double() - want.double()).abs().max())
            for got, want in zip(actual, expected, strict=True))
    return differences


@dataclass(frozen=True)
class ExportReport:
    path: Path
    size_bytes: int
    max_difference: dict[str, float]  # per checked size
    tolerance: float


def export_graph(translator: Translator, out: Path, *, fmt: Format,
                 directions: tuple[Direction, ...], input_kind: InputKind, size_px: int,
                 use_attention: bool = True, metadata: dict[str, str] | None = None
                 ) -> ExportReport:
    """Writes the translation graph to ``out`` atomically, after checking that the file's
    outputs match PyTorch's on three sizes; a file that does not match is not kept."""
    if fmt not in FORMATS:
        raise AgganError(f"--format: expected one of {', '.join(FORMATS)}, got {fmt!r}")
    if input_kind not in INPUT_KINDS:
        raise AgganError(f"--input-type: expected uint8 or float, got {input_kind!r}")
    if out.is_dir():
        raise AgganError(f"--out {out} is a folder; give a file name, e.g. {out / 'model.onnx'}")
    # A contiguous float32 copy on the CPU: the exporters see no channels-last layout (see the
    # module's docstring) and the caller's model is left as it was.
    model = copy.deepcopy(translator).float().cpu().to(memory_format=torch.contiguous_format)
    for direction in set(DIRECTIONS) - set(directions):  # the file holds only what it runs
        del model.generators[direction]
        if model.attention is not None:
            del model.attention[source_domain(direction)]
    graph = TranslationGraph(model, directions, input_kind, use_attention).eval()
    sizes = check_sizes(size_px)
    info = {"format": "aggan-translation-graph", "directions": ",".join(directions),
            "input": input_kind, "outputs": ",".join(output_names(directions)),
            "training_size_px": str(size_px), **(metadata or {})}
    tolerance = TOLERANCE[input_kind]
    differences: dict[str, float] = {}

    def write_and_check(temp: Path) -> None:
        write_graph(graph, check_images(sizes[-1], input_kind), fmt, temp, info)
        differences.update(max_differences(graph, fmt, temp, sizes))
        if max(differences.values()) > tolerance:
            worst = max(differences, key=differences.__getitem__)
            raise AgganError(f"the exported {fmt} graph differs from PyTorch by "
                             f"{differences[worst]:.3g} at {worst} (tolerance {tolerance:g}); "
                             f"{out} was not written")

    atomic_write(out, write_and_check)
    return ExportReport(out, out.stat().st_size, differences, tolerance)
