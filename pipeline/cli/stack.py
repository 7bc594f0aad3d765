"""``galaxy-codae stack CAT.fits --store STORE [--where EXPR] --out STACK.fits [--method mean|median|clipped]``.

Recentres and derotates each selected cutout by its catalogue centroid and orientation and
stacks them (streaming; see :mod:`pipeline.stack` for the median and clipping methods).
``--bin-by COL --bins K`` makes one stack per quantile bin of COL (one FITS HDU each).
Writes STACK.fits and one asinh PNG preview per stack beside it.  An empty selection or ids
missing from the store exit 2 with one line, and nothing is written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("catalog", metavar="CAT", type=Path, help="catalogue written by `galaxy-codae infer`")
    p.add_argument("--store", required=True, type=Path, help="the Zarr store the catalogue was made from")
    p.add_argument("--where", metavar="EXPR", default=None, help="row filter (see `galaxy-codae query`); default all")
    p.add_argument("--out", required=True, type=Path, help="FITS file to write (PNG previews go beside it)")
    p.add_argument("--method", choices=["mean", "median", "clipped"], default="mean",
                   help="mean; median (histogram, exact to 1/1024); clipped (3-sigma clipped mean)")
    p.add_argument("--bin-by", metavar="COL", default=None, help="one stack per quantile bin of this column")
    p.add_argument("--bins", type=int, default=5, help="number of quantile bins for --bin-by (default 5)")
    p.add_argument("--batch-size", type=int, default=256, help="cutouts in memory at a time (default 256)")
    p.add_argument("--no-preview", action="store_true", help="do not write PNG previews")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--quiet", action="store_true", help="no progress lines")


def run(args: argparse.Namespace) -> int:
    import time

    from pipeline.stack import stack_catalog

    last = [0.0]

    def progress(line: str) -> None:
        now = time.monotonic()
        if now - last[0] >= 2.0:
            last[0] = now
            sys.stderr.write(line + "\n")

    results = stack_catalog(args.catalog, args.store, args.out, where=args.where, method=args.method,
                            bin_by=args.bin_by, bins=args.bins, overwrite=args.overwrite,
                            batch_size=args.batch_size, previews=not args.no_preview,
                            progress=None if args.quiet else progress)
    for r in results:
        rng = f" {r.bin_column} in [{r.bin_lo:.4g}, {r.bin_hi:.4g}]" if r.bin_column else ""
        png = f", preview {r.preview}" if r.preview else ""
        print(f"stack: {r.extname}{rng}: {r.n} galaxies ({args.method}){png}")
    print(f"stack: wrote {args.out}")
    return 0
