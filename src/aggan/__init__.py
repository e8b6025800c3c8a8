"""aggan: unsupervised attention-guided image-to-image translation (Mejjati et al., NeurIPS 2018).

Library entry points: :class:`aggan.Pipeline` (``Pipeline.from_pretrained(...)`` then call it
on a path, a PIL image or an array), :class:`aggan.Translator` (the networks),
:func:`aggan.train.train`, :class:`aggan.config.RunConfig`; the command line is ``aggan``
(:mod:`aggan.cli`).
"""

from typing import Any

from aggan.version import __version__

__all__ = ["Pipeline", "Translator", "__version__"]


def __getattr__(name: str) -> Any:
    # Imported on first use: the command line starts without loading torch.
    if name == "Translator":
        from aggan.networks import Translator

        return Translator
    if name == "Pipeline":
        from aggan.pipeline import Pipeline

        return Pipeline
    raise AttributeError(f"module 'aggan' has no attribute {name!r}")
