"""The decode of an ingest: one block of catalogue rows to staged images and a marker of row outcomes.

:func:`decode_block` (one task per block) decodes, crops and resizes each cutout of the block (JPEG
draft mode: the DCT-domain 1/2-1/4-1/8 decode, see :mod:`pipeline.data.readers`), writes the good
images to a staging ``.npy`` file, then the block's marker (row, reason, detail).  This is where all
the time goes (about 1 ms per 424-pixel JPEG).  A cutout path is resolved (symbolic links
followed) before anything opens it; one that leads outside the image root, or cannot name a
regular file, is a rejected row, never a stop.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from catalogs import atomic
from pipeline.data.ingest.work import BOOKKEEPING, IngestPlan, block_paths, read_marker
from pipeline.data.readers import RejectedImage, read_cutout, resolve_in_root

__all__ = ["BlockResult", "decode_block"]


@dataclass(frozen=True)
class BlockResult:
    """Outcome of one decode task: catalogue rows seen, good cutouts staged, rejects by reason."""

    block: int
    n_rows: int
    n_good: int
    rejected: dict[str, int]
    skipped: bool  # True when the block was already done (resumed run)


def decode_block(plan: IngestPlan | Path, block: int) -> BlockResult:
    """Decode catalogue block ``block`` (rows ``[k * shard_size, (k + 1) * shard_size)``) to staging.

    Skips a block already marked done.  Writes ``blocks/<k>.npy`` (good images, (n_good, C, H, W))
    and then ``blocks/<k>.parquet`` (row, reason, detail for every row), both atomically.
    """
    plan = IngestPlan.load(plan)
    k = int(block)
    npy, marker = block_paths(plan.work, k)
    if marker.is_file():
        m = read_marker(marker)
        good = int(m["reason"].isna().sum())
        return BlockResult(k, len(m), good, dict(Counter(m["reason"].dropna())), skipped=True)

    plan_file = pq.ParquetFile(plan.work / BOOKKEEPING / "plan.parquet")
    rows = plan_file.read_row_group(k, columns=["row", "path", "plan_reason", "plan_detail"])
    crop, expect = plan.crop, plan.expect
    images_root = Path(plan.spec["images_root"])
    c, s = plan.spec["channels"], plan.spec["size"]
    out = np.empty((rows.num_rows, c, s, s), dtype=np.dtype(plan.spec["dtype"]))
    reasons: list[str | None] = rows.column("plan_reason").to_pylist()
    details: list[str | None] = rows.column("plan_detail").to_pylist()
    n_good = 0
    for i, rel in enumerate(rows.column("path").to_pylist()):
        if reasons[i] is not None:
            continue
        try:
            out[n_good] = read_cutout(resolve_in_root(images_root, rel), crop, expect=expect)
            n_good += 1
        except RejectedImage as e:
            reasons[i], details[i] = e.reason, str(e)
    with atomic.atomic_path(npy, suffix=".npy") as tmp:
        np.save(tmp, out[:n_good])
    table = pa.table(
        {
            "row": rows.column("row"),
            "reason": pa.array(reasons, type=pa.string()),
            "detail": pa.array(details, type=pa.string()),
        }
    )
    with atomic.atomic_path(marker) as tmp:  # the block is done once its marker exists
        pq.write_table(table, tmp)
    return BlockResult(k, rows.num_rows, n_good, dict(Counter(r for r in reasons if r is not None)), skipped=False)
