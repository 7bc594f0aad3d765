"""``galaxy-codae similar CAT.fits (--id ID | --ra RA --dec DEC) [--k 12] [--where EXPR] [--store STORE --png GRID.png] [--out FILE]``.

The k galaxies nearest to one galaxy in the pose-free latents (:mod:`catalogs.neighbours`:
exact search, latents standardised by median and MAD, or ``--metric euler``).  Prints the
query and its neighbours as a table (``--out`` writes it instead, format from the extension);
with ``--store`` and ``--png`` also draws the mosaic of :mod:`pipeline.mosaic` (as observed,
and turned to the query's orientation).  ``--all --out FILE`` writes every selected galaxy's
k neighbours (one row per pair: ``id``, ``rank``, ``nn_id``, ``nn_dist``).

An unknown id, an id missing from the store, a catalogue without latents or ``--k`` larger than
the selection exit 2 with one line, before anything is written.
"""

from __future__ import annotations

import argparse
import os
import sys

from pipeline.cli.common import add_catalog_argument, catalog_path

EXAMPLES = """\
examples:
  galaxy-codae similar galaxies.fits --id J101528.45+123456.7 --k 12
  galaxy-codae similar galaxies.fits --ra 153.8685 --dec 12.5824 --where "(flags & 1) == 0" \\
      --store survey.zarr --png like-this.png --out like-this.ecsv
  galaxy-codae similar galaxies.fits --all --k 10 --out neighbours.parquet"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    from catalogs.neighbours import BACKENDS, METRICS

    add_catalog_argument(p, "catalogue written by `galaxy-codae infer` (FITS or Parquet)")
    p.add_argument("--id", metavar="ID", default=None, help="the query galaxy's id")
    p.add_argument("--ra", metavar="RA", default=None, help="query by position: right ascension (deg or 10h15m28s)")
    p.add_argument("--dec", metavar="DEC", default=None, help="query by position: declination (deg or +12d34m56s)")
    p.add_argument("--radius", metavar="R", default="5arcsec",
                   help="with --ra/--dec: the nearest galaxy must lie within R (with a unit; default 5arcsec)")
    p.add_argument("--all", action="store_true", help="every selected galaxy's neighbours, written to --out")
    p.add_argument("--k", type=int, default=None, help="neighbours per galaxy (default 12; 10 with --all)")
    p.add_argument("--where", metavar="EXPR", default=None,
                   help="search among the rows matching this row filter (see `galaxy-codae query`); default all")
    p.add_argument("--metric", choices=METRICS, default="standardised",
                   help="standardised: Euclidean on latents scaled by median and 1.4826 MAD; "
                        "euler: Euclidean on (cos z, sin z), as the decoder reads them (default standardised)")
    p.add_argument("--backend", choices=BACKENDS, default="auto",
                   help="exact search: kdtree (scipy), numpy or faiss (if installed); auto: numpy for one "
                        "search, the faster of brute force and the tree for --all (default auto)")
    p.add_argument("--store", default=None, help="the Zarr store the catalogue was made from (for --png)")
    p.add_argument("--png", metavar="GRID.png", default=None, help="write the mosaic here (needs --store)")
    p.add_argument("--out", metavar="FILE", default=None,
                   help="write the table here (.fits .parquet .csv .ecsv .vot) instead of printing it")
    p.add_argument("--format", default=None, help="format of --out when its extension does not say")
    p.add_argument("--overwrite", action="store_true", help="replace --out and --png if this project wrote them")
    p.add_argument("--quiet", action="store_true", help="no progress lines")


def _check(args: argparse.Namespace) -> None:
    from catalogs.atomic import check_absent
    from catalogs.formats import output_format
    from pipeline.errors import BadInputError

    by_id, by_pos = args.id is not None, args.ra is not None or args.dec is not None
    if args.all:
        if by_id or by_pos:
            raise BadInputError("--all searches for every galaxy; leave out --id, --ra and --dec")
        if args.out is None:
            raise BadInputError("--all needs --out FILE for its table")
        if args.png is not None:
            raise BadInputError("--png draws one search; it does not go with --all")
    elif by_id == by_pos:
        raise BadInputError("give the query galaxy as --id ID or as --ra RA --dec DEC")
    elif by_pos and (args.ra is None or args.dec is None):
        raise BadInputError("a query by position needs both --ra and --dec")
    if args.png is not None and args.store is None:
        raise BadInputError("--png needs --store STORE (the cutouts come from the store)")
    if args.k is not None and args.k < 1:
        raise BadInputError(f"--k must be at least 1, got {args.k}")
    if args.out is not None:
        output_format(args.out, args.format)  # an unsupported format fails before any work
    if args.png is not None and not args.png.lower().endswith(".png"):
        raise BadInputError(f"--png {args.png}: the mosaic is a PNG file; name it *.png")
    for path in (args.out, args.png):
        if path is not None:
            check_absent(path, overwrite=args.overwrite, error=BadInputError)


def _progress(bar):
    """A ``progress(done, total, seconds)`` callback that moves ``bar`` (a :class:`pipeline.progress.Progress`)."""

    def report(done: int, total: int, seconds: float) -> None:
        if bar.total is None:
            bar.set_total(total)
        bar.update(done - bar.n)

    return report


def run(args: argparse.Namespace) -> int:
    from catalogs.formats import format_text
    from catalogs.neighbours import all_similar, find_similar, write_neighbours

    catalog = catalog_path(args)
    _check(args)
    if args.all:
        from pipeline.progress import Progress

        with Progress("similar", None, unit="galaxies", sink=not args.quiet) as bar:
            table = all_similar(catalog, k=args.k or 10, where=args.where, metric=args.metric, backend=args.backend,
                                progress=_progress(bar))
        write_neighbours(table, args.out, format=args.format, overwrite=args.overwrite, inputs=[catalog])
        print(f"similar: wrote {len(table)} pairs ({table.meta['NSEARCH']} galaxies x {args.k or 10}) to {args.out}")
        return 0

    position = None
    if args.ra is not None:
        from catalogs.select import parse_cone

        cone = parse_cone(args.ra, args.dec, args.radius)
        position = (cone.ra_deg, cone.dec_deg, cone.radius_deg)
    result = find_similar(catalog, id=args.id, position=position, k=args.k or 12, where=args.where,
                          metric=args.metric, backend=args.backend)
    if args.png is not None:
        from pipeline.mosaic import similarity_mosaic

        similarity_mosaic(result, args.store, out=args.png, overwrite=args.overwrite)
        sys.stderr.write(f"similar: mosaic written to {args.png}\n")
    if args.out is not None:
        write_neighbours(result, args.out, format=args.format, overwrite=args.overwrite, inputs=[catalog])
        print(f"similar: {len(result) - 1} neighbours of {result['id'][0]} written to {args.out}")
        return 0
    meta = result.meta
    print(f"# {len(result) - 1} nearest of {meta['NSEARCH']} galaxies to {result['id'][0]} "
          f"({meta['METRIC']} latents, d = {meta['LATDIM']}, exact, {meta['BACKEND']})")
    try:
        for line in format_text(result):
            sys.stdout.write(line + "\n")
        sys.stdout.flush()
    except BrokenPipeError:  # `| head`: stop quietly, as Unix tools do
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return 0
