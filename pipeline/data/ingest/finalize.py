"""The end of an ingest: the 1-D arrays, the rejects table and the attributes, then the store moved into place.

:func:`finalize_ingest` (serial) writes the 1-D arrays, the rejects table beside the store, the
attributes and ``complete: true`` last (:func:`pipeline.data.store_write.mark_complete`); then the
staging is removed and the work directory ``<out>.partial`` is renamed to ``<out>``, replacing an
existing store only when ``--overwrite`` may (:mod:`catalogs.atomic`).
"""

from __future__ import annotations

import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from catalogs import atomic
from pipeline import __version__
from pipeline.data.ingest.shards import layout_store
from pipeline.data.ingest.work import BOOKKEEPING, IngestPlan, block_paths, read_marker, shard_marker
from pipeline.data.readers import FITS_STRETCH, REJECT_REASONS
from pipeline.data.store import STORE_FORMAT, STORE_KIND, ZSTD_LEVEL, rejects_path_for, write_rejects_csv
from pipeline.data.store_write import mark_complete, write_1d
from pipeline.errors import BadInputError

__all__ = ["IngestSummary", "finalize_ingest"]


@dataclass(frozen=True)
class IngestSummary:
    """What an ingest did.  ``reject_fraction`` = rejected / input rows."""

    store: Path
    rejects_table: Path
    n_input: int
    n_stored: int
    n_rejected: int
    rejected_by_reason: dict[str, int]
    max_reject_fraction: float
    blocks_resumed: int
    shards_resumed: int
    elapsed_s: float

    @property
    def reject_fraction(self) -> float:
        return self.n_rejected / self.n_input if self.n_input else 0.0

    @property
    def too_many_rejects(self) -> bool:
        return self.reject_fraction > self.max_reject_fraction

    def format(self) -> str:
        """A few human-readable lines."""
        lines = [
            f"store          {self.store}",
            f"input rows     {self.n_input}",
            f"stored         {self.n_stored}",
            f"rejected       {self.n_rejected} ({100 * self.reject_fraction:.2f} %, limit {100 * self.max_reject_fraction:.2f} %)",
        ]
        lines += [f"  {reason:<22} {n}" for reason, n in sorted(self.rejected_by_reason.items())]
        lines += [
            f"rejects table  {self.rejects_table}",
            f"resumed        {self.blocks_resumed} blocks, {self.shards_resumed} shards",
        ]
        lines.append(f"elapsed        {self.elapsed_s:.1f} s")
        return "\n".join(lines)


def _store_attrs(plan: IngestPlan, counts: dict[str, Any], rejects_path: Path) -> dict[str, Any]:
    """The store's descriptive attributes: the catalogue, the preprocessing, the layout, the counts and the verdict."""
    sp = plan.spec
    fraction = counts["rejected"] / counts["input_rows"] if counts["input_rows"] else 0.0
    passed = fraction <= sp["max_reject_fraction"]
    return {
        "galaxy_codae_store": STORE_FORMAT,
        "software_version": __version__,
        "catalog": {
            "path": sp["catalog"],
            "sha256": sp["catalog_sha256"],
            "columns": sp["columns"],
            "extra_columns": sp["extra_columns"],
            "skipped_columns": sp["skipped_columns"],
        },
        "images_root": sp["images_root"],
        "preprocessing": {
            "size": sp["size"],
            "crop_size": sp["crop_size"],
            "crop_start_x": sp["crop_start_x"],
            "crop_start_y": sp["crop_start_y"],
            "source_width": sp["source_width"],
            "source_height": sp["source_height"],
            "source_format": "fits" if sp["kind"] == "float" else "jpeg/png",
            "channels": sp["channels"],
            "dtype": sp["dtype"],
            "flipped": sp["flipped"],
            "frame": "display (row 0 = top as displayed); FITS rows reversed when flipped",
            "crop": "square centre crop, pipeline.conventions.centre_crop_box",
            "resample": "box: area average (PIL Image.resize BOX), crop and resize in one step",
            "jpeg_draft": True,
            "fits_stretch": FITS_STRETCH if sp["kind"] == "float" else None,
            "value_range": [0.0, 1.0] if sp["kind"] == "float" else [0, 255],
        },
        "layout": {
            "shard_size": plan.shard_size,
            "chunk_size": plan.chunk_size,
            "compressor": f"zstd level {ZSTD_LEVEL}",
            "order": "input catalogue order, rejected rows removed",
        },
        "counts": counts,
        "max_reject_fraction": sp["max_reject_fraction"],
        "rejects_table": rejects_path.name,
        # usable by train and infer only when the rejects stayed within the limit
        "passed": passed,
        "failure": None
        if passed
        else (
            f"{counts['rejected']} of {counts['input_rows']} rows rejected "
            f"({100 * fraction:.2f} % > {100 * sp['max_reject_fraction']:.2f} %)"
        ),
    }


