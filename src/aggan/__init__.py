"""aggan: unsupervised attention-guided image-to-image translation (Mejjati et al., NeurIPS 2018).

Library entry points: :func:`aggan.train.train`, :func:`aggan.translate.translate_paths`,
:class:`aggan.config.RunConfig`; the command line is ``aggan`` (:mod:`aggan.cli`).
"""

__version__ = "0.1.0"
