"""The catalogue rows of an ingest: which are rejected before any cutout is opened, and why.

The reasons of :data:`pipeline.data.readers.REJECT_REASONS` known from the catalogue alone (the
others come from opening and decoding the cutouts): ``missing_id`` (an empty id), ``bad_id`` (one the catalogue cannot hold: :func:`catalogs.schema.id_problem`),
``duplicate_id`` (an id on an earlier row), ``bad_coordinates`` (RA not in [0, 360) or Dec not in
[-90, 90], or not a number) and ``missing_file`` (an empty path).  Each comes with a detail for the
rejects table.  Other catalogue columns are carried into the store (:func:`carried_columns`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from catalogs.schema import id_problem

__all__ = ["CheckedRows", "as_id", "coords", "carry_column", "check_rows", "carried_columns"]


@dataclass(frozen=True)
class CheckedRows:
    """The catalogue's ids, paths and coordinates (degrees), and each row's reject reason and detail (None: kept)."""

    ids: list[str | None]
    paths: list[str | None]
    ra: np.ndarray
    dec: np.ndarray
    reason: list[str | None]
    detail: list[str | None]


def as_id(v: Any) -> str | None:
    """A catalogue cell as a stripped string, None when empty, null or NaN."""
    if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA:
        return None
    s = v.decode() if isinstance(v, bytes) else str(v)
    s = s.strip()
    return s or None


def coords(series: pd.Series, lo: float, hi: float, *, hi_open: bool) -> tuple[np.ndarray, np.ndarray]:
    """(values in degrees, bad mask): unparsable, non-finite or out of [lo, hi] (or [lo, hi))."""
    v = pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(v) | (v < lo) | ((v >= hi) if hi_open else (v > hi))
    return v, bad


def carry_column(s: pd.Series) -> pa.Array:
    """A catalogue column as a plain arrow array: numbers and booleans stay, the rest become strings."""
    if pd.api.types.is_bool_dtype(s.dtype) and not s.isna().any():
        return pa.array(s.to_numpy(dtype=bool))
    if pd.api.types.is_integer_dtype(s.dtype) and not s.isna().any():
        return pa.array(s.to_numpy(dtype=np.int64))
    if pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype):
        return pa.array(s.to_numpy(dtype=np.float64, na_value=np.nan))
    return pa.array(["" if as_id(v) is None else str(v) for v in s], type=pa.string())


def check_rows(df: pd.DataFrame, id_column: str, path_column: str, ra_column: str, dec_column: str) -> CheckedRows:
    """Every row's id, path and coordinates, and the reason it is rejected before decoding (the first that applies)."""
    n = len(df)
    ids = [as_id(v) for v in df[id_column]]
    paths = [as_id(v) for v in df[path_column]]
    ra, bad_ra = coords(df[ra_column], 0.0, 360.0, hi_open=True)
    dec, bad_dec = coords(df[dec_column], -90.0, 90.0, hi_open=False)
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
    return CheckedRows(ids, paths, ra, dec, reason, detail)


def carried_columns(df: pd.DataFrame, used: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """The catalogue columns beside ``used`` that go into the store, and those skipped (unnamed or not a plain name)."""
    extras = [c for c in df.columns if c not in used]
    carried = [c for c in extras if isinstance(c, str) and c and "/" not in c and not c.startswith("__")]
    return carried, [str(c) for c in extras if c not in carried]
