"""``aggan demo``: a web page to try a model without writing code (Gradio, an optional extra).

Upload a photo or pick an example, choose the direction, and see the translation, the attention
mask, the mask over the photo and a before/after slider; download the result at the photo's full
resolution (the composite of ``translate --scale train``). Everything runs locally, offline. A bad
upload (not an image, too many pixels, a truncated file) is a message on the page; the server
keeps serving.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import torch
from PIL import Image, UnidentifiedImageError

from aggan.domains import DIRECTIONS, Direction
from aggan.errors import AgganError
from aggan.images import list_images, mask_overlay, read_image, write_png
from aggan.pipeline import Pipeline

MAX_MEGAPIXELS = 24.0  # a 24 MP photo takes about 2 GB and a few seconds here; more is refused
EXAMPLES_PER_DOMAIN = 3


def domain_names(data_root: str) -> tuple[str, str]:
    """("horse", "zebra") from a data folder named horse2zebra; ("A", "B") otherwise."""
    parts = Path(data_root).name.split("2")
    return (parts[0], parts[1]) if len(parts) == 2 and all(parts) else ("A", "B")


def direction_label(pipeline: Pipeline, direction: Direction) -> str:
    a, b = domain_names(pipeline.config.data.root)
    return f"{a} → {b}" if direction == "a2b" else f"{b} → {a}"


def read_upload(path: str | Path | None) -> torch.Tensor:
    """The uploaded photo as uint8 (3, H, W), or an AgganError that says what is wrong."""
    if path is None:
        raise AgganError("upload a photo or pick an example first")
    name = Path(path).name
    try:
        with Image.open(path) as opened:
            width, height = opened.size
    except (UnidentifiedImageError, OSError, ValueError):
        raise AgganError(f"{name} is not an image this demo can read (JPEG, PNG, WebP, ...)"
                         ) from None
    except Image.DecompressionBombError:
        width, height = 10**6, 10**6  # Pillow's own limit: far past ours
    megapixels = width * height / 1e6
    if megapixels > MAX_MEGAPIXELS:
        raise AgganError(f"{name} is {width} x {height} ({megapixels:.0f} megapixels); the demo "
                         f"takes up to {MAX_MEGAPIXELS:.0f}: resize it, or use aggan translate")
    try:
        return read_image(Path(path))
    except AgganError:
        raise AgganError(f"{name} is damaged or truncated and cannot be decoded") from None


def translate_upload(pipeline: Pipeline, path: str | Path | None, direction: Direction,
                     out_dir: Path) -> dict[str, Any]:
    """Translates one upload; the result is also written as a full-resolution PNG."""
    image = read_upload(path)
    translation, mask = pipeline.translate_tensors(image[None], direction)
    photo = image.permute(1, 2, 0).numpy()
    result = translation[0].permute(1, 2, 0).numpy()
    mask_2d = mask[0, 0].numpy()
    download = out_dir / f"{Path(str(path)).stem}_{direction}.png"
    write_png(translation[0], download)
    return {"photo": photo, "translation": result, "mask": mask_2d,
            "overlay": mask_overlay(image, mask[0]).permute(1, 2, 0).numpy(),
            "download": download,
            "mean_mask": float(mask_2d.mean() / 255)}


def example_rows(pipeline: Pipeline, folder: Path | None = None) -> list[list[str]]:
    """[photo, direction label] rows: images in ``folder``, or the model's test photos where
    its training data is on this machine (testA for a2b, testB for b2a)."""
    if folder is not None:
        return [[str(p), direction_label(pipeline, "a2b")] for p in list_images(folder)]
    rows = []
    data_root = pipeline.model.data_root
    for direction, split in (("a2b", "testA"), ("b2a", "testB")):
        if data_root is not None and (data_root / split).is_dir():
            rows += [[str(p), direction_label(pipeline, direction)]
                     for p in list_images(data_root / split)[:EXAMPLES_PER_DOMAIN]]
    return rows


def build_demo(source: str | Path, examples: Path | None = None) -> Any:
    """The Gradio Blocks app for the model at ``source`` (see ``loading.load_model``)."""
    try:
        import gradio as gr
    except ImportError:
        raise AgganError("aggan demo needs Gradio: pip install 'aggan[demo]'") from None
    pipeline = Pipeline.from_pretrained(source, device="cpu")
    labels = {direction_label(pipeline, d): d for d in DIRECTIONS}
    results = Path(tempfile.mkdtemp(prefix="aggan-demo-"))
    nothing = (None, None, None, None, None)

    def run(path: str | None, label: str) -> tuple[Any, ...]:
        try:
            out = translate_upload(pipeline, path, labels[label], results)
        except AgganError as error:
            return (*nothing, f"**Error:** {error}")
        except Exception as error:  # the page reports it; the server keeps serving
            return (*nothing, f"**Error:** the translation failed ({type(error).__name__}: "
                              f"{error})")
        height, width = out["translation"].shape[:2]
        return (out["translation"], out["mask"], out["overlay"], (out["photo"],
                out["translation"]), str(out["download"]),
                f"Translated {label}, {width} x {height} px; the mask covers "
                f"{out['mean_mask']:.0%} of the photo.")

    with gr.Blocks(title="aggan: attention-guided translation") as demo:
        domains = " ↔ ".join(domain_names(pipeline.config.data.root))
        gr.Markdown(f"# aggan: {domains}\nUpload a photo: only the region "
                    "the attention picks (the mask) is translated, the rest keeps its pixels.")
        with gr.Row():
            with gr.Column():
                photo = gr.File(label="Photo", elem_id="photo")
                direction = gr.Radio(list(labels), value=next(iter(labels)),
                                     label="Direction", elem_id="direction")
                button = gr.Button("Translate", variant="primary", elem_id="translate")
                status = gr.Markdown(elem_id="status")
                rows = example_rows(pipeline, examples)
                if rows:
                    gr.Examples(rows, [photo, direction], label="Examples")
            with gr.Column():
                translation = gr.Image(label="Translation", elem_id="translation")
                download = gr.File(label="Download (full resolution)", elem_id="download")
        with gr.Row():
            mask = gr.Image(label="Attention mask", elem_id="mask")
            tinted = gr.Image(label="Mask over the photo", elem_id="overlay")
            slider = gr.ImageSlider(label="Before / after", elem_id="slider")
        button.click(run, [photo, direction], [translation, mask, tinted, slider, download,
                                                status])
    return demo
