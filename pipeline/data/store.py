"""The galaxy-codae Zarr v3 store: layout, attributes and the reader.

Layout (one Zarr v3 group; every array in the same object order, 0..N-1, only good objects)
-------------------------------------------------------------------------------------------
``images``       (N, C, H, W) uint8 for JPEG/PNG inputs (0-255 as in the file), or float16 for FITS
                 inputs after the per-image stretch to [0, 1] recorded in ``attrs["preprocessing"]``.
                 Display frame of :mod:`pipeline.conventions` (row 0 = top as displayed).
                 Sharding codec: one shard = ``shard_size`` objects (default 1024), inner chunks of
                 ``chunk_size`` objects (default 8), zstd.  Shard ``k`` holds objects
                 ``[k * shard_size, (k + 1) * shard_size)``.
``id``           (N,) strings: object ids from the input catalogue (``iauname`` for Galaxy Zoo).
``ra``, ``dec``  (N,) float64, degrees (ICRS, as in the input catalogue).
``source_path``  (N,) strings: the cutout path as written in the catalogue (relative to the image root).
``row``          (N,) int64: the object's 0-based row in the input catalogue.
``columns/<name>`` (N,) extra catalogue columns carried over (numbers as numbers, the rest as strings).

Attributes (``zarr.json`` of the group)
---------------------------------------
``galaxy_codae_store`` (format version), ``software_version``, ``created`` (UTC, ISO 8601),
``catalog`` (path, ``sha256``, column names), ``images_root``,
``preprocessing`` (``size``, ``crop_size``, ``crop_start_x``, ``crop_start_y``, ``source_width``,
``source_height``, ``source_format``, ``channels``, ``dtype``, ``flipped``, ``resample``,
``jpeg_draft``, ``fits_stretch``), ``layout`` (``shard_size``, ``chunk_size``, ``compressor``),
``counts`` (``input_rows``, ``stored``, ``rejected``, ``rejected_by_reason``), ``rejects_table``,
``passed`` (the rejected fraction stayed within ``max_reject_fraction``; ``failure`` says by how
much it did not) and ``complete`` (true only once everything else is written).  :func:`open_store`
refuses a store that is not complete or did not pass, so train and infer never use one.

The attribute :data:`catalogs.atomic.OWNER_KEY` (kind :data:`STORE_KIND`, the names of
:data:`STORE_ENTRIES`) marks the store as this project's: ``ingest --overwrite`` replaces such a
store, and nothing else.  The rejects table ``<store>.rejects.csv`` beside it
has columns row, id, path, reason, detail; a text cell that a spreadsheet would run as a formula
(first character ``=``, ``+``, ``-``, ``@``, tab or carriage return) is written with a leading
``'``, and control characters in a cell are escaped (:func:`spreadsheet_safe`).

Map a store pixel back to the original cutout with
``pipeline.conventions.store_to_cutout_pixels(p, crop_start=info.crop_start_x, crop_size=info.crop_size,
size=info.size)`` (and ``crop_start_y`` for rows).  For FITS inputs (``flipped``) the cutout frame is the
display frame; the FITS row is ``source_height - 1 - y``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import zarr
from numpy.typing import NDArray

from catalogs import atomic
from pipeline.errors import BadInputError, one_line

__all__ = [
    "STORE_FORMAT",
    "STORE_KIND",
    "STORE_ENTRIES",
    "ZSTD_LEVEL",
    "images_codec",
    "StoreInfo",
    "Store",
    "open_store",
    "rejects_path_for",
    "spreadsheet_safe",
    "write_rejects_csv",
]

#: Version of the layout above, in ``attrs["galaxy_codae_store"]``.
STORE_FORMAT = 1
#: The ownership kind (:func:`catalogs.atomic.mark_owned`) of a store and of its unfinished work directory.
STORE_KIND = "store"
#: Every top-level name a store (or its work directory, with ``_ingest``) may hold.
STORE_ENTRIES = ("zarr.json", "images", "id", "ra", "dec", "source_path", "row", "columns", "_ingest")

#: zstd level of the ``images`` chunks.  Level 1 compresses the demo cutouts 1.73x against 1.76x
#: at level 3 and costs 0.12 against 0.21 ms per 64x64x3 cutout on this 2-core CPU (sky noise
#: dominates what is left to squeeze), so the store write stays a small part of the ingest.
ZSTD_LEVEL = 1


def images_codec() -> Any:
    """The compressor of the ``images`` array: zstd at :data:`ZSTD_LEVEL`."""
    return zarr.codecs.ZstdCodec(level=ZSTD_LEVEL)


def rejects_path_for(store: Path) -> Path:
    """The rejects table written beside a store: ``<store>.rejects.csv`` (columns row, id, path, reason, detail)."""
    store = Path(store)
    return store.with_name(store.name + ".rejects.csv")


#: First characters that make a spreadsheet read a cell as a formula (OWASP CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: Any) -> Any:
    """A text cell with a leading ``'`` when it begins like a formula (``=``, ``+``, ``-``, ``@``, tab, CR),
    and its control characters escaped (:func:`pipeline.errors.one_line`); other values as they are."""
    if not isinstance(value, str):
        return value
    if value.startswith(_FORMULA_START):
        value = "'" + value
    return one_line(value)


def write_rejects_csv(rejects: pd.DataFrame, path: Path) -> None:
    """Write the rejects table atomically, every text cell made :func:`spreadsheet_safe`."""
    safe = rejects.copy()
    for name in safe.columns:
        if not pd.api.types.is_numeric_dtype(safe[name].dtype):
            safe[name] = safe[name].map(spreadsheet_safe)
    with atomic.atomic_path(path) as tmp:
        safe.to_csv(tmp, index=False)


@dataclass(frozen=True)
class StoreInfo:
    """What a store holds and how its images were made.

    ``size``: output side in pixels; ``crop_start_x``/``crop_start_y``/``crop_size``: the centre crop
    in the original cutout's display frame (pixels, 0-based); ``source_width``/``source_height``:
    original cutout size in pixels; ``flipped``: FITS rows were reversed into display order.
    """

    n_objects: int
    channels: int
    size: int
    dtype: str
    shard_size: int
    chunk_size: int
    crop_start_x: int
    crop_start_y: int
    crop_size: int
    source_width: int
    source_height: int
    flipped: bool
    catalog_sha256: str
    software_version: str
    attrs: dict[str, Any]


class Store:
    """Read access to a complete store (use :func:`open_store`).

    Cheap to create: arrays are read on demand; the 1-D arrays are cached after their first read.
    Not shared across processes: a DataLoader worker opens its own (see :mod:`pipeline.data.dataset`).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._group = zarr.open_group(str(self.path), mode="r")
        attrs = dict(self._group.attrs)
        self._images = self._group["images"]
        pre, lay = attrs["preprocessing"], attrs["layout"]
        n, c, h, _ = self._images.shape
        self.info = StoreInfo(
            n_objects=int(n),
            channels=int(c),
            size=int(h),
            dtype=str(self._images.dtype),
            shard_size=int(lay["shard_size"]),
            chunk_size=int(lay["chunk_size"]),
            crop_start_x=int(pre["crop_start_x"]),
            crop_start_y=int(pre["crop_start_y"]),
            crop_size=int(pre["crop_size"]),
            source_width=int(pre["source_width"]),
            source_height=int(pre["source_height"]),
            flipped=bool(pre["flipped"]),
            catalog_sha256=str(attrs["catalog"]["sha256"]),
            software_version=str(attrs["software_version"]),
            attrs=attrs,
        )
        self._cache: dict[str, NDArray] = {}

    def __len__(self) -> int:
        return self.info.n_objects

    def __repr__(self) -> str:
        i = self.info
        return f"Store({str(self.path)!r}, n={i.n_objects}, images=({i.channels}, {i.size}, {i.size}) {i.dtype})"

    @property
    def images(self) -> zarr.Array:
        """The (N, C, H, W) image array itself (for dask: ``da.from_zarr(store.images, chunks=(shard_size, ...))``)."""
        return self._images

    def read_images(self, start: int, stop: int) -> NDArray:
        """Images ``start`` to ``stop`` (exclusive): (stop - start, C, H, W), stored dtype."""
        return np.asarray(self._images[start:stop])

    def read_indices(self, indices: NDArray[np.integer] | list[int]) -> NDArray:
        """Images at any indices, in the order given: (len(indices), C, H, W), stored dtype.

        Reads each needed chunk once (sorted, de-duplicated orthogonal selection).
        """
        idx = np.asarray(indices, dtype=np.int64)
        if idx.size == 0:
            return np.empty((0, *self._images.shape[1:]), dtype=self._images.dtype)
        if idx.min() < 0 or idx.max() >= len(self):
            raise IndexError(f"store index out of range [0, {len(self)})")
        uniq, inverse = np.unique(idx, return_inverse=True)
        block = np.asarray(self._images.get_orthogonal_selection((uniq, slice(None), slice(None), slice(None))))
        return block[inverse]

    def _array(self, name: str) -> NDArray:
        if name not in self._cache:
            self._cache[name] = np.asarray(self._group[name][:])
        return self._cache[name]

    @property
    def ids(self) -> NDArray:
        """Object ids (strings), in store order."""
        return self._array("id")

    @property
    def ra(self) -> NDArray[np.float64]:
        """Right ascension in degrees, in store order."""
        return self._array("ra")

    @property
    def dec(self) -> NDArray[np.float64]:
        """Declination in degrees, in store order."""
        return self._array("dec")

    @property
    def source_paths(self) -> NDArray:
        """Cutout paths as written in the input catalogue, in store order."""
        return self._array("source_path")

    @property
    def columns(self) -> list[str]:
        """Names of the carried extra catalogue columns."""
        if "columns" not in self._group:
            return []
        return sorted(name for name, _ in self._group["columns"].arrays())

    def column(self, name: str) -> NDArray:
        """A 1-D array by name: ``id``, ``ra``, ``dec``, ``source_path``, ``row`` or a carried column."""
        if name in ("id", "ra", "dec", "source_path", "row"):
            return self._array(name)
        if name not in self.columns:
            raise KeyError(f"store {self.path} has no column {name!r} (carried: {', '.join(self.columns) or 'none'})")
        return self._array(f"columns/{name}")

    def shard_ranges(self) -> list[tuple[int, int]]:
        """``(start, stop)`` object ranges of the image shards, in order (the last may be short)."""
        n, s = len(self), self.info.shard_size
        return [(a, min(a + s, n)) for a in range(0, n, s)]


