"""The work directory of an ingest: where its plan, staging blocks and markers lie, and the plan record.

An ingest into ``out`` works in ``<out>.partial`` (:func:`work_dir_for`), which becomes the store.
Its bookkeeping lies in ``<out>.partial/_ingest/`` (:data:`BOOKKEEPING`): ``plan.json`` (the
:class:`IngestPlan`), ``plan.parquet`` (the catalogue rows, one row group per block),
``blocks/<k>.npy`` and ``blocks/<k>.parquet`` (a decoded block's good images and its marker of
row outcomes: :func:`block_paths`), ``layout.json`` and ``stored/<j>.done`` (:func:`shard_marker`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from pipeline.data.readers import CropSpec, ImageInfo

__all__ = ["BOOKKEEPING", "IngestPlan", "work_dir_for", "block_paths", "shard_marker", "read_marker"]

BOOKKEEPING = "_ingest"  # bookkeeping directory inside the work directory


@dataclass(frozen=True)
class IngestPlan:
    """The plan of one ingest, as written to ``<out>.partial/_ingest/plan.json``.

    ``work``: the work directory (``<out>.partial``, renamed to ``out`` when complete);
    ``n_blocks``: decode tasks (blocks of ``shard_size`` catalogue rows); ``spec``: everything else.
    """

    work: Path
    out: Path
    n_rows: int
    n_blocks: int
    shard_size: int
    chunk_size: int
    spec: dict[str, Any] = field(repr=False)

    @property
    def crop(self) -> CropSpec:
        s = self.spec
        return CropSpec(s["crop_start_x"], s["crop_start_y"], s["crop_size"], s["size"])

    @property
    def expect(self) -> ImageInfo:
        s = self.spec
        return ImageInfo(s["source_format"], s["kind"], s["source_width"], s["source_height"], s["channels"])

    @classmethod
    def load(cls, work: Path | IngestPlan) -> IngestPlan:
        """The plan of a work directory (a path to it, or to its ``plan.json``), or the plan itself."""
        if isinstance(work, IngestPlan):
            return work
        work = Path(work)
        if work.name == "plan.json":
            work = work.parent.parent
        spec = json.loads((work / BOOKKEEPING / "plan.json").read_text())
        return cls(
            work, Path(spec["out"]), spec["n_rows"], spec["n_blocks"], spec["shard_size"], spec["chunk_size"], spec
        )


def work_dir_for(out: Path) -> Path:
    """The work directory of an ingest into ``out``: ``<out>.partial``."""
    return out.with_name(out.name + ".partial")


def block_paths(work: Path, block: int) -> tuple[Path, Path]:
    """The staged images (``.npy``) and the marker (``.parquet``: row, reason, detail) of decode block ``block``."""
    d = work / BOOKKEEPING / "blocks"
    return d / f"{block:06d}.npy", d / f"{block:06d}.parquet"


def shard_marker(work: Path, shard: int) -> Path:
    """The done marker of output shard ``shard``."""
    return work / BOOKKEEPING / "stored" / f"{shard:06d}.done"


def read_marker(marker: Path) -> pd.DataFrame:
    """A block's marker: one row per catalogue row (``row``, ``reason``, ``detail``; reason null when stored)."""
    return pq.read_table(marker).to_pandas()
