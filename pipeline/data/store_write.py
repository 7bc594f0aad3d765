"""Creating a store: the layout of :mod:`pipeline.data.store` written in one place.

Every store is written the same way, whoever fills it (the ingest from survey files, or
:func:`write_array_store` from images in memory or made block by block): in a work directory
``<out>.partial`` whose attributes first say *unfinished* and *ours* (:func:`store_marks`), the
``images`` array in shards (:func:`create_images_array`), the 1-D arrays (:func:`write_1d`), then
the descriptive attributes and ``complete: true`` last (:func:`mark_complete`), and only then
renamed into place.  :func:`pipeline.data.store.open_store` refuses anything short of that.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from catalogs import atomic
from pipeline.data.store import STORE_ENTRIES, STORE_FORMAT, STORE_KIND, ZSTD_LEVEL, images_codec
from pipeline.errors import BadInputError

__all__ = ["store_marks", "create_images_array", "write_1d", "mark_complete", "write_array_store"]


def store_marks() -> dict[str, Any]:
    """The attributes an unfinished store starts with: its format, not complete, and its ownership record."""
    from pipeline import __version__

    return {
        "galaxy_codae_store": STORE_FORMAT,
        "complete": False,
        "software_version": __version__,
        atomic.OWNER_KEY: atomic.owner_record(STORE_KIND, STORE_ENTRIES),
    }


def create_images_array(group: Any, n: int, channels: int, size: int, dtype: str, *, shard_size: int,
                        chunk_size: int, overwrite: bool = False) -> Any:
    """The (N, C, S, S) ``images`` array: shards of ``shard_size`` objects, inner chunks of ``chunk_size``, zstd."""
    return group.create_array("images", shape=(n, channels, size, size), dtype=dtype,
                              chunks=(chunk_size, channels, size, size), shards=(shard_size, channels, size, size),
                              compressors=images_codec(), fill_value=0, dimension_names=("object", "channel", "y", "x"),
                              overwrite=overwrite)


def write_1d(group: Any, name: str, values: np.ndarray, chunk: int) -> None:
    """A 1-D array (ids, coordinates, carried columns): text as strings, numbers as they are."""
    if values.dtype.kind in "OUST":
        group.create_array(name, shape=values.shape, dtype=str, chunks=(chunk,), overwrite=True)
        if len(values):
            group[name][:] = values.astype(str)
    else:
        group.create_array(name, shape=values.shape, dtype=values.dtype, chunks=(chunk,), overwrite=True)
        if len(values):
            group[name][:] = values


def mark_complete(group: Any, attrs: dict[str, Any]) -> None:
    """Write the descriptive attributes, then ``complete: true`` last (readers trust nothing before it)."""
    group.attrs.update({**attrs, "created": datetime.now(UTC).isoformat(timespec="seconds")})
    group.attrs["complete"] = True


def write_array_store(out: str | Path, images: NDArray | Callable[[int, int], NDArray], *, n: int | None = None,
                      channels: int | None = None, size: int | None = None, dtype: str | None = None,
                      preprocessing: dict[str, Any] | None = None, order: str = "array order", source: str = "",
                      overwrite: bool = False, shard_size: int = 1024, chunk_size: int = 8) -> Path:
    """Write images as a complete store; returns ``out``.

    ``images``: an array (N, C, S, S), or a function ``rows(a, b)`` giving images ``a`` to ``b``
    (then ``n``, ``channels``, ``size`` and ``dtype`` are required), called once per shard so a
    large store never sits in memory.  Stored as ``dtype`` (default: the array's), ``id`` =
    ``"0".."N-1"``, ``ra``/``dec`` NaN, ``source_path`` = ``source``, ``row`` = 0..N-1, the crop
    the whole image; ``preprocessing`` adds to or overrides the preprocessing attributes and
    ``order`` says what the object order is.
    An existing ``out`` is refused unless ``overwrite`` (and then only one this project wrote).
    """
    import zarr

    out = Path(out)
    if callable(images):
        if None in (n, channels, size, dtype):
            raise ValueError("write_array_store: give n, channels, size and dtype with a rows(a, b) function")
        rows = images
    else:
        a = np.asarray(images)
        if a.ndim != 4 or a.shape[2] != a.shape[3]:
            raise BadInputError(f"write_store: images must be (N, C, S, S), got {a.shape}")
        n, channels, size = a.shape[0], a.shape[1], a.shape[2]
        dtype = dtype or str(a.dtype)
        rows = lambda lo, hi: a[lo:hi]  # noqa: E731
    inputs = (source,) if source else ()
    atomic.check_output(out, overwrite=overwrite, kinds=(STORE_KIND,), inputs=inputs, error=BadInputError)
    work = out.with_name(out.name + ".partial")
    if work.exists() or work.is_symlink():
        atomic.remove_owned(work, kinds=(STORE_KIND,), inputs=inputs, error=BadInputError)
    group = zarr.open_group(str(work), mode="w", zarr_format=3)
    group.attrs.update(store_marks())
    shard = min(shard_size, max(n, 1))
    chunk = min(chunk_size, shard)
    shard = (shard // chunk) * chunk
    arr = create_images_array(group, n, channels, size, dtype, shard_size=shard, chunk_size=chunk)
    for lo in range(0, n, shard):  # whole shards, one at a time
        hi = min(lo + shard, n)
        arr[lo:hi] = np.asarray(rows(lo, hi)).astype(dtype, copy=False)
    one_chunk = max(n, 1)
    write_1d(group, "id", np.arange(n).astype(str), one_chunk)
    write_1d(group, "ra", np.full(n, np.nan), one_chunk)
    write_1d(group, "dec", np.full(n, np.nan), one_chunk)
    write_1d(group, "source_path", np.full(n, source, dtype=object), one_chunk)
    write_1d(group, "row", np.arange(n, dtype=np.int64), one_chunk)
    pre = {"size": size, "crop_size": size, "crop_start_x": 0, "crop_start_y": 0, "source_width": size,
           "source_height": size, "source_format": "array", "channels": channels, "dtype": dtype, "flipped": False,
           "frame": "display (row 0 = top as displayed)", "crop": "none", "resample": "none", "jpeg_draft": False,
           "fits_stretch": None, "value_range": [0, 255] if dtype == "uint8" else [0.0, 1.0]}
    mark_complete(group, {
        "catalog": {"path": source, "sha256": "", "columns": [], "extra_columns": [], "skipped_columns": []},
        "images_root": str(Path(source).parent) if source else "",
        "preprocessing": {**pre, **(preprocessing or {})},
        "layout": {"shard_size": shard, "chunk_size": chunk, "compressor": f"zstd level {ZSTD_LEVEL}",
                   "order": order},
        "counts": {"input_rows": n, "stored": n, "rejected": 0, "rejected_by_reason": {}},
        "rejects_table": "", "passed": True, "failure": None,
    })
    atomic.replace_dir(work, out, may_replace=lambda p: atomic.overwrite_refusal(p, kinds=(STORE_KIND,)))
    return out
