"""A dataset's whole image array held as one tensor on the training device, batched by index.

A GPU trained from a ``DataLoader`` waits on host reads, collation and host-to-device copies
every step; 314,000 cutouts of 3 x 64 x 64 uint8 are 3.9 GB, a few per cent of a large GPU's
memory.  :class:`DeviceImages` copies the stored pixels (uint8, or float16 for FITS-derived
stores) to the device once, in store order, and a batch is then one ``index_select`` and one
conversion to float (:func:`pipeline.data.pixels.to_unit_float`) on the device.

Same batches as the DataLoader path: :meth:`DeviceImages.batches` takes the same sampler
positions, yields the same ``(images, keys)`` pairs (keys: store indices for a store, positions
for an in-memory dataset) and draws the one number from torch's global generator that a
DataLoader iterator draws when it starts, so the random stream (and with it a whole CPU run)
is the same either way.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from pipeline.data.pixels import to_unit_float

__all__ = ["DeviceImages", "image_bytes", "use_data_on_device", "FREE_MEMORY_FRACTION"]

#: ``auto`` holds the images on a GPU when they take at most this fraction of its free memory
#: (the rest is left for activations, the optimiser and the allocator's slack).
FREE_MEMORY_FRACTION = 0.5


def _source(dataset: Dataset) -> tuple[str, object] | None:
    """How to read ``dataset``'s stored pixels in bulk, or None when it cannot be done."""
    from pipeline.data.dataset import StoreImageDataset
    from pipeline.data.memory import ArrayDataset

    if isinstance(dataset, StoreImageDataset):
        return "store", dataset
    if isinstance(dataset, ArrayDataset):
        return "array", dataset
    return None


def image_bytes(dataset: Dataset) -> int | None:
    """Bytes the dataset's stored pixels take (N x C x H x W x itemsize), or None if unsupported."""
    src = _source(dataset)
    if src is None:
        return None
    kind, ds = src
    if kind == "array":
        return int(ds.images.numel() * ds.images.element_size())
    store = ds.store
    c, s = store.info.channels, store.info.size
    return int(len(ds) * c * s * s * np.dtype(store.info.dtype).itemsize)


def use_data_on_device(choice: bool | str, dataset: Dataset, device: torch.device) -> tuple[bool, str]:
    """Whether to hold ``dataset`` on ``device`` for ``train.data_on_device`` = ``choice``, and why.

    ``False``: never.  ``True``: whenever the dataset can be read in bulk (a store or an in-memory
    array; on CPU too, where it is a tensor in host memory).  ``"auto"``: on CUDA only, when the
    pixels take at most :data:`FREE_MEMORY_FRACTION` of the device's free memory.
    """
    if choice is False:
        return False, "train.data_on_device is false"
    nbytes = image_bytes(dataset)
    if nbytes is None:
        return False, f"a {type(dataset).__name__} cannot be read in bulk"
    if choice is True:
        return True, f"train.data_on_device is true ({_size(nbytes)})"
    if device.type != "cuda":
        return False, "auto holds images on a GPU only"
    free, _total = torch.cuda.mem_get_info(device)
    if nbytes > FREE_MEMORY_FRACTION * free:
        return False, f"{_size(nbytes)} of images exceed {FREE_MEMORY_FRACTION:.0%} of {_size(free)} free"
    return True, f"{_size(nbytes)} of images, {_size(free)} free on the device"


def _size(nbytes: int) -> str:
    return f"{nbytes / 1e9:.2f} GB" if nbytes >= 1e8 else f"{nbytes / 1e6:.1f} MB"


class DeviceImages:
    """Stored pixels (N, C, H, W) on ``device`` with each position's key (store index or position)."""

    def __init__(self, images: torch.Tensor, keys: torch.Tensor) -> None:
        if images.dim() != 4 or keys.shape != (images.shape[0],):
            raise ValueError(f"images must be (N, C, H, W) with one key each, got {tuple(images.shape)}, "
                             f"{tuple(keys.shape)}")
        self.images = images
        self.keys = keys

    @classmethod
    def from_dataset(cls, dataset: Dataset, device: torch.device, *, block: int = 8192) -> "DeviceImages":
        """Copy ``dataset``'s stored pixels to ``device`` (a store block by block: host memory holds one block)."""
        src = _source(dataset)
        if src is None:
            raise ValueError(f"a {type(dataset).__name__} cannot be held on the device")
        kind, ds = src
        if kind == "array":
            images = ds.images.to(device)
            return cls(images, torch.arange(len(ds), device=device))
        store, idx = ds.store, ds.indices
        c, s = store.info.channels, store.info.size
        images = torch.empty((len(idx), c, s, s), dtype=getattr(torch, store.info.dtype), device=device)
        contiguous = bool(idx.size) and np.array_equal(idx, np.arange(idx[0], idx[0] + idx.size))
        for a in range(0, len(idx), block):
            b = min(a + block, len(idx))
            part = (store.read_images(int(idx[a]), int(idx[b - 1]) + 1) if contiguous
                    else store.read_indices(idx[a:b]))
            images[a:b].copy_(torch.from_numpy(part))
        return cls(images, torch.from_numpy(idx.copy()).to(device))

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def device(self) -> torch.device:
        return self.images.device

    def batch(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Float32 images (B, C, H, W) in [0, 1] and keys (B,) at ``positions`` (a tensor on the device)."""
        return to_unit_float(self.images.index_select(0, positions)), self.keys.index_select(0, positions)

    def batches(self, positions: Sequence[int], batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Consecutive whole batches of ``positions`` (a sampler's order), as a ``DataLoader`` with
        ``drop_last=True`` over the same sampler would give them."""
        torch.empty((), dtype=torch.int64).random_()  # the draw a DataLoader iterator makes for its workers' seed
        order = torch.as_tensor(list(positions), dtype=torch.int64).to(self.device)
        usable = (len(order) // batch_size) * batch_size
        for a in range(0, usable, batch_size):
            yield self.batch(order[a:a + batch_size])
