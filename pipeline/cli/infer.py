"""``galaxy-codae infer --store STORE --checkpoint RUN/checkpoint.pt --out CAT.fits [--workers N]``.

Writes the catalogue of ``../shared/CONTRACT.md``: one row per object in the store.  Work is
cut per store shard; a killed run resumes from ``CAT.fits.partial`` (finished shards are not
recomputed).  Progress goes to stderr as a periodic line with counts and rate.
See :mod:`pipeline.infer`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", required=True, type=Path, help="Zarr store written by `galaxy-codae ingest`")
    p.add_argument("--checkpoint", required=True, type=Path, help="RUN/checkpoint.pt written by `galaxy-codae train`")
    p.add_argument("--out", required=True, type=Path, help="catalogue to write (FITS by default)")
    p.add_argument("--workers", type=int, default=1,
                   help="1: run in this process; N > 1: a local Dask cluster of N single-threaded processes")
    p.add_argument("--scheduler", metavar="ADDRESS", help="address of an existing Dask scheduler (overrides --workers)")
    p.add_argument("--batch-size", type=int, default=256, help="images per model call (default 256)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="auto picks CUDA when present")
    p.add_argument("--format", choices=["fits", "parquet"], default="fits", help="catalogue format (default fits)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--error-samples", type=int, default=8, metavar="K",
                   help="noise re-draws per image for the model's pose errors (pa_err_deg, x_err_pix, y_err_pix); "
                        "each is one more model pass; 0: no model errors (NaN) (default 8)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")


def run(args: argparse.Namespace) -> int:
    from pipeline.infer import infer_catalog

    def progress(line: str) -> None:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()

    path = infer_catalog(args.store, args.checkpoint, args.out, workers=args.workers, scheduler=args.scheduler,
                         batch_size=args.batch_size, device=args.device, format=args.format,
                         overwrite=args.overwrite, progress=None if args.quiet else progress,
                         error_samples=args.error_samples)
    print(f"infer: wrote {path}")
    return 0
