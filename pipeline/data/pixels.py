"""The one conversion from stored pixels to the float images every model sees.

uint8 images (JPEG/PNG inputs, the synthetic sets) hold 0..255 and become ``x / 255`` in [0, 1];
float images (FITS-derived float16 stores, scientific stacks) are already in [0, 1] and only
become float32.
"""

from __future__ import annotations

import numpy as np
import torch
from numpy.typing import NDArray

__all__ = ["to_unit_float"]


def to_unit_float(images: NDArray | torch.Tensor) -> torch.Tensor:
    """Images of any shape, uint8 or float, as a float32 tensor in [0, 1] on the same device."""
    t = images if isinstance(images, torch.Tensor) else torch.as_tensor(np.asarray(images))
    return t.float() / 255.0 if t.dtype == torch.uint8 else t.float()
