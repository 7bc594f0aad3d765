"""``galaxy-codae report OUT --out report.html``.

One self-contained static HTML page for the run in OUT (:mod:`pipeline.report`): input counts
and rejects by reason, training curves and figures, the position angle against the moment
position angle, the latents' distributions and a 2-D map of them with thumbnails, the stacks
and a few similarity searches.  Images are inline; the page needs no server and no network.
"""

from __future__ import annotations

import argparse

EXAMPLES = """\
examples:
  galaxy-codae report demo-output                       # writes demo-output/report.html
  galaxy-codae report run1 --out run1.html --overwrite"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("out_dir", metavar="OUT", help="the run's output directory (as `galaxy-codae run --out` lays it out)")
    p.add_argument("--out", metavar="report.html", default=None, help="HTML file to write (default OUT/report.html)")
    p.add_argument("--catalog", metavar="CAT", default=None, help="catalogue (default OUT/catalog.fits)")
    p.add_argument("--store", default=None, help="Zarr store (default OUT/store.zarr)")
    p.add_argument("--run", metavar="RUN", default=None,
                   help="training run directory (default: the one under OUT/runs whose checkpoint made the catalogue)")
    p.add_argument("--searches", type=int, default=3, help="similarity searches shown (default 3)")
    p.add_argument("--k", type=int, default=8, help="neighbours per search (default 8)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if this project wrote it")


def run(args: argparse.Namespace) -> int:
    from pipeline.errors import BadInputError
    from pipeline.report import write_report

    if args.out is not None and not args.out.lower().endswith((".html", ".htm")):
        raise BadInputError(f"--out {args.out}: the report is an HTML file; name it *.html")
    if args.searches < 0 or args.k < 1:
        raise BadInputError("--searches must be at least 0 and --k at least 1")
    path = write_report(args.out_dir, args.out, catalog=args.catalog, store=args.store, run_dir=args.run,
                        searches=args.searches, k=args.k, overwrite=args.overwrite)
    print(f"report: wrote {path}")
    return 0
