"""``galaxy-codae infer --store STORE --checkpoint RUN/checkpoint.pt --out CAT.fits [--workers N]``.

Writes the catalogue of ``../shared/CONTRACT.md``: one row per object in the store.  Work is
cut per store shard; a killed run resumes from ``CAT.fits.partial`` (finished shards are not
recomputed).  Progress goes to stderr: a bar on a terminal, periodic lines with counts, rate and
ETA in a log.  The format follows the extension of ``--out`` (``.fits`` or ``.parquet``) or
``--format``.  See :mod:`pipeline.infer`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

EXAMPLES = """\
example:
  galaxy-codae infer --store survey.zarr --checkpoint run/checkpoint.pt --out galaxies.fits --workers 2"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", required=True, type=Path, help="Zarr store written by `galaxy-codae ingest`")
    p.add_argument("--checkpoint", required=True, type=Path, help="RUN/checkpoint.pt written by `galaxy-codae train`")
    p.add_argument("--out", required=True, type=Path, help="catalogue to write: .fits or .parquet")
    p.add_argument("--workers", type=int, default=1,
                   help="processes inferring in parallel (1: this process; N: a local Dask cluster of N)")
    p.add_argument("--scheduler", metavar="ADDRESS", help="address of an existing Dask scheduler (overrides --workers)")
    p.add_argument("--batch-size", type=int, default=256, help="images per model call (default 256)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="auto picks CUDA when present")
    p.add_argument("--format", choices=["fits", "parquet"], default=None,
                   help="catalogue format (default: the extension of --out)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if galaxy-codae wrote it")
    p.add_argument("--error-samples", type=int, default=8, metavar="K",
                   help="noise re-draws per image for the model's pose errors (pa_err_deg, x_err_pix, y_err_pix); "
                        "each is one more model pass; 0: no model errors (NaN) (default 8)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or lines")


def run(args: argparse.Namespace) -> int:
    from catalogs.formats import output_format
    from pipeline.errors import BadInputError
    from pipeline.infer import infer_catalog

    fmt = output_format(args.out, args.format)  # before any work
    if fmt not in ("fits", "parquet"):
        raise BadInputError(f"{args.out}: a catalogue is written as FITS (.fits) or Parquet (.parquet), not {fmt}; "
                            "`galaxy-codae query CAT --out FILE` converts it to CSV, ECSV or VOTable")
    path = infer_catalog(args.store, args.checkpoint, args.out, workers=args.workers, scheduler=args.scheduler,
                         batch_size=args.batch_size, device=args.device, format=fmt,
                         overwrite=args.overwrite, progress=not args.quiet,
                         error_samples=args.error_samples)
    print(f"infer: wrote {path}")
    from catalogs.fits_io import open_catalog
    from pipeline.latent_labels import NAME_THRESHOLD, format_labels, labels_from_header

    with open_catalog(path) as cat:
        labels = labels_from_header(cat.meta, int(cat.meta.get("LATDIM", 0)))
    if labels:
        print(f"infer: latents named by the image property they follow most "
              f"(Pearson r; |r| < {NAME_THRESHOLD:g} is unnamed):")
        for line in format_labels(labels):
            print(f"  {line}")
    return 0
