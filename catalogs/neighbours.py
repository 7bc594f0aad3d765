"""Nearest neighbours in the pose-free latents: exact k-nearest-neighbour searches over a catalogue file.

:func:`find_similar`: the ``k`` galaxies nearest to one galaxy (by id or position), among the
rows a filter selects; :func:`all_similar`: every selected galaxy's ``k`` nearest, as a long
table; :func:`write_neighbours`: either table to a file, atomically.  The latents are the
catalogue's ``z_0 ... z_{d-1}`` (:func:`latent_columns`); the metrics (``standardised``, ``euler``)
and the exact search (numpy, k-d tree, faiss) are those of :mod:`catalogs.latent_index`, whose
names are re-exported here.

Needs numpy and astropy (faiss-cpu when present and scipy for the tree, imported only when used);
never torch or prefect.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import numpy as np
from numpy.typing import NDArray

from catalogs.errors import BadInputError
from catalogs.latent_index import (
    BACKENDS,
    MAD_TO_SIGMA,
    METRICS,
    Embedding,
    NeighbourIndex,
    default_backend,
    embed,
)
from catalogs.schema import LATENT_PREFIX

__all__ = [
    "METRICS",
    "BACKENDS",
    "MAD_TO_SIGMA",
    "Embedding",
    "NeighbourIndex",
    "SHOWN_COLUMNS",
    "latent_columns",
    "embed",
    "default_backend",
    "find_similar",
    "all_similar",
    "write_neighbours",
]

_LATENT_RE = re.compile(re.escape(LATENT_PREFIX) + r"(0|[1-9][0-9]*)")
#: catalogue columns carried into a search's result table, when the catalogue has them.
SHOWN_COLUMNS: tuple[str, ...] = ("ra", "dec", "x_pix", "y_pix", "theta_deg", "pa_deg", "moment_axis_ratio",
                                  "recon_mse", "flags")


def latent_columns(names: Sequence[str], *, where: str = "the catalogue") -> list[str]:
    """The latent columns ``z_0 ... z_{d-1}`` among ``names``, in index order.

    Raises :class:`BadInputError` when there are none or when their indices have a gap.
    """
    found = sorted((int(m.group(1)), n) for n in names if (m := _LATENT_RE.fullmatch(n)))
    if not found:
        raise BadInputError(f"{where} has no latent columns {LATENT_PREFIX}0, {LATENT_PREFIX}1, ... "
                            "(is it a catalogue written by `galaxy-codae infer`?)")
    ks = [k for k, _ in found]
    if ks != list(range(len(ks))):
        missing = sorted(set(range(max(ks) + 1)) - set(ks))[0]
        raise BadInputError(f"{where} has latent columns up to {LATENT_PREFIX}{max(ks)} "
                            f"but no {LATENT_PREFIX}{missing}")
    return [n for _, n in found]


def _ids(values) -> NDArray[np.str_]:
    return np.asarray(np.asarray(values).tolist(), dtype=np.str_)


def _latents(columns, zcols: list[str]) -> NDArray[np.float64]:
    """(N, d) float64 latents from a table or a dict of columns."""
    return np.stack([np.asarray(columns[c], dtype=np.float64) for c in zcols], axis=1)


def _find_query(cat, catalog, id: str | None, position: tuple[float, float, float] | None) -> tuple[int, str]:
    """Row and id of the query galaxy in the whole catalogue: by id, or the nearest to a position."""
    if (id is None) == (position is None):
        raise BadInputError("give the query galaxy by id or by position (ra, dec), not both or neither")
    if id is not None:
        ids = _ids(cat.read_arrays(["id"])["id"])
        rows = np.flatnonzero(ids == str(id))
        if len(rows) == 0:
            raise BadInputError(f"id {id!r} is not in {catalog}")
        return int(rows[0]), str(id)
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    ra, dec, radius_deg = position
    cols = cat.read_arrays(["id", "ra", "dec"])
    good = np.flatnonzero(np.isfinite(cols["ra"]) & np.isfinite(cols["dec"]))
    if len(good) == 0:
        raise BadInputError(f"{catalog} has no row with a finite ra and dec")
    sep = SkyCoord(cols["ra"][good] * u.deg, cols["dec"][good] * u.deg).separation(
        SkyCoord(ra * u.deg, dec * u.deg)).arcsec
    best = int(np.argmin(sep))
    row, found = int(good[best]), str(_ids(cols["id"][good[best]:good[best] + 1])[0])
    if sep[best] > radius_deg * 3600.0:
        raise BadInputError(f"no galaxy of {catalog} within {radius_deg * 3600:.3g} arcsec of ra {ra:.6f}, "
                            f"dec {dec:+.6f}; the nearest, {found}, is {sep[best]:.3g} arcsec away")
    return row, found


def _meta(catalog, where: str | None, metric: str, backend: str, latent_dim: int, searched: int) -> dict:
    """A search's provenance, as FITS keywords."""
    from pathlib import Path

    return {"CATALOG": Path(catalog).name, "SELECT": where or "", "METRIC": metric, "BACKEND": backend,
            "LATDIM": int(latent_dim), "NSEARCH": int(searched)}


