"""Survey ingest: a catalogue and its cutout files into the sharded Zarr store of :mod:`pipeline.data.store`.

How the work is cut (and why)
-----------------------------
The store must hold exactly the good objects, contiguous 0..N-1, and every writer must own whole
shards (zarr-python loses rows when two processes write into one shard).  Most rejects (truncated
or corrupt files, NaN pixels) are only known after decoding, so the output position of an object
is not known until every earlier cutout has been decoded.  The ingest therefore runs in two
parallel passes over fixed blocks, with a short serial step between them:

1. **plan** (:func:`plan_ingest`, serial, catalogue only): read and check the catalogue, reject rows
   with a missing or duplicate id, an id the catalogue cannot hold (the policy of
   :func:`catalogs.schema.id_problem`) or bad RA/Dec, fix the survey's image shape from the first
   readable cutouts, and write ``plan.parquet`` with one row group per block of ``shard_size``
   catalogue rows.
2. **decode** (:func:`decode_block`, one task per block): decode, crop and resize each cutout of the
   block (JPEG draft mode: the DCT-domain 1/2-1/4-1/8 decode, see :mod:`pipeline.data.readers`),
   write the good images to a staging ``.npy`` file, then the block's marker (row outcomes).
   This is where all the time goes (about 1 ms per 424-pixel JPEG).
3. **layout** (:func:`layout_store`, serial): from the markers' good counts, create the final
   arrays with exactly N objects.
4. **write** (:func:`write_store_shard`, one task per output shard): copy the shard's objects from
   the (at most a few) staging blocks that cover them into ``images`` as one whole-shard write,
   then the shard's done marker.  Copying a staged 64x64x3 cutout costs tens of microseconds
   (memory map + zstd), a few per cent of its decode.
5. **finalize** (:func:`finalize_ingest`, serial): the 1-D arrays, the rejects table beside the
   store, the attributes, ``complete: true`` last; then the staging is removed and the work
   directory ``<out>.partial`` is renamed to ``<out>``.

A cutout path is resolved (symbolic links followed) before anything opens it; one that leads
outside the image root is a rejected row (``outside_root``), as is one that cannot name a regular
file (``bad_path``, ``not_a_file``): no path stops the ingest.

``overwrite`` replaces only a store this project wrote and marked (:mod:`catalogs.atomic`), never
a folder holding anything else or one that contains the inputs.  Every file is written under a
temporary name and renamed (:mod:`catalogs.atomic`), and each block or shard is marked done
only after its data is on disk, so a run killed at any moment (kill -9) and run again with the same
arguments resumes: finished blocks and shards are skipped (their files keep their mtimes) and each
good object ends up in the store exactly once.  Tasks take the work directory and an index, never
arrays; each holds at most one block of images (``shard_size`` cutouts), so memory stays flat as
the survey grows.

Work is spread with Dask: ``workers=1`` runs the tasks in this process, ``workers=N`` starts a
local cluster of N single-threaded worker processes on the loopback interface
(:func:`pipeline.cluster.local_cluster`), ``scheduler=ADDRESS`` uses an existing cluster (whose
workers must see the same file system).  A Prefect flow can call the five
functions above directly, one task per block or shard.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from catalogs import atomic
from catalogs.schema import id_problem
from pipeline import __version__
from pipeline.data.readers import (
    FITS_STRETCH,
    REJECT_REASONS,
    CropSpec,
    ImageInfo,
    RejectedImage,
    probe_image,
    read_cutout,
    read_survey_catalog,
    resolve_in_root,
)
from pipeline.data.store import (
    STORE_FORMAT,
    STORE_KIND,
    ZSTD_LEVEL,
    rejects_path_for,
    write_rejects_csv,
)
from pipeline.data.store_write import create_images_array, mark_complete, store_marks, write_1d
from pipeline.errors import BadInputError, ConfigError
from pipeline.hashing import file_sha256
from pipeline.progress import Progress, Sink

__all__ = [
    "DEFAULT_CROP_FRACTION",
    "IngestPlan",
    "BlockResult",
    "IngestSummary",
    "plan_ingest",
    "decode_block",
    "layout_store",
    "write_store_shard",
    "finalize_ingest",
    "ingest_survey",
]

#: Default centre crop as a fraction of the cutout side: 424 -> 256 pixels for Galaxy Zoo DECaLS,
#: whose cutouts are scaled to each galaxy's Petrosian radius so that it fills the central part.
#: Measured on 300 demo-survey galaxies (benchmarks/ingest.py --crop-study), a 256-pixel crop holds
#: a median 93 % of the background-subtracted light (10th percentile 83 %) against 89 % (78 %) for
#: 212 pixels and 96 % (89 %) for 320, leaves room for shifts and rotations, and is exactly 4 cutout pixels per store pixel
#: at size 64 (JPEG decoded at 1/4 in the DCT domain: 64 decoded pixels across the crop).
DEFAULT_CROP_FRACTION = 256 / 424

_WORK = "_ingest"  # bookkeeping directory inside the work directory
_PLAN_KEYS = ("catalog_sha256", "images_root", "size", "crop_size", "shard_size", "chunk_size", "columns")


# ----------------------------------------------------------------------------- data types


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
        spec = json.loads((work / _WORK / "plan.json").read_text())
        return cls(
            work, Path(spec["out"]), spec["n_rows"], spec["n_blocks"], spec["shard_size"], spec["chunk_size"], spec
        )


@dataclass(frozen=True)
class BlockResult:
    """Outcome of one decode task: catalogue rows seen, good cutouts staged, rejects by reason."""

    block: int
    n_rows: int
    n_good: int
    rejected: dict[str, int]
    skipped: bool  # True when the block was already done (resumed run)


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


# ----------------------------------------------------------------------------- small helpers


def _block_paths(work: Path, block: int) -> tuple[Path, Path]:
    d = work / _WORK / "blocks"
    return d / f"{block:06d}.npy", d / f"{block:06d}.parquet"


def _shard_marker(work: Path, shard: int) -> Path:
    return work / _WORK / "stored" / f"{shard:06d}.done"


def _work_dir(out: Path) -> Path:
    return out.with_name(out.name + ".partial")


def _as_id(v: Any) -> str | None:
    if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA:
        return None
    s = v.decode() if isinstance(v, bytes) else str(v)
    s = s.strip()
    return s or None


def _coords(series: pd.Series, lo: float, hi: float, *, hi_open: bool) -> tuple[np.ndarray, np.ndarray]:
    """(values in degrees, bad mask): unparsable, non-finite or out of [lo, hi] (or [lo, hi))."""
    v = pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(v) | (v < lo) | ((v >= hi) if hi_open else (v > hi))
    return v, bad


def _carry_column(s: pd.Series) -> pa.Array:
    """A catalogue column as a plain arrow array: numbers and booleans stay, the rest become strings."""
    if pd.api.types.is_bool_dtype(s.dtype) and not s.isna().any():
        return pa.array(s.to_numpy(dtype=bool))
    if pd.api.types.is_integer_dtype(s.dtype) and not s.isna().any():
        return pa.array(s.to_numpy(dtype=np.int64))
    if pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype):
        return pa.array(s.to_numpy(dtype=np.float64, na_value=np.nan))
    return pa.array(["" if _as_id(v) is None else str(v) for v in s], type=pa.string())


# ----------------------------------------------------------------------------- 1. plan


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
    if (out.exists() or out.is_symlink()) and not overwrite:
        raise BadInputError(f"store {out} already exists (pass --overwrite to replace it)")
    inputs = (catalog, images)
    if overwrite:
        atomic.check_may_replace(out, kinds=(STORE_KIND,), inputs=inputs, error=BadInputError)
    sha = file_sha256(catalog)
    work = _work_dir(out)
    columns = {"id": id_column, "path": path_column, "ra": ra_column, "dec": dec_column}
    # the work directory is deleted below (a stale or killed run): only when it is this project's
    if work.exists() or work.is_symlink():
        atomic.check_may_replace(work, kinds=(STORE_KIND,), inputs=inputs, error=BadInputError)

    if (work / _WORK / "plan.json").is_file():
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

    ids = [_as_id(v) for v in df[id_column]]
    paths = [_as_id(v) for v in df[path_column]]
    ra, bad_ra = _coords(df[ra_column], 0.0, 360.0, hi_open=True)
    dec, bad_dec = _coords(df[dec_column], -90.0, 90.0, hi_open=False)
    reason: list[str | None] = [None] * n
    detail: list[str | None] = [None] * n
    seen: set[str] = set()
    for i in range(n):
        if ids[i] is None:
            reason[i], detail[i] = "missing_id", f"empty {id_column}"
        elif (why := id_problem(ids[i])) is not None:
            reason[i], detail[i] = "bad_id", f"{why}: {ids[i]!r}"
        elif ids[i] in seen:
            reason[i], detail[i] = "duplicate_id", f"{ids[i]} occurs on an earlier row"
        elif bad_ra[i] or bad_dec[i]:
            raw = (df[ra_column].iloc[i], df[dec_column].iloc[i])
            shown = ["null" if v is None or v is pd.NA else str(v.item() if isinstance(v, np.generic) else v)
                     for v in raw]
            reason[i], detail[i] = "bad_coordinates", f"ra={shown[0]} dec={shown[1]}"  # as a person writes them
        elif paths[i] is None:
            reason[i], detail[i] = "missing_file", f"empty {path_column}"
        if ids[i] is not None:
            seen.add(ids[i])

    shape = _survey_shape(images.resolve(), [p for p, r in zip(paths, reason) if r is None][:1000])
    side = min(shape.width, shape.height)
    crop_size = int(round(DEFAULT_CROP_FRACTION * side)) if crop is None else int(crop)
    if not 0 < crop_size <= side:
        raise ConfigError(f"crop {crop_size} must be between 1 and the cutout side {side} pixels")
    box = CropSpec.centred(shape.width, shape.height, crop_size, size)

    extras = [c for c in df.columns if c not in (id_column, path_column, ra_column, dec_column)]
    carried = [c for c in extras if isinstance(c, str) and c and "/" not in c and not c.startswith("__")]
    table = pa.table(
        {
            "row": pa.array(np.arange(n, dtype=np.int64)),
            "id": pa.array(ids, type=pa.string()),
            "path": pa.array(paths, type=pa.string()),
            "ra": pa.array(ra),
            "dec": pa.array(dec),
            "plan_reason": pa.array(reason, type=pa.string()),
            "plan_detail": pa.array(detail, type=pa.string()),
            **{f"x_{c}": _carry_column(df[c]) for c in carried},
        }
    )
    import zarr

    # the group's attributes mark the work directory (and then the store) as one --overwrite may clear
    group = zarr.open_group(str(work), mode="w", zarr_format=3)
    group.attrs.update(store_marks())
    (work / _WORK / "blocks").mkdir(parents=True, exist_ok=True)
    (work / _WORK / "stored").mkdir(parents=True, exist_ok=True)
    with atomic.atomic_path(work / _WORK / "plan.parquet") as tmp:
        pq.write_table(table, tmp, row_group_size=shard_size)
    spec = {
        "out": str(out.resolve()),
        "catalog": str(catalog.resolve()),
        "catalog_sha256": sha,
        "images_root": str(images.resolve()),
        "columns": columns,
        "extra_columns": carried,
        "skipped_columns": [str(c) for c in extras if c not in carried],
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
    atomic.write_json(work / _WORK / "plan.json", spec)  # the plan exists once this file does
    return IngestPlan.load(work)


# ----------------------------------------------------------------------------- 2. decode


def _read_marker(marker: Path) -> pd.DataFrame:
    return pq.read_table(marker).to_pandas()


def decode_block(plan: IngestPlan | Path, block: int) -> BlockResult:
    """Decode catalogue block ``block`` (rows ``[k * shard_size, (k + 1) * shard_size)``) to staging.

    Skips a block already marked done.  Writes ``blocks/<k>.npy`` (good images, (n_good, C, H, W))
    and then ``blocks/<k>.parquet`` (row, reason, detail for every row), both atomically.
    """
    plan = IngestPlan.load(plan)
    k = int(block)
    npy, marker = _block_paths(plan.work, k)
    if marker.is_file():
        m = _read_marker(marker)
        good = int(m["reason"].isna().sum())
        return BlockResult(k, len(m), good, dict(Counter(m["reason"].dropna())), skipped=True)

    plan_file = pq.ParquetFile(plan.work / _WORK / "plan.parquet")
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


# ----------------------------------------------------------------------------- 3. layout


def _block_counts(plan: IngestPlan) -> list[int]:
    counts = []
    for k in range(plan.n_blocks):
        _, marker = _block_paths(plan.work, k)
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
    layout_file = plan.work / _WORK / "layout.json"
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


# ----------------------------------------------------------------------------- 4. write


def write_store_shard(plan: IngestPlan | Path, shard_index: int) -> bool:
    """Copy output shard ``shard_index`` (store objects ``[j * shard_size, (j + 1) * shard_size)``) from staging.

    One whole-shard write, then its done marker.  Returns False when it was already done.
    """
    import zarr

    plan = IngestPlan.load(plan)
    j = int(shard_index)
    done = _shard_marker(plan.work, j)
    if done.is_file():
        return False
    layout = json.loads((plan.work / _WORK / "layout.json").read_text())
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
        staged = np.load(_block_paths(plan.work, k)[0], mmap_mode="r")
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


# ----------------------------------------------------------------------------- 5. finalize


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
        missing = [j for j in range(n_shards) if not _shard_marker(work, j).is_file()]
        if missing:
            raise BadInputError(
                f"{work}: output shards {missing[:5]} are not written yet (run write_store_shard first)"
            )
        outcome = pd.concat([_read_marker(_block_paths(work, k)[1]) for k in range(plan.n_blocks)], ignore_index=True)
        table = pq.read_table(work / _WORK / "plan.parquet").to_pandas()
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
        fraction = counts["rejected"] / counts["input_rows"] if counts["input_rows"] else 0.0
        passed = fraction <= sp["max_reject_fraction"]
        mark_complete(  # the attributes, then complete: true last
            group,
            {
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
            },
        )
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
    shutil.rmtree(out / _WORK, ignore_errors=True)  # the bookkeeping is only disk space now
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


# ----------------------------------------------------------------------------- the whole ingest


def _run(fn: Callable, work: Path, indices: Iterable[int], client: Any) -> Iterable[Any]:
    """Run ``fn(work, i)`` for every index, in this process or on the Dask client; yield results as they finish."""
    indices = list(indices)
    if client is None:
        for i in indices:
            yield fn(work, i)
        return
    from distributed import as_completed

    futures = client.map(fn, [work] * len(indices), indices, pure=False)
    for fut in as_completed(futures):
        yield fut.result()


def ingest_survey(
    catalog: Path,
    images: Path,
    out: Path,
    *,
    size: int = 64,
    crop: int | None = None,
    workers: int = 1,
    scheduler: str | None = None,
    shard_size: int = 1024,
    chunk_size: int = 8,
    max_reject_fraction: float = 0.01,
    id_column: str = "iauname",
    path_column: str = "file_loc",
    ra_column: str = "ra",
    dec_column: str = "dec",
    overwrite: bool = False,
    progress: Sink = None,
) -> IngestSummary:
    """Ingest a survey into the store ``out`` (see the module docstring); resumes an unfinished run.

    ``size``: output side in pixels; ``crop``: centre crop side in pixels of the original cutout
    (None: :data:`DEFAULT_CROP_FRACTION` of the shorter side); ``workers``: 1 runs in this process,
    N > 1 starts a local Dask cluster of N single-threaded processes on loopback; ``scheduler``: address of an
    existing Dask scheduler (overrides ``workers``); ``progress``: True for a bar (a terminal) or
    periodic lines on stderr, a callable for the lines (:class:`pipeline.progress.Progress`).  Rejected rows never stop the run; check ``summary.too_many_rejects``.
    """
    t0 = time.perf_counter()
    plan = plan_ingest(
        catalog,
        images,
        out,
        size=size,
        crop=crop,
        shard_size=shard_size,
        chunk_size=chunk_size,
        max_reject_fraction=max_reject_fraction,
        id_column=id_column,
        path_column=path_column,
        ra_column=ra_column,
        dec_column=dec_column,
        overwrite=overwrite,
    )
    if workers < 1:
        raise ConfigError(f"workers must be at least 1 (got {workers})")
    from pipeline.cluster import dask_client

    with dask_client(workers, scheduler) as client:
        rows = good = blocks_resumed = 0
        rejected: Counter[str] = Counter()
        with Progress("ingest: decoded", plan.n_rows, unit="cutouts", sink=progress) as show:
            for r in _run(decode_block, plan.work, range(plan.n_blocks), client):
                rows, good = rows + r.n_rows, good + r.n_good
                rejected.update(r.rejected)
                blocks_resumed += r.skipped
                show.update(r.n_rows, rejected=sum(rejected.values()))
        n_shards = layout_store(plan)
        shards_resumed = 0
        with Progress("ingest: stored", n_shards, unit="shards", sink=progress) as show:
            for wrote in _run(write_store_shard, plan.work, range(n_shards), client):
                shards_resumed += not wrote
                show.update(1)
    summary = finalize_ingest(plan, elapsed_s=time.perf_counter() - t0)
    return replace(summary, blocks_resumed=blocks_resumed, shards_resumed=shards_resumed)
