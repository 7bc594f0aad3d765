"""The plan of an ingest: inputs checked, catalogue rows judged, the survey's image shape fixed.

:func:`plan_ingest` (serial, catalogue only) reads and checks the catalogue, rejects rows with a
missing or duplicate id, an id the catalogue cannot hold or bad RA/Dec (:mod:`pipeline.data.ingest.rows`),
fixes the survey's image shape from the first readable cutouts, and writes ``plan.parquet`` with one
row group per block of ``shard_size`` catalogue rows and then ``plan.json``
(:class:`pipeline.data.ingest.work.IngestPlan`).  A rerun with the same inputs and options reuses it.
"""

from __future__ import annotations

import math
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from catalogs import atomic
from pipeline import __version__
from pipeline.data.ingest.rows import carried_columns, carry_column, check_rows
from pipeline.data.ingest.work import BOOKKEEPING, IngestPlan, work_dir_for
from pipeline.data.readers import CropSpec, ImageInfo, RejectedImage, probe_image, read_survey_catalog, resolve_in_root
from pipeline.data.store import STORE_KIND
from pipeline.data.store_write import store_marks
from pipeline.errors import BadInputError, ConfigError
from pipeline.hashing import file_sha256

__all__ = ["DEFAULT_CROP_FRACTION", "plan_ingest"]


#: Default centre crop as a fraction of the cutout side: 424 -> 256 pixels for Galaxy Zoo DECaLS,
#: whose cutouts are scaled to each galaxy's Petrosian radius so that it fills the central part.
#: Measured on 300 demo-survey galaxies (benchmarks/ingest.py --crop-study), a 256-pixel crop holds
#: a median 93 % of the background-subtracted light (10th percentile 83 %) against 89 % (78 %) for
#: 212 pixels and 96 % (89 %) for 320, leaves room for shifts and rotations, and is exactly 4 cutout pixels per store pixel
#: at size 64 (JPEG decoded at 1/4 in the DCT domain: 64 decoded pixels across the crop).
DEFAULT_CROP_FRACTION = 256 / 424


def _survey_shape(images: Path, paths: list[str], n_probe: int = 16) -> ImageInfo:
    """The most common image shape among the first ``n_probe`` readable cutouts under the resolved root ``images``."""
    seen: Counter[ImageInfo] = Counter()
    for rel in paths:
        try:
            info = probe_image(resolve_in_root(images, rel))
        except RejectedImage:
            continue
        seen[ImageInfo("any", info.kind, info.width, info.height, info.channels)] += 1
        if sum(seen.values()) >= n_probe:
            break
    if not seen:
        msg = f"no readable cutout in the first {len(paths)} usable catalogue rows under image root {images} (is it the right root?)"
        raise BadInputError(msg)
    return seen.most_common(1)[0][0]


