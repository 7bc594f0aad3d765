"""``galaxy-codae ingest``: a catalogue and its cutouts into a sharded Zarr store."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EXAMPLES = """\
example:
  galaxy-codae ingest --catalog survey/catalog.parquet --images survey/images --out survey.zarr --workers 4"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``galaxy-codae ingest``."""
    parser.add_argument("--catalog", type=Path, required=True, help="input catalogue: parquet, CSV or FITS table")
    parser.add_argument("--images", type=Path, required=True, help="image root; catalogue paths are relative to it")
    parser.add_argument("--out", type=Path, required=True, help="output Zarr store (directory)")
    parser.add_argument("--image-size", "--size", dest="size", type=int, default=64,
                        help="side in pixels of the stored images, the model's input (model.image_size)")
    parser.add_argument(
        "--crop",
        type=int,
        default=None,
        help="centre crop side in pixels of the original cutout (default: 256/424 of the shorter side, 256 for Galaxy Zoo)",
    )
    parser.add_argument("--workers", type=int, default=1,
                        help="processes decoding in parallel (1: this process; N: a local Dask cluster of N)")
    parser.add_argument("--scheduler", default=None, help="address of an existing Dask scheduler (overrides --workers)")
    parser.add_argument(
        "--max-reject-fraction", type=float, default=0.01, help="exit 2 above this rejected fraction (default 0.01)"
    )
    parser.add_argument("--shard-size", type=int, default=1024, help="objects per shard (default 1024)")
    parser.add_argument("--chunk-size", type=int, default=8, help="objects per inner chunk (default 8)")
    parser.add_argument("--id-column", default="iauname", help="object id column (default iauname)")
    parser.add_argument("--path-column", default="file_loc", help="cutout path column (default file_loc)")
    parser.add_argument("--ra-column", default="ra", help="right ascension column, degrees (default ra)")
    parser.add_argument("--dec-column", default="dec", help="declination column, degrees (default dec)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing store or unfinished ingest that galaxy-codae wrote")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or lines")


def _stderr(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def run(args: argparse.Namespace) -> int:
    """Run the ingest and print its summary; exit 2 when too many rows were rejected."""
    from pipeline.data.ingest import ingest_survey

    summary = ingest_survey(
        args.catalog,
        args.images,
        args.out,
        size=args.size,
        crop=args.crop,
        workers=args.workers,
        scheduler=args.scheduler,
        shard_size=args.shard_size,
        chunk_size=args.chunk_size,
        max_reject_fraction=args.max_reject_fraction,
        id_column=args.id_column,
        path_column=args.path_column,
        ra_column=args.ra_column,
        dec_column=args.dec_column,
        overwrite=args.overwrite,
        progress=not args.quiet,
    )
    if summary.too_many_rejects:
        msg = (
            f"galaxy-codae ingest: error: {summary.n_rejected} of {summary.n_input} rows rejected "
            f"({100 * summary.reject_fraction:.2f} % > {100 * summary.max_reject_fraction:.2f} %); "
            f"see {summary.rejects_table}"
        )
        _stderr(msg)
        print(summary.format())
        return 2
    print(summary.format())
    return 0
