"""An in-memory image source with the same interface as the store's dataset.

Used for tests, synthetic benchmarks and the evaluation datasets (XYRCS, dSprites).
Items are ``(image, index)``: image float32 (C, H, W) in [0, 1].
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from pipeline.data.pixels import to_unit_float

__all__ = ["ArrayDataset"]


class ArrayDataset(Dataset):
    """Images (N, C, H, W) as uint8 (scaled by 1/255) or floats already in [0, 1]."""

    def __init__(self, images: np.ndarray | torch.Tensor):
        images = torch.as_tensor(np.asarray(images))
        if images.dim() != 4:
            raise ValueError(f"images must be (N, C, H, W), got shape {tuple(images.shape)}")
        self.images = images

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return to_unit_float(self.images[i]), int(i)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])  # type: ignore[return-value]
