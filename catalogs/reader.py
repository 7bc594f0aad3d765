"""Read a catalogue (FITS or Parquet, found from its first bytes, never from its file name).

:func:`read_catalog` and :class:`CatalogReader` (through :func:`open_catalog`) return astropy
Tables with native-endian arrays (FITS is big-endian), string ids, units, descriptions
(``TCOMMn``, which astropy's own FITS reader does not read) and ``meta['ucd']`` per column, and
the header keywords in ``Table.meta``.  A :class:`CatalogReader` gives column names and dtypes
without reading data, then some columns of some rows (a filter reads only what it needs).
The writer is :mod:`catalogs.fits_io`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from astropy import units as u
from astropy.io import fits
from astropy.table import Column, Table
from numpy.typing import NDArray

from catalogs.errors import BadInputError
from catalogs.fits_header import STRUCTURAL, WRITER_KEYWORDS

__all__ = ["CATALOG_EXTNAME", "CatalogReader", "open_catalog", "read_catalog"]

#: the catalogue's table extension.
CATALOG_EXTNAME = "CATALOG"

_MAGIC_FITS = b"SIMPLE  ="
_MAGIC_PARQUET = b"PAR1"


def _native(arr: NDArray) -> NDArray:
    """A native-endian copy (FITS data is big-endian); strings as unicode."""
    if arr.dtype.kind == "S":  # FITS pads with NULs (dropped by numpy) or spaces
        return np.char.rstrip(np.asarray(arr).astype(f"U{max(1, arr.dtype.itemsize)}"), " ")
    if arr.dtype.kind == "U":
        return np.asarray(arr, dtype=str)
    return arr.astype(arr.dtype.newbyteorder("="), copy=True)


def _unit(text: str | None) -> u.UnitBase | None:
    if not text:
        return None
    return u.Unit(text, format="fits", parse_strict="silent")


class CatalogReader:
    """An open catalogue (FITS or Parquet): column names and dtypes without reading data.

    Use as a context manager (or through :func:`open_catalog`); :meth:`read` returns an
    astropy Table of some columns, optionally only some rows.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise BadInputError(f"catalogue {self.path} not found")
        with open(self.path, "rb") as f:
            magic = f.read(9)
        self._hdul = None
        self._pq = None
        if magic.startswith(_MAGIC_FITS):
            self.format = "fits"
            self._open_fits()
        elif magic.startswith(_MAGIC_PARQUET):
            self.format = "parquet"
            self._open_parquet()
        else:
            raise BadInputError(f"{self.path} is neither a FITS nor a Parquet file")

    def _open_fits(self) -> None:
        try:
            # bytes, decoded after row selection: astropy would decode whole columns on access
            self._hdul = fits.open(self.path, memmap=True, mode="readonly", character_as_bytes=True)
            hdu = self._hdul[CATALOG_EXTNAME] if CATALOG_EXTNAME in self._hdul else self._hdul[1]
        except (OSError, IndexError, KeyError, ValueError) as e:
            self.close()
            raise BadInputError(f"{self.path}: cannot read a FITS table: {e}") from None
        if not isinstance(hdu, fits.BinTableHDU):
            self.close()
            raise BadInputError(f"{self.path}: extension 1 is not a binary table")
        self._hdu = hdu
        hdr = hdu.header
        coldefs = hdu.columns
        self.names: list[str] = list(coldefs.names)
        self.nrows: int = int(hdr["NAXIS2"])
        self.dtypes: dict[str, np.dtype] = {}
        self._colmeta: dict[str, dict[str, Any]] = {}
        for i, col in enumerate(coldefs, start=1):
            dt = coldefs.dtype[col.name]
            self.dtypes[col.name] = np.dtype("U") if dt.kind == "S" else dt.newbyteorder("=")
            if dt.shape:
                self.dtypes[col.name] = np.dtype((self.dtypes[col.name].base, dt.shape))
            self._colmeta[col.name] = {
                "unit": col.unit,
                "ucd": hdr.get(f"TUCD{i}"),
                "description": hdr.get(f"TCOMM{i}"),
            }
        self.meta: dict[str, Any] = {
            key: hdr[key]
            for key in hdr
            if key and key not in ("COMMENT", "HISTORY", "") and not STRUCTURAL.fullmatch(key)
        }
        self.meta.update({k: hdr[k] for k in WRITER_KEYWORDS if k in hdr and k != "LONGSTRN"})

    def _open_parquet(self) -> None:
        import pyarrow.parquet as pq  # only for parquet

        try:
            self._pq = pq.ParquetFile(self.path)
        except Exception as e:  # pyarrow raises several types for a bad file
            raise BadInputError(f"{self.path}: cannot read a Parquet file: {e}") from None
        schema = self._pq.schema_arrow
        self.names = list(schema.names)
        self.nrows = int(self._pq.metadata.num_rows)
        self.dtypes = {}
        self._colmeta = {}
        for field in schema:
            try:
                dt = np.dtype(field.type.to_pandas_dtype())
            except (NotImplementedError, TypeError):
                dt = np.dtype(object)
            self.dtypes[field.name] = np.dtype("U") if dt.kind == "O" else dt
            fm = {k.decode(): v.decode() for k, v in (field.metadata or {}).items()}
            self._colmeta[field.name] = {k: fm.get(k) for k in ("unit", "ucd", "description")}
        raw = (schema.metadata or {}).get(b"galaxy_codae.header", b"{}")
        self.meta = json.loads(raw)

    def read_arrays(self, names: Iterable[str], rows: NDArray | None = None) -> dict[str, NDArray]:
        """Native-endian arrays of some columns (all rows, or the given row indices/mask)."""
        names = list(names)
        self._check(names)
        out: dict[str, NDArray] = {}
        if self.format == "fits":
            data = self._hdu.data
            for name in names:
                col = data.field(name) if data is not None else np.zeros(0, self.dtypes[name])
                out[name] = _native(col if rows is None else col[rows])
        else:
            tbl = self._pq.read(columns=names)
            for name in names:
                arr = tbl.column(name).to_numpy()
                if arr.dtype.kind == "O":
                    arr = arr.astype(str)
                out[name] = _native(arr if rows is None else arr[rows])
        return out

    def read(self, names: Iterable[str] | None = None, rows: NDArray | None = None) -> Table:
        """An astropy Table of some columns (default all) with units, descriptions and UCDs."""
        names = list(self.names if names is None else names)
        arrays = self.read_arrays(names, rows)
        table = Table(meta=dict(self.meta))
        for name in names:
            m = self._colmeta[name]
            table.add_column(
                Column(
                    arrays[name],
                    name=name,
                    unit=_unit(m.get("unit")),
                    description=m.get("description"),
                    meta={"ucd": m["ucd"]} if m.get("ucd") else {},
                    copy=False,
                )
            )
        return table

    def _check(self, names: list[str]) -> None:
        missing = [n for n in names if n not in self.dtypes]
        if missing:
            raise BadInputError(f"{self.path}: no column {missing[0]!r}")

    def close(self) -> None:
        if self._hdul is not None:
            self._hdul.close()
            self._hdul = None
        self._pq = None

    def __enter__(self) -> CatalogReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_catalog(path: str | os.PathLike) -> CatalogReader:
    """Open a catalogue (FITS or Parquet, found from its first bytes) for reading."""
    return CatalogReader(path)


def read_catalog(path: str | os.PathLike, columns: Sequence[str] | None = None) -> Table:
    """Read a catalogue (FITS or Parquet) as an astropy Table.

    Arrays are native-endian copies; each column has its unit, ``description`` (TCOMM)
    and ``meta['ucd']``; ``Table.meta`` holds the provenance header keywords.
    """
    with open_catalog(path) as cat:
        return cat.read(columns)
