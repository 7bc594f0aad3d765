"""A torch ``Dataset`` over the store's images, for training and inference.

The store is opened lazily in each process that reads (each DataLoader worker opens its own
handle on first use; the dataset pickles without one).  Items are ``(image, index)``: a float32
tensor (C, H, W) in the display frame scaled to [0, 1] by :func:`pipeline.data.pixels.to_unit_float`
(uint8 / 255; FITS-derived float16 stores are already in [0, 1]) and the object's store index, so results are keyed back to ids through
``store.ids[index]``, never by position in a batch.

Throughput: the DataLoader calls :meth:`StoreImageDataset.__getitems__` with a whole batch, which
reads it with one orthogonal selection (each chunk read once).  :class:`ShardBlockSampler` yields a
shuffled order that visits one shard-sized block at a time, so a batch touches few chunks.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from pipeline.data.pixels import to_unit_float
from pipeline.data.store import Store, open_store

__all__ = ["StoreImageDataset", "ShardBlockSampler"]


class StoreImageDataset(Dataset):
    """Images of a store as ``(float32 tensor (C, H, W) in [0, 1], store index)``.

    ``indices``: the store indices this dataset covers, in order (default: all).
    """

    def __init__(self, path: Path | str, indices: Sequence[int] | np.ndarray | None = None) -> None:
        self.path = Path(path)
        store = open_store(self.path)  # fail early, in the main process, with one clear line
        n = len(store)
        self.indices = np.arange(n, dtype=np.int64) if indices is None else np.asarray(indices, dtype=np.int64)
        if self.indices.size and (self.indices.min() < 0 or self.indices.max() >= n):
            raise IndexError(f"indices out of range for store {self.path} of {n} objects")
        self.shard_size = store.info.shard_size
        self._store: Store | None = None
        self._pid = -1

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_store"], state["_pid"] = None, -1  # each process opens its own handle
        return state

    @property
    def store(self) -> Store:
        """This process's store handle, opened on first use."""
        if self._store is None or self._pid != os.getpid():
            self._store, self._pid = open_store(self.path), os.getpid()
        return self._store

    def __len__(self) -> int:
        return int(self.indices.size)

    def _to_tensor(self, a: np.ndarray) -> torch.Tensor:
        return to_unit_float(torch.from_numpy(a))

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        j = int(self.indices[i])
        img = self.store.read_images(j, j + 1)[0]  # (C, H, W)
        return self._to_tensor(img), j

    def __getitems__(self, items: Sequence[int]) -> list[tuple[torch.Tensor, int]]:
        """A whole batch in one read (used by ``torch.utils.data.DataLoader``)."""
        idx = self.indices[np.asarray(items, dtype=np.int64)]
        batch = self._to_tensor(self.store.read_indices(idx))  # (B, C, H, W)
        return [(batch[b], int(j)) for b, j in enumerate(idx)]


class ShardBlockSampler(Sampler[int]):
    """A shuffled order that visits the dataset one block of ``block_size`` positions at a time.

    Blocks come in random order and positions in random order inside each block; with
    ``block_size`` = the store's shard size and a dataset over the whole store, a batch then comes
    from one or two shards.  A new permutation each epoch (``seed + epoch``; call :meth:`set_epoch`).
    """

    def __init__(self, n: int, block_size: int, *, seed: int = 0) -> None:
        self.n, self.block_size, self.seed, self.epoch = int(n), int(block_size), int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng(self.seed + self.epoch)
        starts = np.arange(0, self.n, self.block_size)
        for a in rng.permutation(starts):
            yield from (int(i) for i in a + rng.permutation(min(self.block_size, self.n - a)))
