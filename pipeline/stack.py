"""Derotated stacks of catalogue selections (``galaxy-codae stack``).

Steps
-----
1. Select catalogue rows with :func:`catalogs.query.query_catalog` (``where``; all rows if
   blank) and match them to the store **by id** (never by position).
2. Read the cutouts in store order, in batches (``batch_size`` objects at a time), at the
   store's resolution, scaled to [0, 1] as the model sees them.
3. Recentre and derotate each cutout with :func:`pipeline.geometry.align_to_pose`, the
   model's own transform (bilinear, border padding): the catalogue centroid
   (``x_pix``/``y_pix``, original cutout frame) goes back to the store frame with
   :func:`pipeline.conventions.cutout_to_store_pixels` and to the normalised frame with
   :func:`pipeline.conventions.pixel_to_normalized`; ``theta_deg`` becomes radians CCW.
   The aligned image has the centroid at the centre and the orientation along +x.
4. Combine, streaming (memory independent of the number of galaxies):

   - ``mean``: running per-pixel sums and counts (exact).
   - ``median``: a per-pixel histogram of the aligned intensities over [0, 1] with
     :data:`HIST_BINS` (1024) bins; the median is read from the cumulative counts with linear
     interpolation inside the bin, so it is exact to one bin width (1/1024 of the range).
   - ``clipped``: astropy's sigma clipping (``astropy.stats.sigma_clip`` defaults:
     ``sigma=3``, ``maxiters=5``, ``cenfunc='median'``, ``stdfunc='std'``, iterate until
     nothing changes), per pixel, in two streaming passes.  Pass 1 fills the same histogram;
     the clipping iterations run on it (median and standard deviation of the kept bins, bin
     centres as values), so the clipping bounds are exact to one bin width.  Pass 2 re-reads
     the cutouts and averages the exact values that fall inside the final bounds.

   Memory: one batch of images plus, per stack, ``C x H x W`` sums (mean, clipped) and a
   ``C x H x W x 1024`` int32 histogram (median, clipped: 50 MB for 3 x 64 x 64).
5. Optional binning: ``bin_by`` a numeric column, ``bins`` quantile bins of the selected
   rows (rows with a NaN in that column are left out), one stack per bin.

Output
------
A FITS file written atomically: an empty primary HDU whose header records the catalogue, the
store, the selection, the method and the catalogue's provenance (checkpoint SHA-256, software
version, latent size, image size, crop, inference configuration), and one image HDU per stack
(``STACK``, or ``BIN1`` ... ``BINK``) of shape (C, H, W), float32, intensities on the store's
[0, 1] scale, with ``NSTACK`` and the bin range.  Image rows are in FITS order (row 1 at the
bottom, as FITS viewers expect; :func:`pipeline.conventions.fits_to_display` flips them back).
Beside it, one PNG preview per stack (asinh stretch): ``STACK.png`` or ``STACK_bin1.png`` ...

An empty selection, ids missing from the store, or rows without a finite pose are a
:class:`~pipeline.errors.BadInputError` raised before anything is written.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from pipeline import __version__
from pipeline.errors import BadInputError, ConfigError

__all__ = ["STACK_METHODS", "HIST_BINS", "CLIP_SIGMA", "CLIP_MAXITERS", "StackResult", "stack_catalog",
           "preview_paths", "asinh_preview"]

STACK_METHODS: tuple[str, ...] = ("mean", "median", "clipped")
#: bins of the per-pixel intensity histogram over [0, 1] (median and clipped): exact to 1/HIST_BINS.
HIST_BINS: int = 1024
#: sigma of the clipping (astropy.stats.sigma_clip default).
CLIP_SIGMA: float = 3.0
#: most clipping iterations (astropy.stats.sigma_clip default).
CLIP_MAXITERS: int = 5
_PIXEL_CHUNK = 4096  # pixels per step when reading medians and bounds from the histograms


@dataclass(frozen=True)
class StackResult:
    """One stack.

    ``image``: (C, H, W) float32 in the display frame (row 0 = top), intensities on the
    store's [0, 1] scale, centroid at the centre, orientation along +x; NaN where nothing was
    stacked.  ``n``: galaxies stacked.  ``bin_lo``/``bin_hi``: the bin's range of
    ``bin_column`` (None without binning).  ``extname``: its FITS HDU; ``preview``: its PNG.
    """

    index: int
    n: int
    image: np.ndarray
    extname: str
    bin_column: str | None = None
    bin_lo: float | None = None
    bin_hi: float | None = None
    preview: Path | None = None


# ---------------------------------------------------------------- accumulators


class _Mean:
    """Running per-pixel sums (float64) and count."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.sum = np.zeros(shape, dtype=np.float64)
        self.n = 0

    def add(self, batch: np.ndarray) -> None:  # (B, C, H, W)
        self.sum += batch.sum(axis=0, dtype=np.float64)
        self.n += len(batch)

    def result(self) -> np.ndarray:
        if self.n == 0:
            return np.full(self.sum.shape, np.nan, dtype=np.float32)
        return (self.sum / self.n).astype(np.float32)


