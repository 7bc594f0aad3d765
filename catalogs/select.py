"""Row filters and cone searches applied to tables and catalogue files.

:func:`row_mask` and :func:`select_rows` work on in-memory tables; :func:`query_catalog`,
:func:`count` and :func:`write_selection` on catalogue files (FITS or Parquet), reading only
the columns the filter needs before the selected rows of the chosen columns.  A cone
(:class:`Cone`, :func:`parse_cone`) selects by position with astropy's coordinates
(great-circle separation on ICRS ``ra``/``dec``); with a filter as well, a row must pass both.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from astropy.table import Table
from numpy.typing import NDArray

from catalogs.atomic import check_absent
from catalogs.errors import BadInputError, QueryError
from catalogs.fits_header import WRITER_KEYWORDS
from catalogs.fits_io import open_catalog
from catalogs.formats import output_format, write_table
from catalogs.rowfilter import compile_filter, describe_names, is_blank

__all__ = ["Cone", "count", "parse_cone", "query_catalog", "row_mask", "select_rows", "write_selection"]


@dataclass(frozen=True)
class Cone:
    """A circle on the sky: centre ``ra_deg``, ``dec_deg`` (ICRS, degrees) and ``radius_deg``."""

    ra_deg: float
    dec_deg: float
    radius_deg: float

    def describe(self) -> str:
        """The cone as ``RA DEC RADIUS`` in degrees (for headers and messages)."""
        return f"{self.ra_deg:.7f} {self.dec_deg:+.7f} {self.radius_deg:.7g}deg"

    def mask(self, ra: NDArray, dec: NDArray) -> NDArray[np.bool_]:
        """True for positions within the radius (great-circle separation; NaN positions are outside)."""
        from astropy import units as u
        from astropy.coordinates import SkyCoord

        ra, dec = np.asarray(ra, dtype=np.float64), np.asarray(dec, dtype=np.float64)
        good = np.isfinite(ra) & np.isfinite(dec) & (np.abs(dec) <= 90)
        out = np.zeros(ra.shape, dtype=bool)
        if good.any():
            centre = SkyCoord(self.ra_deg * u.deg, self.dec_deg * u.deg, frame="icrs")
            points = SkyCoord(ra[good] * u.deg, dec[good] * u.deg, frame="icrs")
            out[good] = points.separation(centre).deg <= self.radius_deg
        return out


def _angle(text: str | float, what: str, unit) -> float:
    from astropy.coordinates import Angle

    try:
        return float(text) if not isinstance(text, str) or _is_number(text) else Angle(text, unit=unit).deg
    except (ValueError, TypeError) as e:
        raise QueryError(f"--cone: cannot read the {what} {text!r} ({e})") from None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def parse_cone(ra: str | float, dec: str | float, radius: str) -> Cone:
    """A :class:`Cone` from text: ``ra``/``dec`` in degrees (or sexagesimal, ``10h21m00s``
    ``+12d30m``), ``radius`` with an angular unit (``5arcsec``, ``1.5arcmin``, ``0.1deg``).

    Raises :class:`QueryError` for a radius without a unit or with a non-angular one, a
    radius outside (0, 180] degrees, or a centre off the sky.
    """
    from astropy import units as u

    ra_deg = _angle(ra, "right ascension", u.hourangle if isinstance(ra, str) and "h" in ra else u.deg)
    dec_deg = _angle(dec, "declination", u.deg)
    text = str(radius).strip()
    if _is_number(text):
        raise QueryError(f"--cone: the radius {text!r} needs a unit, e.g. {text}arcsec, {text}arcmin or {text}deg")
    try:
        quantity = u.Quantity(text)
        radius_deg = float(quantity.to_value(u.deg))
    except (ValueError, TypeError, u.UnitsError) as e:
        raise QueryError(f"--cone: the radius {text!r} is not an angle ({str(e).splitlines()[0]})") from None
    if not (np.isfinite(ra_deg) and np.isfinite(dec_deg) and -90 <= dec_deg <= 90):
        raise QueryError(f"--cone: centre ({ra}, {dec}) is not on the sky (declination in [-90, 90] degrees)")
    if not 0 < radius_deg <= 180:
        raise QueryError(f"--cone: the radius must be in (0, 180] degrees, got {text}")
    return Cone(float(np.mod(ra_deg, 360.0)), dec_deg, radius_deg)


def _table_columns(table: Table | Mapping[str, Any]) -> dict[str, NDArray]:
    if isinstance(table, Table):
        return {name: np.asarray(table[name]) for name in table.colnames}
    return {name: np.asarray(col) for name, col in table.items()}


def _cone_columns(names: Sequence[str]) -> tuple[str, str]:
    lower = {n.lower(): n for n in names}
    if "ra" not in lower or "dec" not in lower:
        raise QueryError(f"a cone search needs columns ra and dec; the catalogue has {describe_names(list(names))}")
    return lower["ra"], lower["dec"]


def row_mask(table: Table | Mapping[str, Any], where: str | None, *, cone: Cone | None = None) -> NDArray[np.bool_]:
    """Boolean row selection of an in-memory table (all rows if ``where`` is blank and no ``cone``)."""
    cols = _table_columns(table)
    nrows = len(next(iter(cols.values()))) if cols else 0
    mask = np.ones(nrows, dtype=bool)
    if not is_blank(where):
        rf = compile_filter(where, {name: arr.dtype for name, arr in cols.items()})
        mask = rf.mask(cols, nrows)
    if cone is not None:
        ra, dec = _cone_columns(list(cols))
        mask &= cone.mask(cols[ra], cols[dec])
    return mask


def _output_columns(requested: Sequence[str] | None, available: Sequence[str]) -> list[str]:
    if requested is None:
        return list(available)
    lower: dict[str, list[str]] = {}
    for name in available:
        lower.setdefault(name.lower(), []).append(name)
    out = []
    for name in requested:
        name = name.strip()
        if name in available:
            out.append(name)
        elif len(lower.get(name.lower(), [])) == 1:
            out.append(lower[name.lower()][0])
        else:
            hint = difflib.get_close_matches(name, list(available), n=1)
            more = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise QueryError(f"unknown column {name!r} in the column list{more}; "
                             f"columns: {describe_names(list(available))}")  # fmt: skip
    if not out:
        raise QueryError("the column list is empty")
    if len(set(out)) != len(out):
        raise QueryError("the column list names a column twice")
    return out


def select_rows(table: Table, where: str | None, columns: Sequence[str] | None = None, *,
                cone: Cone | None = None) -> Table:
    """Rows of an in-memory astropy Table matching ``where`` (and ``cone``), with the chosen columns."""
    names = _output_columns(columns, table.colnames)
    return table[names][row_mask(table, where, cone=cone)]


def _selected_rows(cat, where: str | None, cone: Cone | None) -> NDArray | None:
    """Indices of the rows of an open catalogue that pass ``where`` and ``cone`` (None: every row)."""
    if is_blank(where) and cone is None:
        return None
    mask = np.ones(cat.nrows, dtype=bool)
    if not is_blank(where):
        rf = compile_filter(where, cat.dtypes)
        mask = rf.mask(cat.read_arrays(rf.columns), cat.nrows)
    if cone is not None:
        ra, dec = _cone_columns(cat.names)
        arrays = cat.read_arrays([ra, dec])
        mask &= cone.mask(arrays[ra], arrays[dec])
    return np.flatnonzero(mask)


def query_catalog(path: str | os.PathLike, where: str | None, columns: Sequence[str] | None = None, *,
                  cone: Cone | None = None) -> Table:
    """Rows of a catalogue file (FITS or Parquet) matching ``where`` and ``cone``, as an astropy Table.

    Reads only the columns the filter needs, then the chosen ``columns`` (default all)
    of the selected rows.  Columns keep units, descriptions and ``meta['ucd']``; ids are
    strings; the table's ``meta`` holds the catalogue's provenance header.
    """
    with open_catalog(path) as cat:
        names = _output_columns(columns, cat.names)
        return cat.read(names, _selected_rows(cat, where, cone))


def count(path: str | os.PathLike, where: str | None = None, *, cone: Cone | None = None) -> int:
    """Number of rows of a catalogue file matching ``where`` and ``cone`` (all rows if neither)."""
    with open_catalog(path) as cat:
        rows = _selected_rows(cat, where, cone)
        return cat.nrows if rows is None else len(rows)


def write_selection(
    path: str | os.PathLike,
    out: str | os.PathLike,
    where: str | None = None,
    *,
    columns: Sequence[str] | None = None,
    overwrite: bool = False,
    format: str | None = None,
    cone: Cone | None = None,
) -> int:
    """Write the rows of catalogue ``path`` matching ``where`` (and ``cone``) to ``out``; return the row count.

    ``format``: ``fits``, ``parquet``, ``csv``, ``ecsv`` or ``votable`` (default: from the
    extension of ``out``; see :mod:`catalogs.formats`), checked before anything is read.
    The output keeps the schema's units, UCDs and descriptions (where the format can) and
    the source's provenance header, and records the selection (``SELECT``, ``CONE``,
    ``SRCFILE``, ``SRCROWS``).  An empty selection writes an empty table.
    """
    fmt = output_format(out, format)
    check_absent(out, overwrite=overwrite, error=BadInputError)  # before the work, as the writer would after it
    table = query_catalog(path, where, columns, cone=cone)
    with open_catalog(path) as cat:
        source_rows = cat.nrows
    header: dict[str, Any] = {k: v for k, v in table.meta.items() if k not in WRITER_KEYWORDS}  # the writer sets them
    header["SELECT"] = ("" if is_blank(where) else where, "row filter that made this selection")
    if cone is not None:
        header["CONE"] = (cone.describe(), "cone search: RA DEC (deg) and radius")
    header["SRCFILE"] = (Path(path).name, "catalogue the rows were selected from")
    header["SRCROWS"] = (source_rows, "rows in that catalogue")
    write_table(table, out, format=fmt, header=header, overwrite=overwrite, inputs=[path])
    return len(table)
