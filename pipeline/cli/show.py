"""``galaxy-codae show CAT.fits --id ID --store STORE --checkpoint CKPT --out ID.png``.

One galaxy (:mod:`pipeline.show`): the cutout with its catalogue centroid and orientation drawn,
the model's same-view and aligned reconstructions, the residual, and the catalogue row's values
with their units.  An id not in the catalogue or not in the store exits 2 with one line.
"""

from __future__ import annotations

import argparse

from pipeline.cli.common import add_catalog_argument, catalog_path

EXAMPLES = """\
example:
  galaxy-codae show galaxies.fits --id J101528.45+123456.7 --store survey.zarr \\
      --checkpoint run/checkpoint.pt --out J101528.png"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_catalog_argument(p, "catalogue written by `galaxy-codae infer` (FITS or Parquet)")
    p.add_argument("--id", metavar="ID", required=True, help="the galaxy's id")
    p.add_argument("--store", required=True, help="the Zarr store the catalogue was made from")
    p.add_argument("--checkpoint", metavar="CKPT", required=True, help="model checkpoint (RUN/checkpoint.pt)")
    p.add_argument("--out", metavar="ID.png", required=True, help="PNG file to write")
    p.add_argument("--overwrite", action="store_true", help="replace --out if this project wrote it")


def run(args: argparse.Namespace) -> int:
    from catalogs.atomic import check_absent
    from pipeline.errors import BadInputError
    from pipeline.show import show_galaxy

    catalog = catalog_path(args)
    if not args.out.lower().endswith(".png"):
        raise BadInputError(f"--out {args.out}: the figure is a PNG file; name it *.png")
    check_absent(args.out, overwrite=args.overwrite, error=BadInputError)  # before the work
    show_galaxy(catalog, args.id, args.store, args.checkpoint, out=args.out, overwrite=args.overwrite)
    print(f"show: wrote {args.out}")
    return 0