def finalize_ingest(plan: IngestPlan | Path, *, elapsed_s: float = 0.0) -> IngestSummary:
    """Write the 1-D arrays, the rejects table and the attributes; mark complete; move into place.

    Needs every block decoded and every output shard written.  Returns the summary; the caller
    decides what a reject fraction above the limit means (the CLI exits 2).
    """
    import zarr

    plan = IngestPlan.load(plan)
    sp, work, out = plan.spec, plan.work, plan.out
    rejects_path = rejects_path_for(out)
    group = zarr.open_group(str(work), mode="r+")
    n_shards = layout_store(plan)
    if not group.attrs.get("complete"):
        missing = [j for j in range(n_shards) if not shard_marker(work, j).is_file()]
        if missing:
            raise BadInputError(
                f"{work}: output shards {missing[:5]} are not written yet (run write_store_shard first)"
            )
        outcome = pd.concat([read_marker(block_paths(work, k)[1]) for k in range(plan.n_blocks)], ignore_index=True)
        table = pq.read_table(work / BOOKKEEPING / "plan.parquet").to_pandas()
        table = table.set_index("row").loc[outcome["row"].to_numpy()]
        reason = outcome["reason"].to_numpy(dtype=object)
        good = pd.isna(reason)
        kept = table[good]
        chunk = max(plan.shard_size, 1 << 16)
        write_1d(group, "id", kept["id"].to_numpy(dtype=object), chunk)
        write_1d(group, "ra", kept["ra"].to_numpy(np.float64), chunk)
        write_1d(group, "dec", kept["dec"].to_numpy(np.float64), chunk)
        write_1d(group, "source_path", kept["path"].to_numpy(dtype=object), chunk)
        write_1d(group, "row", kept.index.to_numpy(np.int64), chunk)
        if sp["extra_columns"]:
            cols = group.require_group("columns")
            for name in sp["extra_columns"]:
                write_1d(cols, name, kept[f"x_{name}"].to_numpy(), chunk)

        rej = table[~good]
        rejects = pd.DataFrame(
            {
                "row": rej.index.to_numpy(np.int64),
                "id": rej["id"].to_numpy(dtype=object),
                "path": rej["path"].to_numpy(dtype=object),
                "reason": reason[~good],
                "detail": outcome["detail"].to_numpy(dtype=object)[~good],
            }
        )
        write_rejects_csv(rejects, rejects_path)
        by_reason = {r: int(n) for r, n in Counter(rejects["reason"]).items()}
        counts = {
            "input_rows": int(len(table)),
            "stored": int(good.sum()),
            "rejected": int((~good).sum()),
            "rejected_by_reason": {r: by_reason.get(r, 0) for r in REJECT_REASONS},
        }
        mark_complete(group, _store_attrs(plan, counts, rejects_path))  # the attributes, then complete: true last
    attrs = dict(group.attrs)
    # complete and in place; an existing store goes only when --overwrite may replace it (plan_ingest
    # checked it; checked again here because the store could have changed in between)
    inputs = (sp["catalog"], sp["images_root"])
    try:
        atomic.replace_dir(
            work, out, may_replace=lambda p: atomic.overwrite_refusal(p, kinds=(STORE_KIND,), inputs=inputs)
        )
    except FileExistsError as e:
        raise BadInputError(f"finished store left at {work}: {e}") from None
    shutil.rmtree(out / BOOKKEEPING, ignore_errors=True)  # the bookkeeping is only disk space now
    c = attrs["counts"]
    return IngestSummary(
        store=out,
        rejects_table=rejects_path,
        n_input=c["input_rows"],
        n_stored=c["stored"],
        n_rejected=c["rejected"],
        rejected_by_reason={r: n for r, n in c["rejected_by_reason"].items() if n},
        max_reject_fraction=float(attrs["max_reject_fraction"]),
        blocks_resumed=0,
        shards_resumed=0,
        elapsed_s=elapsed_s,
    )
