"""Object ids: one way to hold them and one way to find them in a store (by id, never by position).

A store may hold numpy 2's variable-width strings (``StringDType``, kind ``"T"``), a FITS
catalogue bytes, a Parquet file Python strings; :func:`as_str_ids` makes any of them a
fixed-width unicode array, and :func:`match_ids` finds each id's row in another id array by
sorting once (``O((n + m) log m)``, no Python loop).  The inference merge and the stacks use it.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["as_str_ids", "match_ids"]


def as_str_ids(ids: ArrayLike) -> NDArray[np.str_]:
    """Ids as a fixed-width unicode array (from str, bytes, object or variable-width string arrays)."""
    arr = np.asarray(ids)
    if arr.dtype.kind == "S":
        return np.char.decode(arr, "ascii")
    if arr.dtype.kind == "U":
        return arr
    return np.asarray(arr.tolist(), dtype=np.str_)


def match_ids(ids: ArrayLike, reference: ArrayLike) -> NDArray[np.int64]:
    """Row of each of ``ids`` in ``reference`` (-1 where an id is not there).

    ``reference`` should hold each id once; with duplicates, one of their rows is returned.
    """
    ids, reference = as_str_ids(ids), as_str_ids(reference)
    out = np.full(len(ids), -1, dtype=np.int64)
    if len(reference) == 0 or len(ids) == 0:
        return out
    order = np.argsort(reference, kind="stable")
    ordered = reference[order]
    pos = np.minimum(np.searchsorted(ordered, ids), len(ordered) - 1)
    found = ordered[pos] == ids
    out[found] = order[pos[found]]
    return out
