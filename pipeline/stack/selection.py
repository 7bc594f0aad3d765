"""Which cutouts go into which stack, where they are in the store, and how to turn them.

:func:`select` reads the catalogue rows matching a filter (:func:`catalogs.select.query_catalog`),
checks that each has a finite pose, finds each in the store **by id**
(:func:`pipeline.ids.match_ids`, never by position), assigns quantile bins of an optional column
(rows with a NaN there are left out) and converts the pose to what
:func:`pipeline.geometry.align_to_pose` takes: ``theta_deg`` as radians CCW, the centroid from
the original cutout frame to the store frame (:func:`pipeline.conventions.cutout_to_store_pixels`)
and to normalised coordinates (:func:`pipeline.conventions.pixel_to_normalized`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.errors import BadInputError

__all__ = ["Selection", "select"]


@dataclass(frozen=True)
class Selection:
    """The selected rows, in catalogue order.

    ``rows``: store row of each; ``which``: its stack (0-based; -1 when left out for a NaN in the
    binning column); ``edges``: the bins+1 quantile edges (None without binning); ``theta``,
    ``xn``, ``yn``: pose as ``align_to_pose`` takes it; ``table``: the catalogue columns read
    (``id``, pose, the binning column, the pixel-scale column); ``bin_by``: the binning column
    as the catalogue spells it.
    """

    table: object
    rows: np.ndarray
    which: np.ndarray
    edges: np.ndarray | None
    theta: np.ndarray
    xn: np.ndarray
    yn: np.ndarray
    bin_by: str | None
    n_catalog: int

    def order(self) -> np.ndarray:
        """Indices of the rows that are stacked, in store order (contiguous chunk reads)."""
        use = np.flatnonzero(self.which >= 0)
        return use[np.argsort(self.rows[use], kind="stable")]


def _quantile_bins(values: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Bin of each value (-1 for NaN) and the bins+1 quantile edges of the finite values."""
    finite = np.isfinite(values)
    if not finite.any():
        raise BadInputError("the binning column has no finite value among the selected rows")
    edges = np.quantile(values[finite], np.linspace(0.0, 1.0, bins + 1))
    idx = np.searchsorted(edges[1:-1], values, side="right")
    return np.where(finite, idx, -1), edges


def select(catalog: Path, store, where: str | None, *, bin_by: str | None, bins: int,
           extra_columns: tuple[str, ...] = ()) -> Selection:
    """The rows of ``catalog`` matching ``where``, located in the open ``store`` (see the module docstring).

    Raises :class:`BadInputError` for an empty selection, a non-numeric binning column, rows
    without a finite pose or ids missing from the store.
    """
    from catalogs.fits_io import open_catalog
    from catalogs.select import query_catalog
    from pipeline.conventions import cutout_to_store_pixels, pixel_to_normalized
    from pipeline.ids import as_str_ids, match_ids

    with open_catalog(catalog) as cat:
        n_catalog = cat.nrows
        lower = {name.lower(): name for name in cat.names}
    spelled = [lower.get(c.lower(), c) for c in ([bin_by] if bin_by else []) + list(extra_columns)]
    if bin_by is not None:
        bin_by = spelled[0]  # the catalogue's spelling
    columns = list(dict.fromkeys(["id", "x_pix", "y_pix", "theta_deg", *spelled]))
    table = query_catalog(catalog, where, columns)
    shown = f"'{where}'" if where and where.strip() else "(all rows)"
    if len(table) == 0:
        raise BadInputError(f"no rows of {catalog} match {shown}; nothing to stack, nothing written")
    if bin_by is not None:
        if table[bin_by].dtype.kind not in "iuf":
            raise BadInputError(f"--bin-by {bin_by}: not a numeric column")
    x = np.asarray(table["x_pix"], dtype=np.float64)
    y = np.asarray(table["y_pix"], dtype=np.float64)
    theta_deg = np.asarray(table["theta_deg"], dtype=np.float64)
    bad = ~(np.isfinite(x) & np.isfinite(y) & np.isfinite(theta_deg))
    if bad.any():
        raise BadInputError(f"{int(bad.sum())} selected row(s) have no finite x_pix, y_pix or theta_deg "
                            f"(first id {str(table['id'][np.flatnonzero(bad)[0]])!r}); exclude them with --where")
    ids = as_str_ids(table["id"])
    rows = match_ids(ids, store.ids)
    if (rows < 0).any():
        missing = ids[rows < 0]
        raise BadInputError(f"{len(missing)} selected id(s) are not in the store {store.path} "
                            f"(first: {str(missing[0])!r}); was the catalogue made from another store?")
    info = store.info
    xs = cutout_to_store_pixels(x, crop_start=info.crop_start_x, crop_size=info.crop_size, size=info.size)
    ys = cutout_to_store_pixels(y, crop_start=info.crop_start_y, crop_size=info.crop_size, size=info.size)
    if bin_by is not None:
        which, edges = _quantile_bins(np.asarray(table[bin_by], dtype=np.float64), bins)
    else:
        which, edges = np.zeros(len(table), dtype=np.int64), None
    return Selection(table=table, rows=rows, which=which, edges=edges, theta=np.deg2rad(theta_deg),
                     xn=pixel_to_normalized(xs, info.size), yn=pixel_to_normalized(ys, info.size), bin_by=bin_by,
                     n_catalog=n_catalog)
