"""``galaxy-codae query CAT.fits [--where EXPR] [--cone RA DEC RADIUS] [--columns a,b,...] [--out FILE] [--count]``.

Prints the selected rows as a text table (stdout), or their number (``--count``), or writes
them to a file (``--out``) whose format follows its extension (``.fits``, ``.parquet``,
``.csv``, ``.ecsv``, ``.vot``/``.xml``) or ``--format``; an unsupported one exits 2 before any
work.  The filter language is described in :mod:`catalogs.rowfilter`; it is never evaluated
as Python.  An empty selection says so on stderr and exits 0; a bad filter, an unknown column
or a missing file exits 2 with one line.  Needs numpy and astropy only (no torch).
"""

from __future__ import annotations

import argparse
import os
import sys

from catalogs.query import FORMATS, count, format_text, output_format, parse_cone, query_catalog, write_selection
from pipeline.cli.common import add_catalog_argument, catalog_path

EXAMPLES = """\
examples:
  galaxy-codae query galaxies.fits --where "moment_axis_ratio < 0.5 && (flags & 1) == 0" --columns id,ra,dec,pa_deg
  galaxy-codae query galaxies.fits --cone 150.1 2.2 30arcsec --out near-m.csv
  galaxy-codae query galaxies.fits --where "regfind(id, '^J10')" --count"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_catalog_argument(parser, "catalogue file written by `galaxy-codae infer` (FITS or Parquet)")
    parser.add_argument("--where", metavar="EXPR", default=None,
                        help='row filter, e.g. "pa_deg > 30 && (flags & 1) == 0" (default: all rows)')
    parser.add_argument("--cone", nargs=3, metavar=("RA", "DEC", "RADIUS"), default=None,
                        help="cone search: centre in degrees (or 10h02m00s +02d15m) and a radius with its unit "
                             "(5arcsec, 1.5arcmin, 0.1deg); with --where a row must pass both")
    parser.add_argument("--columns", metavar="a,b,...", default=None, help="columns to show or write (default: all)")
    parser.add_argument("--out", metavar="FILE", default=None,
                        help="write the selection to FILE; its extension sets the format: "
                             ".fits, .parquet, .csv, .ecsv, .vot or .xml (VOTable)")
    parser.add_argument("--format", choices=FORMATS, default=None, help="format of --out (default: its extension)")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if galaxy-codae wrote it")
    parser.add_argument("--count", action="store_true", help="print the number of selected rows only")


def _columns(text: str | None) -> list[str] | None:
    if text is None:
        return None
    return [name.strip() for name in text.split(",") if name.strip()]


def _none_match(args: argparse.Namespace, catalog: str) -> None:
    where = f"'{args.where}'" if args.where else "(all rows)"
    cone = f" in the cone {' '.join(args.cone)}" if args.cone else ""
    sys.stderr.write(f"galaxy-codae query: no rows of {catalog} match {where}{cone}\n")


def run(args: argparse.Namespace) -> int:
    catalog = catalog_path(args)
    columns = _columns(args.columns)
    fmt = output_format(args.out, args.format) if args.out is not None else None  # before any work
    cone = parse_cone(*args.cone) if args.cone else None
    if args.out is not None:
        n = write_selection(catalog, args.out, args.where, columns=columns, overwrite=args.overwrite, format=fmt,
                            cone=cone)
        if n == 0:
            _none_match(args, catalog)
        sys.stderr.write(f"galaxy-codae query: wrote {n} rows to {args.out} ({fmt})\n")
        if args.count:
            print(n)
        return 0
    if args.count:
        n = count(catalog, args.where, cone=cone)
        if n == 0:
            _none_match(args, catalog)
        print(n)
        return 0
    table = query_catalog(catalog, args.where, columns, cone=cone)
    if len(table) == 0:
        _none_match(args, catalog)
        return 0
    try:
        out = sys.stdout
        for line in format_text(table):
            out.write(line + "\n")
        out.flush()
    except BrokenPipeError:  # `| head`: stop quietly, as Unix tools do
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return 0