def _bin_index(values: np.ndarray, nbins: int) -> np.ndarray:
    """Histogram bin of intensities in [0, 1] (clipped into range)."""
    return np.clip((values * nbins).astype(np.int64), 0, nbins - 1)


class _Histogram:
    """Per-pixel counts of intensities in ``nbins`` bins over [0, 1]: (P, nbins) int32."""

    def __init__(self, shape: tuple[int, ...], nbins: int) -> None:
        import torch

        self.shape = shape
        self.nbins = nbins
        self.npix = int(np.prod(shape))
        self.counts = torch.zeros(self.npix * nbins, dtype=torch.int32)
        self._offsets = np.arange(self.npix, dtype=np.int64) * nbins
        self.n = 0

    def add(self, batch: np.ndarray) -> None:  # (B, C, H, W)
        import torch

        idx = _bin_index(batch.reshape(len(batch), -1), self.nbins) + self._offsets  # (B, P)
        flat = torch.from_numpy(idx.ravel())
        self.counts.index_add_(0, flat, torch.ones(flat.numel(), dtype=torch.int32))
        self.n += len(batch)

    def chunks(self):
        """(pixel slice, counts (p, nbins) float64) in chunks of pixels."""
        counts = self.counts.view(self.npix, self.nbins).numpy()
        for a in range(0, self.npix, _PIXEL_CHUNK):
            sl = slice(a, min(a + _PIXEL_CHUNK, self.npix))
            yield sl, counts[sl].astype(np.float64)


def _hist_median(h: np.ndarray, nbins: int) -> np.ndarray:
    """Median per row of counts ``h`` (p, nbins), interpolated inside its bin; NaN for empty rows."""
    n = h.sum(axis=1)
    cum = np.cumsum(h, axis=1)
    target = 0.5 * n
    k = np.argmax(cum >= target[:, None], axis=1)
    rows = np.arange(len(h))
    before = np.where(k > 0, cum[rows, np.maximum(k - 1, 0)], 0.0)
    inside = h[rows, k]
    frac = np.where(inside > 0, (target - before) / np.where(inside > 0, inside, 1.0), 0.5)
    med = (k + np.clip(frac, 0.0, 1.0)) / nbins
    return np.where(n > 0, med, np.nan)


def _clip_ranges(h: np.ndarray, nbins: int, sigma: float, maxiters: int) -> tuple[np.ndarray, np.ndarray]:
    """Sigma clipping on histograms (p, nbins): the kept bin range [klo, khi] per row.

    Each iteration (as astropy.stats.sigma_clip with cenfunc='median', stdfunc='std') keeps
    the bins whose centre lies within median +- sigma x std of the currently kept bins;
    it stops when the kept range no longer changes or after ``maxiters`` iterations.
    """
    p = len(h)
    centres = (np.arange(nbins) + 0.5) / nbins
    klo = np.zeros(p, dtype=np.int64)
    khi = np.full(p, nbins - 1, dtype=np.int64)
    bins = np.arange(nbins)[None, :]
    for _ in range(maxiters):
        keep = (bins >= klo[:, None]) & (bins <= khi[:, None])
        hk = np.where(keep, h, 0.0)
        n = hk.sum(axis=1)
        med = _hist_median(hk, nbins)
        safe_n = np.where(n > 0, n, 1.0)
        mean = (hk * centres).sum(axis=1) / safe_n
        std = np.sqrt(np.maximum((hk * (centres - mean[:, None]) ** 2).sum(axis=1) / safe_n, 0.0))
        lo, hi = med - sigma * std, med + sigma * std
        new_lo = np.ceil(lo * nbins - 0.5).astype(np.int64)  # first bin with centre >= lo
        new_hi = np.floor(hi * nbins - 0.5).astype(np.int64)  # last bin with centre <= hi
        kmed = np.clip((med * nbins).astype(np.int64), 0, nbins - 1)  # the median's bin is always kept
        new_lo = np.clip(np.minimum(new_lo, kmed), 0, nbins - 1)
        new_hi = np.clip(np.maximum(new_hi, kmed), 0, nbins - 1)
        new_lo, new_hi = np.where(n > 0, new_lo, klo), np.where(n > 0, new_hi, khi)
        if np.array_equal(new_lo, klo) and np.array_equal(new_hi, khi):
            break
        klo, khi = new_lo, new_hi
    return klo, khi


