"""Output formats of a catalogue selection: files (FITS, Parquet, CSV, ECSV, VOTable) and text.

The format of an output file comes from ``format`` when given, else from the file name's
extension (:data:`EXTENSIONS`); any other extension is a :class:`BadInputError` raised by
:func:`output_format` before any work is done.

================  ===================  ======================================================
format            extensions           what it keeps
================  ===================  ======================================================
``fits``          .fits .fit .fts      units, UCDs, descriptions, provenance header (the
                                       catalogue writer, :mod:`catalogs.fits_io`)
``parquet``       .parquet .pq         the same, in astropy's own metadata: ``Table.read``
                                       gives units, descriptions and string ids back
``ecsv``          .ecsv                the same, in the ECSV YAML header
``votable``       .vot .xml .votable   units, UCDs, descriptions; the header as ``INFO``
``csv``           .csv                 column names and values only (for spreadsheets, pandas)
================  ===================  ======================================================

Ids are strings in every format (the FITS file stores them as ASCII; read it with
:func:`catalogs.fits_io.read_catalog`, or ``Table.read(path, character_as_bytes=False)``).
Every file is written atomically (:mod:`catalogs.atomic`).  An existing output is replaced
only with ``overwrite`` and only when this project wrote it: FITS and Parquet carry the
signature checked by :func:`catalogs.atomic.overwrite_refusal`; an ECSV or VOTable file
names ``galaxy-codae`` in its header; a CSV file's header row holds only catalogue columns.

:func:`format_text` gives the fixed-width text table ``galaxy-codae query`` prints.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from astropy.table import Table
from numpy.typing import NDArray

from catalogs import __version__
from catalogs.atomic import SIGNATURE, atomic_path, check_output_file, overwrite_refusal
from catalogs.errors import BadInputError
from catalogs.fits_header import utc_now
from catalogs.fits_io import write_catalog
from catalogs.schema import LATENT_PREFIX, column_spec

__all__ = ["EXTENSIONS", "FORMATS", "format_text", "output_format", "write_table"]

#: format -> the file extensions that choose it.
EXTENSIONS: dict[str, tuple[str, ...]] = {
    "fits": (".fits", ".fit", ".fts"),
    "parquet": (".parquet", ".pq"),
    "csv": (".csv",),
    "ecsv": (".ecsv",),
    "votable": (".vot", ".xml", ".votable"),
}
FORMATS: tuple[str, ...] = tuple(EXTENSIONS)
_ALL = ", ".join(e for exts in EXTENSIONS.values() for e in exts)


def output_format(path: str | os.PathLike, format: str | None = None) -> str:
    """The format an output file is written in: ``format``, or the one its extension names.

    Raises :class:`BadInputError` for an unknown format or an extension of none of them.
    """
    if format is not None:
        if format not in EXTENSIONS:
            raise BadInputError(f"unknown output format {format!r} (one of {', '.join(FORMATS)})")
        return format
    suffix = Path(path).suffix.lower()
    for name, exts in EXTENSIONS.items():
        if suffix in exts:
            return name
    shown = f"extension {suffix!r}" if suffix else "no extension"
    raise BadInputError(f"{path}: {shown} names no output format; use one of {_ALL} (or --format)")


# ---------------------------------------------------------------- files


def _latent_dim(table: Table) -> int:
    latdim = table.meta.get("LATDIM")
    if isinstance(latdim, (int, np.integer)) and latdim > 0:
        return int(latdim)
    ks = [int(n[len(LATENT_PREFIX) :]) for n in table.colnames if n.startswith(LATENT_PREFIX) and column_spec(n)]
    return max(ks, default=0) + 1


def _text_signed(path: Path, fmt: str) -> bool:
    """Whether an ECSV or VOTable header names this project, or a CSV header holds only catalogue columns."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            head = [line for _, line in zip(range(2000), f)]
    except OSError:
        return False
    if fmt == "csv":
        names = head[0].strip().split(",") if head else []
        return bool(names) and all(column_spec(n.strip().strip('"')) is not None for n in names)
    if fmt == "ecsv":
        header = [line for line in head if line.startswith("#")]
        return bool(header) and header[0].startswith("# %ECSV") and any(SIGNATURE in line for line in header)
    return any(SIGNATURE in line for line in head if "<DATA>" not in line) and head[0].startswith("<?xml")


