"""History of generated images, with their masks, shown to the discriminators (CycleGAN's pool)."""

from __future__ import annotations

import torch
from torch import Tensor


class HistoryPool:
    """Keeps up to ``capacity`` past (image, mask) pairs.

    Each queried sample is returned as is while the pool fills; once full, with probability 1/2 it
    is swapped for a stored one, which is returned instead. Randomness comes from the pool's own
    generator, saved in :meth:`state_dict`, so resume is exact.
    """

    def __init__(self, capacity: int, seed: int) -> None:
        self.capacity = capacity
        self.generator = torch.Generator().manual_seed(seed)
        self.images: list[Tensor] = []
        self.masks: list[Tensor] = []

    def query(self, images: Tensor, masks: Tensor) -> tuple[Tensor, Tensor]:
        """(N, 3, H, W) images and (N, 1, H, W) masks in; the same shapes out, detached."""
        if self.capacity == 0:
            return images.detach(), masks.detach()
        out_images, out_masks = [], []
        for image, mask in zip(images.detach(), masks.detach(), strict=True):
            if len(self.images) < self.capacity:
                self.images.append(image.clone())
                self.masks.append(mask.clone())
                out_images.append(image)
                out_masks.append(mask)
            elif torch.rand((), generator=self.generator) < 0.5:
                slot = int(torch.randint(self.capacity, (), generator=self.generator))
                out_images.append(self.images[slot])
                out_masks.append(self.masks[slot])
                self.images[slot] = image.clone()
                self.masks[slot] = mask.clone()
            else:
                out_images.append(image)
                out_masks.append(mask)
        return torch.stack(out_images), torch.stack(out_masks)

    def state_dict(self) -> dict[str, Tensor]:
        state = {"generator": self.generator.get_state()}
        if self.images:
            state["images"] = torch.stack(self.images).cpu()
            state["masks"] = torch.stack(self.masks).cpu()
        return state

    def load_state_dict(self, state: dict[str, Tensor], device: torch.device) -> None:
        self.generator.set_state(state["generator"])
        self.images = list(state["images"].to(device)) if "images" in state else []
        self.masks = list(state["masks"].to(device)) if "masks" in state else []