def _result_columns(names: Sequence[str]) -> list[str]:
    return ["id"] + [c for c in SHOWN_COLUMNS if c in names]


def find_similar(catalog, *, id: str | None = None, position: tuple[float, float, float] | None = None, k: int = 12,
                 where: str | None = None, metric: str = "standardised", backend: str = "auto"):
    """The ``k`` galaxies of ``catalog`` nearest to one galaxy in the pose-free latents.

    The query is ``id``, or the galaxy nearest to ``position = (ra_deg, dec_deg, radius_deg)``
    (none within the radius is an error).  Neighbours come from the rows matching ``where``
    (a row filter of :mod:`catalogs.rowfilter`; all rows when blank), never the query itself.
    Returns an astropy Table: the query first (``rank`` 0, ``distance`` 0), then the
    neighbours nearest first (``rank`` 1 ... k), with ``id``, ``distance`` and the catalogue's
    :data:`SHOWN_COLUMNS`.  ``meta`` records the catalogue, selection, metric, backend, latent size and rows searched
    (FITS keywords ``CATALOG SELECT METRIC BACKEND LATDIM NSEARCH``).
    Raises :class:`BadInputError` (one line) for an unknown id, a catalogue without latents,
    an empty selection or ``k`` larger than the selection.
    """
    from catalogs.fits_io import open_catalog
    from catalogs.select import query_catalog

    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise BadInputError(f"--k must be a positive integer, got {k!r}")
    with open_catalog(catalog) as cat:
        zcols = latent_columns(cat.names, where=str(catalog))
        row, query_id = _find_query(cat, catalog, id, position)
        shown = _result_columns(cat.names)
        query = cat.read(shown + zcols, np.array([row]))
        reference = _latents(cat.read_arrays(zcols), zcols)
    table = query_catalog(catalog, where, shown + zcols)
    ids = _ids(table["id"])
    self_rows = np.flatnonzero(ids == query_id)
    n_candidates = len(table) - len(self_rows)
    what = f"match {where!r}" if where and where.strip() else "are in the catalogue"
    if n_candidates == 0:
        raise BadInputError(f"no galaxies other than {query_id} {what}; nothing to search")
    if k > n_candidates:
        raise BadInputError(f"--k {k} is larger than the {n_candidates} galaxies that {what} "
                            f"(besides {query_id}); ask for at most {n_candidates}")
    points, embedding = embed(_latents(table, zcols), metric, reference=reference)
    index = NeighbourIndex(points, backend=backend)
    zq = _latents(query, zcols)
    if not np.isfinite(zq).all():
        raise BadInputError(f"{query_id} has non-finite latents in {catalog}")
    exclude = np.array([self_rows[0] if len(self_rows) else -1])
    dist, idx = index.search(embedding(zq), int(k), exclude=exclude)
    result = table[shown][idx[0]]
    result = _stack_query(query[shown], result, dist[0])
    result.meta = _meta(catalog, where, metric, index.backend, len(zcols), n_candidates)
    return result


