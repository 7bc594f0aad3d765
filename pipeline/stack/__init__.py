"""Derotated stacks of catalogue selections (``galaxy-codae stack``).

Steps
-----
1. Select catalogue rows (``where``; all rows if blank), find them in the store by id, bin them
   by quantiles of a column if asked (:mod:`pipeline.stack.selection`).
2. Read the cutouts in store order, ``batch_size`` at a time, at the store's resolution, scaled
   to [0, 1] as the model sees them.
3. Recentre and derotate each with :func:`pipeline.geometry.align_to_pose`, the model's own
   transform (bilinear, border padding): the aligned image has the centroid at the centre and
   the orientation along +x.
4. Combine, streaming, with a :class:`~pipeline.stack.combiners.Combiner` (``mean``, ``median``,
   ``clipped``: :mod:`pipeline.stack.combiners`); a combiner that needs a second pass over the
   cutouts (the clipped mean) gets one.
5. Write the FITS file and one PNG preview per stack (:mod:`pipeline.stack.output`), with the
   pixel scale (``pixel_scale``: arcsec per original cutout pixel, or a column of the catalogue
   or of the store; else the catalogue header's ``PIXSCALE``), the band of each plane and the
   value scale.

An empty selection, ids missing from the store, rows without a finite pose or an existing
output (unless ``overwrite``, and then only one this project wrote) are a
:class:`~pipeline.errors.BadInputError` raised before anything is written.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from pipeline.errors import BadInputError, ConfigError
from pipeline.progress import Progress, Sink
from pipeline.stack.combiners import CLIP_MAXITERS, CLIP_SIGMA, HIST_BINS, STACK_METHODS, make_combiner
from pipeline.stack.output import DECALS_BANDS, Scale, asinh_preview, preview_paths, write_stacks

__all__ = ["STACK_METHODS", "HIST_BINS", "CLIP_SIGMA", "CLIP_MAXITERS", "StackResult", "stack_catalog",
           "preview_paths", "asinh_preview", "DECALS_BANDS"]


@dataclass(frozen=True)
class StackResult:
    """One stack.

    ``image``: (C, H, W) float32 in the display frame (row 0 = top), intensities on the
    store's [0, 1] scale, centroid at the centre, orientation along +x; NaN where nothing was
    stacked.  ``n``: galaxies stacked.  ``bin_lo``/``bin_hi``: the bin's range of
    ``bin_column`` (None without binning).  ``extname``: its FITS HDU; ``preview``: its PNG;
    ``arcsec_per_pixel``: the pixel scale (None when unknown).
    """

    index: int
    n: int
    image: np.ndarray
    extname: str
    bin_column: str | None = None
    bin_lo: float | None = None
    bin_hi: float | None = None
    preview: Path | None = None
    arcsec_per_pixel: float | None = None


def _bands(bands: Sequence[str] | str | None, channels: int) -> tuple[str, ...]:
    """Band name of each plane: given, ``decals`` (z, r, g: the colour JPEG's R, G, B), or display colours."""
    if isinstance(bands, str):
        bands = DECALS_BANDS if bands.strip().lower() == "decals" else [b.strip() for b in bands.split(",")]
    if bands is None:
        return ("R", "G", "B") if channels == 3 else ("grey",) if channels == 1 else tuple(
            f"plane{k + 1}" for k in range(channels))
    bands = tuple(bands)
    if len(bands) != channels or not all(bands):
        raise ConfigError(f"--bands: {len(bands)} name(s) for a store of {channels} plane(s); give one per plane "
                          "(for example z,r,g) or decals")
    return bands


def _value_scale(info) -> tuple[str, str]:
    """(VALSCALE, BUNIT comment) of the stack's values, from the store's image type."""
    if info.dtype == "uint8":  # JPEG or PNG cutouts: their display values
        return "uint8/255", "dimensionless: 8-bit image values/255, not flux"
    return "input", "the input cutouts' own values (unit as theirs)"


def _pixel_scale(pixel_scale: float | str | None, table, rows: np.ndarray, store, cat_meta: dict) -> Scale | None:
    """The stack's pixel scale in arcsec per stack pixel (see :class:`Scale`), or None when unknown."""
    info = store.info
    per_cutout = info.crop_size / info.size  # original cutout pixels per stack pixel
    if pixel_scale is None:
        value = cat_meta.get("PIXSCALE")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            return Scale(float(value) * per_cutout, "catalogue header PIXSCALE")
        return None
    try:
        value = float(pixel_scale)  # a number (or its text) ...
    except ValueError:
        value = None  # ... or a column name
    if value is not None:
        if not (np.isfinite(value) and value > 0):
            raise ConfigError(f"--pixel-scale must be a positive number of arcsec per cutout pixel, got {pixel_scale}")
        return Scale(value * per_cutout, "--pixel-scale (arcsec per cutout pixel)")
    if pixel_scale in table.colnames:
        values, where = np.asarray(table[pixel_scale], dtype=np.float64), "catalogue"
    elif pixel_scale in store.columns:
        values, where = np.asarray(store.column(pixel_scale), dtype=np.float64)[rows], "store"
    else:
        carried = ", ".join(store.columns) or "none"
        raise BadInputError(f"--pixel-scale {pixel_scale!r}: neither a number nor a column of the catalogue or of "
                            f"the store (carried columns: {carried})")
    if not (np.isfinite(values).all() and (values > 0).all()):
        raise BadInputError(f"--pixel-scale {pixel_scale}: the {where} column has a value that is not a positive "
                            "number among the selected rows")
    arcsec = values * per_cutout
    return Scale(float(np.median(arcsec)), f"{where} column {pixel_scale} (median)",
                 (float(arcsec.min()), float(arcsec.max())))


def stack_catalog(catalog: str | os.PathLike, store: str | os.PathLike, out: str | os.PathLike, *,
                  where: str | None = None, method: Literal["mean", "median", "clipped"] = "mean",
                  bin_by: str | None = None, bins: int = 5, overwrite: bool = False, batch_size: int = 256,
                  previews: bool = True, pixel_scale: float | str | None = None,
                  bands: Sequence[str] | str | None = None, progress: Sink = None) -> list[StackResult]:
    """Stack the derotated cutouts of the catalogue rows matching ``where``; write ``out``; return the stacks.

    ``method``: ``mean``, ``median`` (histogram, exact to 1/1024) or ``clipped`` (3-sigma
    clipped mean, astropy semantics, two passes).  ``bin_by``/``bins``: one stack per quantile
    bin of that column.  ``batch_size``: cutouts in memory at a time.  ``previews``: also write
    one PNG per stack beside ``out``.  ``pixel_scale``: arcsec per original cutout pixel, or the
    name of a catalogue or store column holding it per galaxy (default: the catalogue header's
    ``PIXSCALE``).  ``bands``: the band of each plane (``"decals"``: z, r, g; default: display
    colours).  ``progress``: True for a bar or lines on stderr, a callable for the lines.
    Raises :class:`BadInputError` (nothing written) for an empty selection, ids missing from the
    store, rows without a finite pose or an output it may not replace, and :class:`ConfigError`
    for a bad method, bin count, batch size, band list or pixel scale.
    """
    import torch

    from catalogs.atomic import check_output_file
    from catalogs.fits_header import WRITER_KEYWORDS, printable, utc_now
    from catalogs.fits_io import open_catalog
    from pipeline import __version__
    from pipeline.data.store import open_store
    from pipeline.geometry import align_to_pose
    from pipeline.stack.selection import select

    if method not in STACK_METHODS:
        raise ConfigError(f"unknown stacking method {method!r} (one of {', '.join(STACK_METHODS)})")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
    if bin_by is not None and (isinstance(bins, bool) or not isinstance(bins, int) or bins < 1):
        raise ConfigError(f"bins must be a positive integer, got {bins!r}")
    catalog, out = Path(catalog), Path(out)
    n_stacks = bins if bin_by is not None else 1
    pngs = preview_paths(out, n_stacks) if previews else []
    for p, what in [(out, "a FITS file"), *((png, "a PNG file") for png in pngs)]:
        check_output_file(p, overwrite=overwrite, what=what, inputs=[catalog, store], error=BadInputError)

    st = open_store(store)
    info = st.info
    with open_catalog(catalog) as cat:
        cat_meta, cat_names = dict(cat.meta), set(cat.names)
    scale_column = pixel_scale if isinstance(pixel_scale, str) and pixel_scale in cat_names else None
    sel = select(catalog, st, where, bin_by=bin_by, bins=bins, extra_columns=(scale_column,) if scale_column else ())
    plane_bands = _bands(bands, info.channels)
    order = sel.order()
    scale = _pixel_scale(pixel_scale, sel.table, sel.rows[order], st, cat_meta)
    shape = (info.channels, info.size, info.size)
    factor = np.float32(1.0 / 255.0 if info.dtype == "uint8" else 1.0)
    combiners = [make_combiner(method, shape) for _ in range(n_stacks)]
    images: list[np.ndarray | None] = [None] * n_stacks
    passes = 2 if any(c.needs_second_pass for c in combiners) else 1

    with Progress("stack", len(order) * passes, unit="cutouts", sink=progress) as bar:
        pending = list(range(n_stacks))
        while pending:  # a pass over the selection for every combiner not yet finished
            for a in range(0, len(order), batch_size):
                part = order[a:a + batch_size]
                imgs = torch.from_numpy(st.read_indices(sel.rows[part]).astype(np.float32) * factor)
                aligned = align_to_pose(imgs, torch.from_numpy(sel.theta[part]).float(),
                                        torch.from_numpy(sel.xn[part]).float(),
                                        torch.from_numpy(sel.yn[part]).float()).numpy()  # (B, C, H, W)
                which = sel.which[part]
                for j in np.unique(which):
                    if j in pending:
                        combiners[j].add(aligned[which == j])
                bar.update(len(part))
            for j in pending:
                images[j] = combiners[j].finish()
            pending = [j for j in pending if images[j] is None]

    results: list[StackResult] = []
    for j, comb in enumerate(combiners):
        lo = hi = None
        if sel.edges is not None:
            lo, hi = float(sel.edges[j]), float(sel.edges[j + 1])
        results.append(StackResult(index=j, n=int(comb.n), image=images[j], extname="STACK" if bin_by is None else
                                   f"BIN{j + 1}", bin_column=sel.bin_by, bin_lo=lo, bin_hi=hi,
                                   preview=pngs[j] if previews and comb.n > 0 else None,
                                   arcsec_per_pixel=None if scale is None else scale.arcsec))

    shown_where = printable(where or "")
    primary: list[tuple[str, Any, str]] = [
        ("CREATOR", f"galaxy-codae {__version__}", "software that wrote this file"),
        ("DATE", utc_now(), "file creation time (UTC)"),
        ("CATALOG", printable(catalog.name), "catalogue the rows were selected from"),
        ("CATROWS", int(sel.n_catalog), "rows in that catalogue"),
        ("STORE", printable(Path(store).name), "Zarr store the cutouts were read from"),
        ("SELECT", shown_where, "row filter (blank: all rows)"),
        ("NSELECT", int(len(sel.table)), "rows selected"),
        ("METHOD", method, "mean, median or clipped"),
        ("NSTACKS", n_stacks, "image HDUs, one per stack"),
    ]
    if method != "mean":
        primary.append(("HISTBINS", HIST_BINS, "histogram bins over [0,1]: exact to 1/HISTBINS"))
    if method == "clipped":
        primary += [("CLIPSIG", CLIP_SIGMA, "sigma clipping: sigma"), ("CLIPITER", CLIP_MAXITERS, "max iterations")]
    if bin_by is not None:
        primary += [("BINCOL", sel.bin_by, "column binned by quantiles"), ("NBINS", bins, "quantile bins"),
                    ("NNULLBIN", int((sel.which < 0).sum()), "selected rows left out: NaN in BINCOL")]
    own = {key for key, _, _ in primary} | set(WRITER_KEYWORDS)
    for key, value in cat_meta.items():  # the catalogue's provenance, as it was
        if key in own or not isinstance(value, (str, int, float, bool)):
            continue
        if isinstance(value, float) and not np.isfinite(value):
            continue
        primary.append(("CATSWV" if key == "SWVERS" else key, value, "from the catalogue header"))
    if "DATE" in cat_meta:
        primary.append(("CATDATE", str(cat_meta["DATE"]), "catalogue creation time (UTC)"))

    stacks = []
    for r in results:
        cards: list[tuple[str, Any, str]] = [("METHOD", method, "mean, median or clipped"),
                                             ("SELECT", shown_where, "row filter"), ("NSTACK", r.n, "galaxies stacked")]
        title = f"{r.extname}: {r.n} galaxies, {method}"
        if bin_by is not None:
            last = r.index == n_stacks - 1
            cards += [("BINCOL", sel.bin_by, "column binned by quantiles"), ("BINIDX", r.index + 1, "bin number"),
                      ("BINLO", r.bin_lo, "bin lower edge (inclusive)"),
                      ("BINHI", r.bin_hi, "bin upper edge" + (" (inclusive)" if last else ""))]
            title += f"\n{sel.bin_by} in [{r.bin_lo:.4g}, {r.bin_hi:.4g}{']' if last else ')'}"
        stacks.append((r.extname, r.image, cards, title))
    write_stacks(out, stacks, primary, [r.preview for r in results], bands=plane_bands, value_scale=_value_scale(info),
                 scale=scale)
    return results
