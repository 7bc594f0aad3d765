"""``galaxy-codae query CAT.fits --where EXPR [--columns a,b,...] [--out FILE] [--count]``.

Prints the selected rows as a text table (stdout), or their number (``--count``), or
writes them to a catalogue (``--out``, FITS by default, keeping units, UCDs and
descriptions).  The filter language is described in :mod:`catalogs.query`; it is never
evaluated as Python.  An empty selection says so on stderr and exits 0; a bad filter,
an unknown column or a missing file exits 2 with one line.  Needs numpy and astropy
only (no torch).
"""

from __future__ import annotations

import argparse
import os
import sys

from catalogs.query import count, format_text, query_catalog, write_selection


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("catalog", metavar="CAT", help="catalogue file (FITS or Parquet)")
    parser.add_argument(
        "--where",
        metavar="EXPR",
        default=None,
        help='row filter, e.g. "pa_deg > 30 && (flags & 1) == 0" (default: all rows)',
    )
    parser.add_argument("--columns", metavar="a,b,...", default=None, help="columns to show or write (default: all)")
    parser.add_argument("--out", metavar="FILE", default=None, help="write the selection to this catalogue file")
    parser.add_argument("--format", choices=("fits", "parquet"), default="fits", help="format of --out (default: fits)")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    parser.add_argument("--count", action="store_true", help="print the number of selected rows only")


def _columns(text: str | None) -> list[str] | None:
    if text is None:
        return None
    return [name.strip() for name in text.split(",") if name.strip()]


def _none_match(args: argparse.Namespace) -> None:
    where = f"'{args.where}'" if args.where else "(all rows)"
    sys.stderr.write(f"galaxy-codae query: no rows of {args.catalog} match {where}\n")


def run(args: argparse.Namespace) -> int:
    columns = _columns(args.columns)
    if args.out is not None:
        n = write_selection(
            args.catalog, args.out, args.where, columns=columns, overwrite=args.overwrite, format=args.format
        )
        if n == 0:
            _none_match(args)
        sys.stderr.write(f"galaxy-codae query: wrote {n} rows to {args.out}\n")
        if args.count:
            print(n)
        return 0
    if args.count:
        n = count(args.catalog, args.where)
        if n == 0:
            _none_match(args)
        print(n)
        return 0
    table = query_catalog(args.catalog, args.where, columns)
    if len(table) == 0:
        _none_match(args)
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