def plan_ingest(
    catalog: Path,
    images: Path,
    out: Path,
    *,
    size: int = 64,
    crop: int | None = None,
    shard_size: int = 1024,
    chunk_size: int = 8,
    max_reject_fraction: float = 0.01,
    id_column: str = "iauname",
    path_column: str = "file_loc",
    ra_column: str = "ra",
    dec_column: str = "dec",
    overwrite: bool = False,
) -> IngestPlan:
    """Check the inputs and write (or, for a rerun with the same inputs, reuse) the plan.

    ``size``: output side in pixels; ``crop``: centre crop side in pixels of the original cutout
    (None: :data:`DEFAULT_CROP_FRACTION` of the shorter side).  Raises :class:`BadInputError` at once
    for a missing catalogue column or image root, :class:`ConfigError` for bad options.
    """
    catalog, images, out = Path(catalog), Path(images), Path(out)
    if size < 1 or shard_size < 1 or chunk_size < 1:
        raise ConfigError(f"size, shard size and chunk size must be positive (got {size}, {shard_size}, {chunk_size})")
    if shard_size % chunk_size:
        raise ConfigError(f"shard size {shard_size} must be a multiple of the chunk size {chunk_size}")
    if not 0.0 <= max_reject_fraction <= 1.0:
        raise ConfigError(f"max reject fraction {max_reject_fraction} must be in [0, 1]")
    if not images.is_dir():
        raise BadInputError(f"image root {images} does not exist or is not a directory")
    if not catalog.is_file():
        raise BadInputError(f"catalogue {catalog} does not exist")
    inputs = (catalog, images)
    atomic.check_output(out, overwrite=overwrite, kinds=(STORE_KIND,), inputs=inputs, error=BadInputError)
    sha = file_sha256(catalog)
    work = work_dir_for(out)
    columns = {"id": id_column, "path": path_column, "ra": ra_column, "dec": dec_column}
    # the work directory is deleted below (a stale or killed run): only when it is this project's
    if work.exists() or work.is_symlink():
        atomic.check_may_replace(work, kinds=(STORE_KIND,), inputs=inputs, error=BadInputError)

    if (work / BOOKKEEPING / "plan.json").is_file():
        old = IngestPlan.load(work)
        if overwrite:
            shutil.rmtree(work)
        elif all(
            old.spec.get(k) == v
            for k, v in (
                ("catalog_sha256", sha),
                ("images_root", str(images.resolve())),
                ("size", size),
                ("shard_size", shard_size),
                ("chunk_size", chunk_size),
                ("columns", columns),
                ("crop_arg", crop),
            )
        ):
            return old  # resume
        else:
            msg = (
                f"{work} holds an unfinished ingest of other inputs or options; rerun it unchanged, or pass --overwrite"
            )
            raise BadInputError(msg)
    elif work.exists():
        shutil.rmtree(work)  # killed before its plan was written: nothing to keep

    df = read_survey_catalog(catalog, keep_str=(id_column, path_column))
    missing = [c for c in (id_column, path_column, ra_column, dec_column) if c not in df.columns]
    if missing:
        have = ", ".join(map(str, df.columns[:12]))
        raise BadInputError(f"catalogue {catalog} has no column {', '.join(map(repr, missing))} (columns: {have})")
    n = len(df)
    rows = check_rows(df, id_column, path_column, ra_column, dec_column)
    ids, paths, reason = rows.ids, rows.paths, rows.reason

    shape = _survey_shape(images.resolve(), [p for p, r in zip(paths, reason) if r is None][:1000])
    side = min(shape.width, shape.height)
    crop_size = int(round(DEFAULT_CROP_FRACTION * side)) if crop is None else int(crop)
    if not 0 < crop_size <= side:
        raise ConfigError(f"crop {crop_size} must be between 1 and the cutout side {side} pixels")
    box = CropSpec.centred(shape.width, shape.height, crop_size, size)

    carried, skipped = carried_columns(df, (id_column, path_column, ra_column, dec_column))
    table = pa.table(
        {
            "row": pa.array(np.arange(n, dtype=np.int64)),
            "id": pa.array(ids, type=pa.string()),
            "path": pa.array(paths, type=pa.string()),
            "ra": pa.array(rows.ra),
            "dec": pa.array(rows.dec),
            "plan_reason": pa.array(reason, type=pa.string()),
            "plan_detail": pa.array(rows.detail, type=pa.string()),
            **{f"x_{c}": carry_column(df[c]) for c in carried},
        }
    )
    import zarr

    # the group's attributes mark the work directory (and then the store) as one --overwrite may clear
    group = zarr.open_group(str(work), mode="w", zarr_format=3)
    group.attrs.update(store_marks())
    (work / BOOKKEEPING / "blocks").mkdir(parents=True, exist_ok=True)
    (work / BOOKKEEPING / "stored").mkdir(parents=True, exist_ok=True)
    with atomic.atomic_path(work / BOOKKEEPING / "plan.parquet") as tmp:
        pq.write_table(table, tmp, row_group_size=shard_size)
    spec = {
        "out": str(out.resolve()),
        "catalog": str(catalog.resolve()),
        "catalog_sha256": sha,
        "images_root": str(images.resolve()),
        "columns": columns,
        "extra_columns": carried,
        "skipped_columns": skipped,
        "crop_arg": crop,
        "size": size,
        "crop_size": crop_size,
        "crop_start_x": box.start_x,
        "crop_start_y": box.start_y,
        "source_width": shape.width,
        "source_height": shape.height,
        "source_format": shape.format,
        "kind": shape.kind,
        "channels": shape.channels,
        "dtype": "float16" if shape.kind == "float" else "uint8",
        "flipped": shape.kind == "float",
        "shard_size": shard_size,
        "chunk_size": chunk_size,
        "max_reject_fraction": max_reject_fraction,
        "n_rows": n,
        "n_blocks": max(1, math.ceil(n / shard_size)) if n else 0,
        "software_version": __version__,
    }
    atomic.write_json(work / BOOKKEEPING / "plan.json", spec)  # the plan exists once this file does
    return IngestPlan.load(work)