def _passed(attrs: dict[str, Any]) -> bool | None:
    """The ingest's verdict; for a store written before ``passed`` was recorded, from its counts."""
    if "passed" in attrs:
        return attrs["passed"]
    counts, limit = attrs.get("counts") or {}, attrs.get("max_reject_fraction")
    if limit is None or not counts.get("input_rows"):
        return None
    return counts.get("rejected", 0) / counts["input_rows"] <= limit


def open_store(path: Path | str, *, accept_failed: bool = False) -> Store:
    """Open a complete store for reading.

    Raises :class:`BadInputError` (one line) when ``path`` is not a store, when the ingest that
    writes it has not finished, or when that ingest rejected more rows than its limit allows
    (``accept_failed=True`` opens such a store anyway, to look at what it holds).
    """
    path = Path(path)
    if not (path / "zarr.json").is_file():
        partial = path.with_name(path.name + ".partial")
        if partial.exists():
            msg = f"store {path} is incomplete (an unfinished ingest is at {partial}; rerun galaxy-codae ingest to finish it)"
            raise BadInputError(msg)
        raise BadInputError(f"store {path} does not exist or is not a Zarr store")
    try:
        group = zarr.open_group(str(path), mode="r")
        attrs = dict(group.attrs)
    except Exception as e:
        raise BadInputError(f"store {path}: cannot open ({type(e).__name__}: {e})") from None
    if "galaxy_codae_store" not in attrs:
        raise BadInputError(f"store {path} is a Zarr group but not a galaxy-codae store")
    if attrs.get("complete") is not True:
        raise BadInputError(f"store {path} is incomplete (its ingest did not finish; rerun galaxy-codae ingest)")
    if _passed(attrs) is not True and not accept_failed:
        why = attrs.get("failure") or "it records no check of its rejects"
        rejects = attrs.get("rejects_table") or "its rejects table"
        msg = (
            f"store {path} did not pass its ingest ({why}; see {rejects}); fix the inputs, or rerun "
            "galaxy-codae ingest --overwrite with a higher --max-reject-fraction"
        )
        raise BadInputError(msg)
    return Store(path)