def _check_target(out: Path, fmt: str, overwrite: bool, inputs: Sequence[str | os.PathLike]) -> None:
    """Refuse ``out`` as :func:`catalogs.atomic.check_output_file` does; a text file signed here is ours too."""

    def may_replace(path: Path) -> str | None:
        why = overwrite_refusal(path, inputs=inputs)
        foreign = why == "it is a file galaxy-codae did not write"
        return None if foreign and fmt in ("csv", "ecsv", "votable") and _text_signed(path, fmt) else why

    check_output_file(out, overwrite=overwrite, may_replace=may_replace, error=BadInputError)


def _header_meta(header: Mapping[str, Any]) -> dict[str, Any]:
    """Header items as plain values (a ``(value, comment)`` pair keeps its value)."""
    out = {}
    for key, item in header.items():
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], str):
            item = item[0]
        out[str(key)] = item.item() if isinstance(item, np.generic) else item
    return out


def _write_votable(table: Table, path: Path, meta: Mapping[str, Any]) -> None:
    from astropy.io.votable import from_table
    from astropy.io.votable.tree import Info

    vot = from_table(table)
    resource = vot.resources[0]
    for key, value in meta.items():
        resource.infos.append(Info(name=key, value=str(value)))
    vot.to_xml(str(path))


def write_table(table: Table, out: str | os.PathLike, *, format: str | None = None,
                header: Mapping[str, Any] | None = None, overwrite: bool = False,
                inputs: Sequence[str | os.PathLike] = ()) -> Path:
    """Write a catalogue selection ``table`` to ``out`` in ``format`` (default: from the extension).

    ``header``: provenance to record (FITS keywords -> values or ``(value, comment)``); the
    FITS and Parquet forms also check every column against the catalogue schema.
    ``inputs``: the step's input files, which ``out`` may never replace.
    """
    out = Path(out)
    fmt = output_format(out, format)
    _check_target(out, fmt, overwrite, inputs)
    header = dict(header or {})
    if fmt in ("fits", "parquet"):
        return write_catalog(table, out, latent_dim=_latent_dim(table), header=header, overwrite=True,
                             format=fmt, partial=True)  # fmt: skip
    meta = {"DATE": utc_now(), "CREATOR": f"{SIGNATURE} {__version__}", **_header_meta(header)}
    copy = Table(table, copy=False)
    copy.meta = meta
    with atomic_path(out) as tmp:
        if fmt == "csv":
            copy.meta = {}
            copy.write(tmp, format="ascii.csv")
        elif fmt == "ecsv":
            copy.write(tmp, format="ascii.ecsv")
        else:
            copy.meta = {}
            _write_votable(copy, tmp, meta)
    return out


# ---------------------------------------------------------------- text


def _printf(name: str, arr: NDArray) -> tuple[int, str]:
    """(minimum width, printf conversion without width) for a column, from the schema's TDISP."""
    if arr.dtype.kind in "US":
        return (max(1, int(np.char.str_len(arr).max())) if arr.size else 1), "s"
    spec = column_spec(name)
    tdisp = spec.tdisp if spec is not None else ("I11" if arr.dtype.kind in "iub" else "G14.7")
    code, width, digits = re.fullmatch(r"([FEGI])(\d+)(?:\.(\d+))?", tdisp).groups()
    if code == "I":
        return int(width), "d"
    return int(width), f".{digits}{ {'F': 'f', 'E': 'E', 'G': 'G'}[code] }"


def format_text(table: Table, chunk: int = 20_000) -> Iterator[str]:
    """Lines of a fixed-width text table: names, units, a rule, then one line per row.

    Numbers use the schema's display formats (TDISP) and are right-aligned; strings are
    left-aligned.  NaN (null) prints as ``nan``.
    """
    names = table.colnames
    units = [str(table[n].unit) if table[n].unit is not None else "" for n in names]
    cells, widths, lefts = [], [], []
    for name, unit in zip(names, units):
        width, conv = _printf(name, np.asarray(table[name]))
        width = max(width, len(name), len(unit))
        left = conv == "s"
        cells.append(f"%-{width}s" if left else f"%{width}{conv}")
        widths.append(width)
        lefts.append(left)

    def pad(text: str, width: int, left: bool) -> str:
        return text.ljust(width) if left else text.rjust(width)

    yield " ".join(pad(n, w, lf) for n, w, lf in zip(names, widths, lefts)).rstrip()
    if any(units):
        yield " ".join(pad(t, w, lf) for t, w, lf in zip(units, widths, lefts)).rstrip()
    yield " ".join("-" * w for w in widths)
    line = " ".join(cells)
    for start in range(0, len(table), chunk):
        columns = [np.asarray(table[n][start : start + chunk]).tolist() for n in names]
        for row in zip(*columns):
            yield (line % row).rstrip()
