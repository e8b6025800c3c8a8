"""aggan: unsupervised attention-guided image-to-image translation (Mejjati et al., NeurIPS 2018).

Library entry points: :class:`aggan.Pipeline` (``Pipeline.from_pretrained(...)`` then call it
on a path, a PIL image or an array), :class:`aggan.Translator` (the networks),
:func:`aggan.train.train`, :class:`aggan.config.RunConfig`; the command line is ``aggan``
(:mod:`aggan.cli`).
"""

from typing import Any

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # Imported on first use: the command line starts without loading torch.
    if name == "Translator":
        from aggan.networks import Translator

        return Translator
    if name == "Pipeline":
        from aggan.pipeline import Pipeline

        return Pipeline
    raise AttributeError(f"module 'aggan' has no attribute {name!r}")