def _stack_query(query, neighbours, dist):
    """One table: the query (rank 0, distance 0) then the neighbours, with rank and distance after id."""
    from astropy.table import Column, vstack

    out = vstack([query, neighbours], metadata_conflicts="silent")
    n = len(out)
    out.add_column(Column(np.arange(n, dtype=np.int32), name="rank",
                          description="0: the query galaxy; 1 ... k: its neighbours, nearest first"), index=0)
    out.add_column(Column(np.concatenate([[0.0], dist]).astype(np.float32), name="distance",
                          description="distance to the query in the latent metric"), index=2)
    return out


def all_similar(catalog, *, k: int = 10, where: str | None = None, metric: str = "standardised",
                backend: str = "auto", progress: Callable[[int, int, float], None] | None = None):
    """Every selected galaxy's ``k`` nearest other selected galaxies, as a long table.

    One row per (galaxy, neighbour): ``id``, ``rank`` (1 nearest ... k), ``nn_id``, ``nn_dist``;
    ``meta`` as :func:`find_similar`.  ``progress(done, total, seconds)`` after each block.
    """
    from astropy.table import Column, Table

    from catalogs.fits_io import open_catalog
    from catalogs.select import query_catalog

    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise BadInputError(f"--k must be a positive integer, got {k!r}")
    with open_catalog(catalog) as cat:
        zcols = latent_columns(cat.names, where=str(catalog))
        reference = _latents(cat.read_arrays(zcols), zcols)
    table = query_catalog(catalog, where, ["id"] + zcols)
    what = f"match {where!r}" if where and where.strip() else "are in the catalogue"
    if k > len(table) - 1:
        raise BadInputError(f"--k {k} is larger than the {max(len(table) - 1, 0)} other galaxies "
                            f"each galaxy can have as neighbours ({len(table)} {what})")
    points, _ = embed(_latents(table, zcols), metric, reference=reference)
    index = NeighbourIndex(points, backend=backend)
    dist, idx = index.all_neighbours(int(k), progress=progress)
    ids = _ids(table["id"])
    n = len(ids)
    out = Table(meta=_meta(catalog, where, metric, index.backend, len(zcols), n))
    out.add_column(Column(np.repeat(ids, k), name="id", description="object id of the query galaxy"))
    out.add_column(Column(np.tile(np.arange(1, k + 1, dtype=np.int16), n), name="rank",
                          description="rank of the neighbour, 1 = nearest"))
    out.add_column(Column(ids[idx.ravel()], name="nn_id", description="object id of the neighbour"))
    out.add_column(Column(dist.ravel().astype(np.float32), name="nn_dist",
                          description=f"distance in the {metric} latents"))
    return out


def write_neighbours(table, out, *, format: str | None = None, overwrite: bool = False, inputs: Sequence = ()):
    """Write a search's table (:func:`find_similar` or :func:`all_similar`) to ``out``, atomically.

    The format comes from ``format`` or the extension (:mod:`catalogs.formats`: FITS, Parquet,
    CSV, ECSV, VOTable).  The tables hold columns outside the catalogue schema, so FITS and
    Parquet are written by astropy directly, signed as this project's (``--overwrite`` may
    replace them later).  Returns the path.
    """
    from pathlib import Path

    from catalogs import __version__
    from catalogs.atomic import SIGNATURE, atomic_path, check_output_file
    from catalogs.formats import output_format, write_table

    out = Path(out)
    fmt = output_format(out, format)
    meta = dict(table.meta)
    if fmt not in ("fits", "parquet"):  # the text formats' writer checks ``out`` itself
        return write_table(table, out, format=fmt, header=meta, overwrite=overwrite, inputs=inputs)
    check_output_file(out, overwrite=overwrite, inputs=inputs, error=BadInputError)
    copy = table.copy(copy_data=False)
    copy.meta = {"CREATOR": f"{SIGNATURE} {__version__}", **meta}
    if fmt == "parquet":
        copy.meta["galaxy_codae.header"] = dict(meta)  # the mark catalogs.atomic reads as this project's
    with atomic_path(out, suffix=".part") as tmp:
        copy.write(tmp, format=fmt)
    return out
