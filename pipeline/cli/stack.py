"""``galaxy-codae stack CAT.fits --store STORE [--where EXPR] --out STACK.fits [--method mean|median|clipped]``.

Recentres and derotates each selected cutout by its catalogue centroid and orientation and
stacks them (streaming; see :mod:`pipeline.stack` for the median and clipping methods).
``--bin-by COL --bins K`` makes one stack per quantile bin of COL (one FITS HDU each).
Writes STACK.fits and one asinh PNG preview per stack beside it; with the pixel scale known
(``--pixel-scale``, or the catalogue's ``PIXSCALE``), the FITS axes are in arcsec and the
previews carry a scale bar.  An empty selection or ids missing from the store exit 2 with one
line, and nothing is written.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.cli.common import add_catalog_argument, catalog_path

EXAMPLES = """\
examples:
  galaxy-codae stack galaxies.fits --store survey.zarr --where "moment_axis_ratio < 0.6" --out flat.fits --method median
  galaxy-codae stack galaxies.fits --store survey.zarr --out bins.fits --bin-by z_0 --bins 3 --pixel-scale 0.262 \\
      --bands decals"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_catalog_argument(p, "catalogue written by `galaxy-codae infer`")
    p.add_argument("--store", required=True, type=Path, help="the Zarr store the catalogue was made from")
    p.add_argument("--where", metavar="EXPR", default=None, help="row filter (see `galaxy-codae query`); default all")
    p.add_argument("--out", required=True, type=Path, help="FITS file to write (PNG previews go beside it)")
    p.add_argument("--method", choices=["mean", "median", "clipped"], default="mean",
                   help="mean; median (histogram, exact to 1/1024); clipped (3-sigma clipped mean)")
    p.add_argument("--bin-by", metavar="COL", default=None, help="one stack per quantile bin of this column")
    p.add_argument("--bins", type=int, default=5, help="number of quantile bins for --bin-by")
    p.add_argument("--pixel-scale", metavar="ARCSEC|COLUMN", default=None,
                   help="arcsec per pixel of the original cutouts, or a catalogue or store column holding it per "
                        "galaxy (default: the catalogue header's PIXSCALE, else unknown)")
    p.add_argument("--bands", metavar="NAMES", default=None,
                   help="band of each image plane, comma-separated (z,r,g), or decals for a Legacy Survey colour "
                        "JPEG (z, r, g in R, G, B) (default: the display colours R,G,B)")
    p.add_argument("--batch-size", type=int, default=256, help="cutouts in memory at a time")
    p.add_argument("--no-preview", action="store_true", help="do not write PNG previews")
    p.add_argument("--overwrite", action="store_true", help="replace outputs that galaxy-codae wrote")
    p.add_argument("--quiet", action="store_true", help="no progress bar or lines")


def run(args: argparse.Namespace) -> int:
    from pipeline.stack import stack_catalog

    results = stack_catalog(catalog_path(args), args.store, args.out, where=args.where, method=args.method,
                            bin_by=args.bin_by, bins=args.bins, overwrite=args.overwrite,
                            batch_size=args.batch_size, previews=not args.no_preview, pixel_scale=args.pixel_scale,
                            bands=args.bands, progress=not args.quiet)
    for r in results:
        rng = f" {r.bin_column} in [{r.bin_lo:.4g}, {r.bin_hi:.4g}]" if r.bin_column else ""
        png = f", preview {r.preview}" if r.preview else ""
        print(f"stack: {r.extname}{rng}: {r.n} galaxies ({args.method}){png}")
    scale = f" ({results[0].arcsec_per_pixel:.4g} arcsec per pixel)" if results[0].arcsec_per_pixel else ""
    print(f"stack: wrote {args.out}{scale}")
    return 0