class _Clipped:
    """Sigma-clipped mean in two passes: histogram (pass 1), then exact sums inside the bounds (pass 2)."""

    def __init__(self, shape: tuple[int, ...], nbins: int) -> None:
        self.shape = shape
        self.nbins = nbins
        self.hist = _Histogram(shape, nbins)
        self.klo: np.ndarray | None = None
        self.khi: np.ndarray | None = None
        self.sum = np.zeros(int(np.prod(shape)), dtype=np.float64)
        self.count = np.zeros(int(np.prod(shape)), dtype=np.int64)
        self.n = 0

    def add(self, batch: np.ndarray) -> None:  # pass 1
        self.hist.add(batch)
        self.n += len(batch)

    def finish_pass1(self) -> None:
        klo = np.zeros(self.hist.npix, dtype=np.int64)
        khi = np.zeros(self.hist.npix, dtype=np.int64)
        for sl, h in self.hist.chunks():
            klo[sl], khi[sl] = _clip_ranges(h, self.nbins, CLIP_SIGMA, CLIP_MAXITERS)
        self.klo, self.khi = klo, khi
        self.hist = None  # the histogram is no longer needed: free it before pass 2

    def add_pass2(self, batch: np.ndarray) -> None:
        flat = batch.reshape(len(batch), -1)
        k = _bin_index(flat, self.nbins)
        inside = (k >= self.klo) & (k <= self.khi)
        self.sum += np.where(inside, flat, 0.0).sum(axis=0)
        self.count += inside.sum(axis=0)

    def result(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            out = np.where(self.count > 0, self.sum / np.maximum(self.count, 1), np.nan)
        return out.reshape(self.shape).astype(np.float32)


class _Median:
    def __init__(self, shape: tuple[int, ...], nbins: int) -> None:
        self.shape = shape
        self.hist = _Histogram(shape, nbins)

    @property
    def n(self) -> int:
        return self.hist.n

    def add(self, batch: np.ndarray) -> None:
        self.hist.add(batch)

    def result(self) -> np.ndarray:
        out = np.empty(self.hist.npix, dtype=np.float64)
        for sl, h in self.hist.chunks():
            out[sl] = _hist_median(h, self.hist.nbins)
        return out.reshape(self.shape).astype(np.float32)


# ---------------------------------------------------------------- selection


def preview_paths(out: str | os.PathLike, n_stacks: int) -> list[Path]:
    """PNG preview paths beside ``out``: ``<stem>.png`` for one stack, ``<stem>_bin<k>.png`` for bins."""
    out = Path(out)
    stem = out.name[: -len(out.suffix)] if out.suffix else out.name
    if n_stacks == 1:
        return [out.with_name(f"{stem}.png")]
    return [out.with_name(f"{stem}_bin{k + 1}.png") for k in range(n_stacks)]


def _quantile_bins(values: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Bin of each value (-1 for NaN) and the bins+1 quantile edges of the finite values."""
    finite = np.isfinite(values)
    if not finite.any():
        raise BadInputError("the binning column has no finite value among the selected rows")
    edges = np.quantile(values[finite], np.linspace(0.0, 1.0, bins + 1))
    idx = np.searchsorted(edges[1:-1], values, side="right")
    return np.where(finite, idx, -1), edges


def _pose_in_store(table, info) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Catalogue pose -> (theta radians CCW, x, y normalised store frame)."""
    from pipeline.conventions import cutout_to_store_pixels, pixel_to_normalized

    x = cutout_to_store_pixels(np.asarray(table["x_pix"], dtype=np.float64), crop_start=info.crop_start_x,
                               crop_size=info.crop_size, size=info.size)
    y = cutout_to_store_pixels(np.asarray(table["y_pix"], dtype=np.float64), crop_start=info.crop_start_y,
                               crop_size=info.crop_size, size=info.size)
    theta = np.deg2rad(np.asarray(table["theta_deg"], dtype=np.float64))
    return theta, pixel_to_normalized(x, info.size), pixel_to_normalized(y, info.size)


def _store_rows(ids: np.ndarray, store_ids: np.ndarray, store_path: Path) -> np.ndarray:
    """Store row of each catalogue id; BadInputError naming the first id not in the store."""
    order = np.argsort(store_ids, kind="stable")
    sorted_ids = store_ids[order]
    pos = np.minimum(np.searchsorted(sorted_ids, ids), len(sorted_ids) - 1)
    found = sorted_ids[pos] == ids if len(sorted_ids) else np.zeros(len(ids), dtype=bool)
    if not found.all():
        missing = ids[~found]
        raise BadInputError(f"{len(missing)} selected id(s) are not in the store {store_path} "
                            f"(first: {str(missing[0])!r}); was the catalogue made from another store?")
    return order[pos]


# ---------------------------------------------------------------- writing


def asinh_preview(image: np.ndarray) -> np.ndarray:
    """A display image (H, W, 3) or (H, W) in [0, 1] from a stack (C, H, W), asinh stretch.

    Black at the median of a 4-pixel border ring (the sky), white at the 99.5th percentile
    of the channel mean; one interval for all channels keeps the colours.
    """
    from astropy.visualization import AsinhStretch, ManualInterval

    img = np.nan_to_num(np.asarray(image, dtype=np.float64), nan=0.0)
    lum = img.mean(axis=0)
    ring = np.ones(lum.shape, dtype=bool)
    ring[4:-4, 4:-4] = False
    vmin = float(np.median(lum[ring])) if ring.any() else float(lum.min())
    vmax = float(np.percentile(lum, 99.5))
    if not vmax > vmin:
        vmax = vmin + 1e-6
    norm = AsinhStretch(a=0.1)(ManualInterval(vmin, vmax)(img, clip=True), clip=True)
    if norm.shape[0] == 3:
        return np.moveaxis(norm, 0, -1)
    return norm.mean(axis=0)


def _card_text(value: str) -> str:
    return "".join(c if " " <= c <= "~" else "?" for c in value)


def _set_long(header, key: str, value: Any, comment: str = "") -> bool:
    """Set a card; returns True when a string needs CONTINUE cards (LONGSTRN convention)."""
    from astropy.io import fits

    long = False
    if isinstance(value, str):
        value = _card_text(value)
        long = len(value) > 60
    if long or len(str(fits.Card(key, value)).rstrip()) + 3 + len(comment) > 80:
        comment = ""  # no room on the card (astropy would warn and truncate it)
    header[key] = (value, comment)
    return long


def _write_outputs(out: Path, results: list[StackResult], previews: list[Path | None], primary_cards: list,
                   hdu_cards: list[list]) -> None:
    """FITS and PNGs to temporary names, then renamed into place (nothing half-written)."""
    import matplotlib

    matplotlib.use("Agg")  # no display on compute nodes
    import matplotlib.pyplot as plt
    from astropy.io import fits

    from pipeline.conventions import fits_to_display

    primary = fits.PrimaryHDU()
    long = False
    for key, value, comment in primary_cards:
        long |= _set_long(primary.header, key, value, comment)
    if long:
        primary.header.set("LONGSTRN", "OGIP 1.0", "OGIP long string convention (CONTINUE cards)", after="EXTEND")
    hdus = [primary]
    for res, cards in zip(results, hdu_cards):
        # fits_to_display flips rows; the flip is its own inverse: display -> FITS order here
        hdu = fits.ImageHDU(data=fits_to_display(res.image).astype(np.float32), name=res.extname)
        long = False
        for key, value, comment in cards:
            long |= _set_long(hdu.header, key, value, comment)
        if long:
            hdu.header.set("LONGSTRN", "OGIP 1.0", "OGIP long string convention (CONTINUE cards)")
        hdu.header.add_comment("Rows in FITS order (row 1 at the bottom); centroid at the centre,")
        hdu.header.add_comment("orientation (theta_deg) along +x; intensities on the store [0,1] scale.")
        hdus.append(hdu)

    tmps: list[tuple[Path, Path]] = []
    try:
        for res, png in zip(results, previews):
            if png is None:
                continue
            fd, tmp = tempfile.mkstemp(dir=png.parent, prefix=f".{png.name}.", suffix=".png")
            os.close(fd)
            tmps.append((Path(tmp), png))
            plt.imsave(tmp, asinh_preview(res.image), cmap="gray", vmin=0.0, vmax=1.0, format="png")
        fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".part")
        tmps.append((Path(tmp), out))
        with os.fdopen(fd, "wb") as f:
            fits.HDUList(hdus).writeto(f)
            f.flush()
            os.fsync(f.fileno())
        for tmp, final in tmps:
            os.chmod(tmp, 0o644)
            os.replace(tmp, final)
    except BaseException:
        for tmp, _ in tmps:
            tmp.unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------- the step


_OWN = {"DATE", "CREATOR", "LONGSTRN"}


def stack_catalog(catalog: str | os.PathLike, store: str | os.PathLike, out: str | os.PathLike, *,
                  where: str | None = None, method: Literal["mean", "median", "clipped"] = "mean",
                  bin_by: str | None = None, bins: int = 5, overwrite: bool = False, batch_size: int = 256,
                  previews: bool = True, progress: Callable[[str], None] | None = None) -> list[StackResult]:
    """Stack the derotated cutouts of the catalogue rows matching ``where``; write ``out``; return the stacks.

    ``method``: ``mean``, ``median`` (histogram, exact to 1/1024) or ``clipped`` (3-sigma
    clipped mean, astropy semantics, two passes); see the module docstring.  ``bin_by``/``bins``:
    one stack per quantile bin of that column.  ``batch_size``: cutouts in memory at a time.
    ``previews``: also write one asinh PNG per stack beside ``out``.
    Raises :class:`BadInputError` (nothing written) for an empty selection, ids missing from the
    store, rows without a finite pose or an existing output (unless ``overwrite``), and
    :class:`ConfigError` for a bad method, bin count or batch size.
    """
    import torch

    from catalogs.fits_io import open_catalog
    from catalogs.query import query_catalog
    from pipeline.data.store import open_store
    from pipeline.geometry import align_to_pose

    if method not in STACK_METHODS:
        raise ConfigError(f"unknown stacking method {method!r} (one of {', '.join(STACK_METHODS)})")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
    if bin_by is not None and (isinstance(bins, bool) or not isinstance(bins, int) or bins < 1):
        raise ConfigError(f"bins must be a positive integer, got {bins!r}")
    catalog, out = Path(catalog), Path(out)
    if out.is_dir():
        raise BadInputError(f"{out} is a directory, not a FITS file")
    if not out.parent.is_dir():
        raise BadInputError(f"directory {out.parent} does not exist")
    n_stacks = bins if bin_by is not None else 1
    pngs = preview_paths(out, n_stacks) if previews else []
    if not overwrite:
        for p in [out, *pngs]:
            if p.exists():
                raise BadInputError(f"{p} exists; pass --overwrite (overwrite=True) to replace it")

    columns = ["id", "x_pix", "y_pix", "theta_deg"] + ([bin_by] if bin_by is not None else [])
    columns = list(dict.fromkeys(columns))
    table = query_catalog(catalog, where, columns)
    with open_catalog(catalog) as cat:
        n_catalog = cat.nrows
    shown = f"'{where}'" if where and where.strip() else "(all rows)"
    if len(table) == 0:
        raise BadInputError(f"no rows of {catalog} match {shown}; nothing to stack, nothing written")
    if bin_by is not None:
        bin_by = table.colnames[-1] if len(table.colnames) > 4 else bin_by  # the catalogue's spelling
        if table[bin_by].dtype.kind not in "iuf":
            raise BadInputError(f"--bin-by {bin_by}: not a numeric column")
    theta_deg = np.asarray(table["theta_deg"], dtype=np.float64)
    bad = ~(np.isfinite(table["x_pix"]) & np.isfinite(table["y_pix"]) & np.isfinite(theta_deg))
    if bad.any():
        raise BadInputError(f"{int(bad.sum())} selected row(s) have no finite x_pix, y_pix or theta_deg "
                            f"(first id {str(table['id'][np.flatnonzero(bad)[0]])!r}); exclude them with --where")

    st = open_store(store)
    info = st.info
    ids = np.asarray(np.asarray(table["id"]).tolist(), dtype=np.str_)
    rows = _store_rows(ids, np.asarray(np.asarray(st.ids).tolist(), dtype=np.str_), Path(store))
    theta, xn, yn = _pose_in_store(table, info)
    if bin_by is not None:
        which, edges = _quantile_bins(np.asarray(table[bin_by], dtype=np.float64), bins)
    else:
        which, edges = np.zeros(len(table), dtype=np.int64), None

    use = which >= 0
    order = np.argsort(rows[use], kind="stable")  # store order: contiguous chunk reads
    sel = np.flatnonzero(use)[order]
    shape = (info.channels, info.size, info.size)
    scale = 1.0 / 255.0 if info.dtype == "uint8" else 1.0
    make = {"mean": lambda: _Mean(shape), "median": lambda: _Median(shape, HIST_BINS),
            "clipped": lambda: _Clipped(shape, HIST_BINS)}[method]
    accs = [make() for _ in range(n_stacks)]

    def batches():
        """Aligned cutouts (B, C, H, W) float32 and their stack numbers, in store order."""
        for a in range(0, len(sel), batch_size):
            part = sel[a:a + batch_size]
            imgs = torch.from_numpy(st.read_indices(rows[part]).astype(np.float32) * np.float32(scale))
            aligned = align_to_pose(imgs, torch.from_numpy(theta[part]).float(), torch.from_numpy(xn[part]).float(),
                                    torch.from_numpy(yn[part]).float())
            yield aligned.numpy(), which[part]
            if progress is not None:
                progress(f"stack: {min(a + batch_size, len(sel))}/{len(sel)} cutouts")

    for aligned, k in batches():
        for j in np.unique(k):
            accs[j].add(aligned[k == j])
    if method == "clipped":
        for acc in accs:
            acc.finish_pass1()
        for aligned, k in batches():  # pass 2: exact sums inside the clipping bounds
            for j in np.unique(k):
                accs[j].add_pass2(aligned[k == j])

    results: list[StackResult] = []
    for j, acc in enumerate(accs):
        name = "STACK" if bin_by is None else f"BIN{j + 1}"
        lo = hi = None
        if edges is not None:
            lo, hi = float(edges[j]), float(edges[j + 1])
        png = pngs[j] if previews and acc.n > 0 else None
        results.append(StackResult(index=j, n=int(acc.n), image=acc.result(), extname=name, bin_column=bin_by,
                                   bin_lo=lo, bin_hi=hi, preview=png))

    with open_catalog(catalog) as cat:
        cat_meta = dict(cat.meta)
    primary = [
        ("CREATOR", f"galaxy-codae {__version__}", "software that wrote this file"),
        ("DATE", np.datetime_as_string(np.datetime64("now", "s")), "file creation time (UTC)"),
        ("CATALOG", catalog.name, "catalogue the rows were selected from"),
        ("CATROWS", int(n_catalog), "rows in that catalogue"),
        ("STORE", Path(store).name, "Zarr store the cutouts were read from"),
        ("SELECT", where or "", "row filter (blank: all rows)"),
        ("NSELECT", int(len(table)), "rows selected"),
        ("METHOD", method, "mean, median or clipped"),
        ("NSTACKS", n_stacks, "image HDUs, one per stack"),
    ]
    if method != "mean":
        primary.append(("HISTBINS", HIST_BINS, "histogram bins over [0,1]: exact to 1/HISTBINS"))
    if method == "clipped":
        primary += [("CLIPSIG", CLIP_SIGMA, "sigma clipping: sigma"), ("CLIPITER", CLIP_MAXITERS, "max iterations")]
    if bin_by is not None:
        primary += [("BINCOL", bin_by, "column binned by quantiles"), ("NBINS", bins, "quantile bins"),
                    ("NNULLBIN", int((which < 0).sum()), "selected rows left out: NaN in BINCOL")]
    for key, value in cat_meta.items():  # the catalogue's provenance, as it was
        if key in _OWN or not isinstance(value, (str, int, float, bool)):
            continue
        primary.append((key if key not in ("SWVERS",) else "CATSWV", value, "from the catalogue header"))
    if "DATE" in cat_meta:
        primary.append(("CATDATE", str(cat_meta["DATE"]), "catalogue creation time (UTC)"))
    hdu_cards = []
    for r in results:
        cards = [("METHOD", method, "mean, median or clipped"), ("SELECT", where or "", "row filter"),
                 ("NSTACK", r.n, "galaxies stacked")]
        if bin_by is not None:
            cards += [("BINCOL", bin_by, "column binned by quantiles"), ("BINIDX", r.index + 1, "bin number"),
                      ("BINLO", r.bin_lo, "bin lower edge (inclusive)"),
                      ("BINHI", r.bin_hi, "bin upper edge" + (" (inclusive)" if r.index == n_stacks - 1 else ""))]
        hdu_cards.append(cards)
    _write_outputs(out, results, [r.preview for r in results], primary, hdu_cards)
    return results
