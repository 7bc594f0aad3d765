"""The store's images from the staged blocks: the final arrays laid out, then filled one output shard per task.

:func:`layout_store` (serial) creates the final arrays with exactly N objects from the markers'
good counts.  :func:`write_store_shard` (one task per output shard) copies the shard's objects
from the (at most a few) staging blocks that cover them into ``images`` as one whole-shard
write, then the shard's done marker.  Copying a staged 64x64x3 cutout costs tens of
microseconds (memory map + zstd), a few per cent of its decode.  Every writer owns whole shards:
zarr-python loses rows when two processes write into one shard.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from catalogs import atomic
from pipeline.data.ingest.work import BOOKKEEPING, IngestPlan, block_paths, shard_marker
from pipeline.data.store_write import create_images_array, store_marks
from pipeline.errors import BadInputError

__all__ = ["layout_store", "write_store_shard"]


def _block_counts(plan: IngestPlan) -> list[int]:
    counts = []
    for k in range(plan.n_blocks):
        _, marker = block_paths(plan.work, k)
        if not marker.is_file():
            raise BadInputError(
                f"{plan.work}: block {k} has not been decoded yet (run decode_block for every block first)"
            )
        counts.append(int(pq.read_table(marker, columns=["reason"]).column("reason").null_count))
    return counts


def layout_store(plan: IngestPlan | Path) -> int:
    """Create the final arrays once every block is decoded; returns the number of output shards.

    Idempotent: a second call reuses ``layout.json``.
    """
    import zarr

    plan = IngestPlan.load(plan)
    layout_file = plan.work / BOOKKEEPING / "layout.json"
    if layout_file.is_file():
        layout = json.loads(layout_file.read_text())
    else:
        counts = _block_counts(plan)
        layout = {"block_good": counts, "n_good": int(sum(counts))}
        sp = plan.spec
        group = zarr.open_group(str(plan.work), mode="a", zarr_format=3)  # "w" would delete _ingest/
        group.attrs.update(store_marks())
        create_images_array(group, layout["n_good"], sp["channels"], sp["size"], sp["dtype"],
                            shard_size=plan.shard_size, chunk_size=plan.chunk_size,
                            overwrite=True)  # a run killed between this and layout.json
        atomic.write_json(layout_file, layout)
    return math.ceil(layout["n_good"] / plan.shard_size)


def write_store_shard(plan: IngestPlan | Path, shard_index: int) -> bool:
    """Copy output shard ``shard_index`` (store objects ``[j * shard_size, (j + 1) * shard_size)``) from staging.

    One whole-shard write, then its done marker.  Returns False when it was already done.
    """
    import zarr

    plan = IngestPlan.load(plan)
    j = int(shard_index)
    done = shard_marker(plan.work, j)
    if done.is_file():
        return False
    layout = json.loads((plan.work / BOOKKEEPING / "layout.json").read_text())
    starts = np.concatenate([[0], np.cumsum(layout["block_good"])])  # first store index of each block
    a, b = j * plan.shard_size, min((j + 1) * plan.shard_size, layout["n_good"])
    parts = []
    first = int(np.searchsorted(starts, a, side="right") - 1)
    for k in range(first, plan.n_blocks):
        if starts[k] >= b:
            break
        lo, hi = max(a, starts[k]), min(b, starts[k + 1])
        if hi <= lo:
            continue
        staged = np.load(block_paths(plan.work, k)[0], mmap_mode="r")
        parts.append(np.asarray(staged[lo - starts[k] : hi - starts[k]]))
    data = np.concatenate(parts) if parts else None
    if data is not None:
        # All of the shard's inner chunks in one codec batch, encoded in this thread: each
        # worker is one process with one thread, and zarr's default (batches of one chunk
        # handed to a thread pool) spends more on scheduling than on zstd here.
        chunks_per_shard = plan.shard_size // plan.chunk_size
        with zarr.config.set({"codec_pipeline.batch_size": chunks_per_shard, "threading.max_workers": 1}):
            arr = zarr.open_array(str(plan.work / "images"), mode="r+")
            arr[a:b] = data
    atomic.write_bytes(done, b"")
    return True
