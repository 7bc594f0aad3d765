"""Write and read the catalogue: a FITS binary table (or the same table as Parquet).

The FITS file has an empty primary HDU and one binary table, extension 1, named
``CATALOG``.  Every column carries ``TUNITn`` (where it has a unit), ``TUCDn``,
``TCOMMn`` (the description) and ``TDISPn`` from :mod:`catalogs.schema`; astropy
writes only ``TUNITn`` itself, so this module adds the others.  Provenance goes into
the table header:

========  ==============================================================
DATE      creation time, UTC (``YYYY-MM-DDThh:mm:ss``)
CREATOR   ``galaxy-codae <version>`` of the code that wrote this file
SWVERS    galaxy-codae version (``software_version``)
CKPTSHA   SHA-256 of the model checkpoint (``checkpoint_sha256``)
LATDIM    latent size ``d`` (columns ``z_0`` ... ``z_{d-1}``)
IMGSIZE   side of the store cutouts fed to the model, pixels (``image_size``)
CROP      centre crop of the original cutout, pixels (``crop``)
INFCONF   the inference configuration as JSON (``config``)
========  ==============================================================

Header cards are made by :mod:`catalogs.fits_header` (strings longer than a card use the
OGIP ``CONTINUE`` convention with ``LONGSTRN``, which keeps ``fitsverify`` free of errors
and warnings).  Unknown float values are NaN (FITS has no null for floats).  Writes are atomic: a temporary file in the target
directory, then a rename (:mod:`catalogs.atomic`); an existing file is kept unless
``overwrite``, and then replaced only when this project wrote it.

Reading is :mod:`catalogs.reader` (``open_catalog``, ``read_catalog`` and ``CatalogReader`` are
importable from here too).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from astropy import units as u
from astropy.io import fits
from astropy.table import Column, MaskedColumn, Table
from numpy.typing import NDArray

from catalogs import __version__
from catalogs.atomic import atomic_open, check_output_file
from catalogs.errors import BadInputError
from catalogs.fits_header import COMMENTS as _COMMENTS
from catalogs.fits_header import PRINTABLE as _PRINTABLE
from catalogs.fits_header import PROVENANCE_KEYWORDS, provenance_cards, set_cards, utc_now
from catalogs.reader import CATALOG_EXTNAME, CatalogReader, open_catalog, read_catalog
from catalogs.schema import FLAG_BITS, LATENT_PREFIX, ColumnSpec, catalog_schema, column_spec

__all__ = [
    "CATALOG_EXTNAME",
    "PROVENANCE_KEYWORDS",
    "CatalogReader",
    "open_catalog",
    "read_catalog",
    "write_catalog",
]

_FITS_FORMAT = {"f8": "D", "f4": "E", "i2": "I"}

TableLike = Table | Mapping[str, Any]


# ---------------------------------------------------------------- writing


def _columns_of(data: Any) -> dict[str, Any]:
    """Name -> column of an astropy Table, a mapping of arrays or a pandas DataFrame."""
    if isinstance(data, Table):
        return {name: data[name] for name in data.colnames}
    if isinstance(data, Mapping):
        return dict(data)
    if hasattr(data, "columns") and hasattr(data, "__getitem__"):  # pandas DataFrame, duck-typed
        return {str(name): data[name].to_numpy() for name in data.columns}
    raise TypeError(f"expected an astropy Table, a mapping of columns or a DataFrame, got {type(data).__name__}")


def _check_names(names: Sequence[str], latent_dim: int, partial: bool) -> list[ColumnSpec]:
    """The specs of ``names`` in output order (schema order for a full catalogue)."""
    schema = catalog_schema(latent_dim)
    allowed = {c.name: c for c in schema}
    unknown = [n for n in names if n not in allowed]
    if unknown:
        extra = [n for n in unknown if n.startswith(LATENT_PREFIX) and column_spec(n) is not None]
        if extra:
            raise BadInputError(f"latent column {extra[0]!r} is beyond latent_dim={latent_dim}")
        raise BadInputError(f"column {unknown[0]!r} is not in the catalogue schema")
    if len(set(names)) != len(names):
        raise BadInputError("duplicate column names")
    if partial:
        if not names:
            raise BadInputError("no columns to write")
        return [allowed[n] for n in names]
    missing = [c.name for c in schema if c.name not in set(names)]
    if missing:
        raise BadInputError(f"catalogue lacks column(s) {', '.join(missing)}")
    return list(schema)


def _prepare(spec: ColumnSpec, values: Any, nrows: int | None) -> NDArray:
    """One column as a native-endian array of the schema dtype (strings as ASCII bytes)."""
    name = spec.name
    unit = getattr(values, "unit", None)
    if unit is not None and spec.unit is not None and u.Unit(unit) != u.Unit(spec.unit):
        raise BadInputError(f"column {name!r} has unit {unit}, the schema says {spec.unit}")
    if isinstance(values, u.Quantity):
        values = values.value
    masked = isinstance(values, (MaskedColumn, np.ma.MaskedArray)) and np.any(np.ma.getmaskarray(values))
    if spec.is_string:
        if masked:
            raise BadInputError(f"column {name!r} has masked (null) values; ids cannot be null")
        arr = np.asarray(values)
        if arr.dtype.kind not in "USO":
            raise BadInputError(f"column {name!r} must hold strings, got dtype {arr.dtype}")
        arr = _ascii_bytes(name, arr)
    else:
        arr = np.ma.getdata(values) if isinstance(values, np.ma.MaskedArray) else np.asarray(values)
        if arr.dtype.kind not in "biuf":
            raise BadInputError(f"column {name!r} must be numeric, got dtype {arr.dtype}")
        if spec.dtype.kind == "f":
            arr = arr.astype(spec.dtype)
            if masked:  # a float null is NaN (FITS has no TNULL for floats)
                arr[np.ma.getmaskarray(values)] = np.nan
        else:
            if masked:
                raise BadInputError(f"column {name!r} has masked (null) values; it cannot be null")
            if arr.dtype.kind == "f":
                raise BadInputError(f"column {name!r} must be integer, got dtype {arr.dtype}")
            info = np.iinfo(spec.dtype)
            if arr.size and (arr.min() < info.min or arr.max() > info.max):
                raise BadInputError(f"column {name!r} has values outside {spec.dtype} range")
            arr = arr.astype(spec.dtype)
    if arr.ndim != 1:
        raise BadInputError(f"column {name!r} must be one value per row, got shape {arr.shape}")
    if nrows is not None and len(arr) != nrows:
        raise BadInputError(f"column {name!r} has {len(arr)} rows, expected {nrows}")
    return arr


def _ascii_bytes(name: str, arr: NDArray) -> NDArray:
    """Strings as fixed-width ASCII bytes, checked to be printable (vectorised)."""
    if arr.dtype.kind == "O":
        arr = arr.astype(str)
    if arr.dtype.kind == "U":
        width = max(1, arr.dtype.itemsize // 4)
        codes = np.ascontiguousarray(arr).view(np.uint32)
        if codes.size and codes.max() > 126:
            bad = arr.ravel()[np.flatnonzero((codes.reshape(len(arr), -1) > 126).any(axis=1))[0]]
            raise BadInputError(f"column {name!r} has a non-ASCII value: {bad!r}")
        arr = arr.astype(f"S{width}")
    arr = np.ascontiguousarray(arr)
    if arr.dtype.itemsize == 0:
        arr = arr.astype("S1")
    raw = arr.view(np.uint8)
    if raw.size and np.any((raw != 0) & ((raw < 32) | (raw > 126))):
        raise BadInputError(f"column {name!r} has a non-printable character")
    return arr


def _check_unique_ids(ids: NDArray) -> None:
    if ids.size == 0:
        return
    if np.any(ids == b""):
        raise BadInputError("column 'id' has an empty id")
    uniq, counts = np.unique(ids, return_counts=True)
    if uniq.size != ids.size:
        raise BadInputError(f"column 'id' is not unique: {uniq[counts > 1][0].decode()!r} appears more than once")


def _check_descriptions(descriptions: Mapping[str, str], specs: list[ColumnSpec]) -> dict[str, str]:
    """Per-column TCOMM overrides: columns of this table, printable ASCII, at most 68 characters."""
    names = {s.name for s in specs}
    out = {}
    for name, text in descriptions.items():
        if name not in names:
            raise BadInputError(f"description for column {name!r}, which is not in this catalogue")
        if not isinstance(text, str) or not _PRINTABLE.fullmatch(text) or not 0 < len(text) <= 68:
            raise BadInputError(f"description of {name!r} must be 1 to 68 printable ASCII characters, got {text!r}")
        out[name] = text
    return out


def _fits_hdus(specs: list[ColumnSpec], arrays: dict[str, NDArray], cards, latent_dim: int,
               descriptions: Mapping[str, str]) -> fits.HDUList:
    cols = []
    for spec in specs:
        arr = arrays[spec.name]
        fmt = f"{arr.dtype.itemsize}A" if spec.is_string else _FITS_FORMAT[spec.dtype.str[1:]]
        tdisp = f"A{arr.dtype.itemsize}" if spec.is_string else spec.tdisp
        cols.append(fits.Column(name=spec.name, format=fmt, unit=spec.unit, disp=tdisp, array=arr))
    # character_as_bytes: keep ids as bytes, or astropy decodes and re-encodes them (slow)
    table = fits.BinTableHDU.from_columns(cols, name=CATALOG_EXTNAME, character_as_bytes=True)
    hdr = table.header
    for i, spec in enumerate(specs, start=1):
        hdr.set(f"TUCD{i}", spec.ucd, after=f"TDISP{i}")
        hdr.set(f"TCOMM{i}", descriptions.get(spec.name, spec.description), after=f"TUCD{i}")
    date = utc_now()
    creator = f"galaxy-codae {__version__}"
    hdr["DATE"] = (date, _COMMENTS["DATE"])
    hdr["CREATOR"] = (creator, _COMMENTS["CREATOR"])
    hdr["LATDIM"] = (latent_dim, _COMMENTS["LATDIM"])
    if not any(k == "SWVERS" for k, _, _ in cards):
        hdr["SWVERS"] = (__version__, _COMMENTS["SWVERS"])
    if any(s.name == "flags" for s in specs):
        for bit, text in FLAG_BITS.items():
            hdr.add_comment(f"flags bit {bit}: {text}")
    set_cards(hdr, cards, longstrn_before="DATE")  # comments too long for a card become COMMENT cards
    hdr.add_comment("Unknown float values are NaN. Pixels: 0-based, x right, y down.")
    hdr.add_comment("Angles: theta_deg CCW from +x as displayed; pa_deg E of N.")
    primary = fits.PrimaryHDU()
    primary.header["DATE"] = (date, _COMMENTS["DATE"])
    primary.header["CREATOR"] = (creator, _COMMENTS["CREATOR"])
    return fits.HDUList([primary, table])


def _write_parquet(fileobj, specs: list[ColumnSpec], arrays: dict[str, NDArray], cards, latent_dim: int,
                   descriptions: Mapping[str, str]) -> None:
    import pyarrow as pa  # only for parquet
    import pyarrow.parquet as pq

    fields, columns = [], []
    for spec in specs:
        arr = arrays[spec.name]
        meta = {"ucd": spec.ucd, "description": descriptions.get(spec.name, spec.description)}
        if spec.unit:
            meta["unit"] = spec.unit
        if spec.is_string:
            fields.append(pa.field(spec.name, pa.string(), nullable=False, metadata=meta))
            columns.append(pa.array(arr.astype(f"U{arr.dtype.itemsize}"), type=pa.string()))
        else:
            fields.append(pa.field(spec.name, pa.from_numpy_dtype(arr.dtype), nullable=False, metadata=meta))
            columns.append(pa.array(arr))
    header = {"DATE": utc_now(), "CREATOR": f"galaxy-codae {__version__}", "LATDIM": latent_dim, "SWVERS": __version__}
    header.update({k: v for k, v, _ in cards})
    metadata = {"galaxy_codae.header": json.dumps(header, sort_keys=True)}
    metadata.update(_astropy_parquet_metadata(specs, arrays, header, descriptions))
    schema = pa.schema(fields, metadata=metadata)
    pq.write_table(pa.Table.from_arrays(columns, schema=schema), fileobj)


def _astropy_parquet_metadata(specs: list[ColumnSpec], arrays: dict[str, NDArray], header: Mapping[str, Any],
                              descriptions: Mapping[str, str]) -> dict[str, str]:
    """The schema metadata astropy's own Parquet writer adds (``table_meta_yaml``, string widths).

    With it, ``Table.read(path)`` (astropy) gives back units, descriptions, UCDs
    (``meta['ucd']``) and the header keywords in ``Table.meta``, as for the FITS catalogue.
    """
    from astropy.table import meta as table_meta

    table = Table(meta=dict(header))
    for spec in specs:
        arr = arrays[spec.name][:0]  # the YAML describes columns, not values
        if spec.is_string:
            arr = arr.astype(f"U{max(1, arrays[spec.name].dtype.itemsize)}")
        table.add_column(Column(arr, name=spec.name, unit=spec.unit,
                                description=descriptions.get(spec.name, spec.description), meta={"ucd": spec.ucd}))
    out = {"table_meta_yaml": "\n".join(table_meta.get_yaml_from_table(table))}
    out.update({f"table::len::{s.name}": str(max(1, arrays[s.name].dtype.itemsize)) for s in specs if s.is_string})
    return out


def write_catalog(
    table_or_columns: TableLike,
    path: str | os.PathLike,
    *,
    latent_dim: int,
    header: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    format: Literal["fits", "parquet"] = "fits",
    partial: bool = False,
    descriptions: Mapping[str, str] | None = None,
) -> Path:
    """Write a catalogue atomically; return its path.

    ``table_or_columns``: an astropy Table, a mapping name -> array, or a DataFrame with
    exactly the schema's columns for ``latent_dim`` (any order; written in schema order).
    With ``partial=True`` any subset of them is accepted, written in the given order
    (for query selections).  Values are cast to the schema dtypes; float nulls (masked
    values) become NaN.  ``id`` must be unique and non-empty.

    ``header``: provenance, keyed by the names of :data:`PROVENANCE_KEYWORDS`
    (``software_version``, ``checkpoint_sha256``, ``image_size``, ``crop``, ``config``)
    or by FITS keywords; values are scalars, ``(value, comment)`` pairs, or dicts and
    lists (stored as JSON).  ``DATE``, ``CREATOR`` and ``LATDIM`` are set here.
    ``descriptions``: column -> description replacing the schema's (``TCOMMn``, at most 68
    printable characters), for example the names of the latents.

    Raises :class:`~pipeline.errors.BadInputError` if ``path`` exists and not
    ``overwrite``, if a column does not fit the schema, or a header value cannot be stored.
    """
    if format not in ("fits", "parquet"):
        raise BadInputError(f"unknown catalogue format {format!r} (fits or parquet)")
    path = check_output_file(path, overwrite=overwrite, what="a catalogue file", error=BadInputError)

    columns = _columns_of(table_or_columns)
    specs = _check_names(list(columns), latent_dim, partial)
    nrows = None
    arrays: dict[str, NDArray] = {}
    for spec in specs:
        arrays[spec.name] = _prepare(spec, columns[spec.name], nrows)
        nrows = len(arrays[spec.name])
    if "id" in arrays:
        _check_unique_ids(arrays["id"])
    cards = provenance_cards(header or {})
    described = _check_descriptions(descriptions or {}, specs)

    with atomic_open(path, "wb") as f:
        if format == "fits":
            _fits_hdus(specs, arrays, cards, latent_dim, described).writeto(f)
        else:
            _write_parquet(f, specs, arrays, cards, latent_dim, described)
    return path
