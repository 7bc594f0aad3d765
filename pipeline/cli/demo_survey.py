"""``galaxy-codae demo-survey OUT --n N [--seed S] [--regime R] [--cutout-size P] [--workers W] [--overwrite]``.

Writes a simulated survey with known truth in the Galaxy Zoo DECaLS layout
(see :mod:`pipeline.simulate.survey`); prints the output directory on stdout.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

EXAMPLES = """\
examples:
  galaxy-codae demo-survey survey/ --n 2000 --seed 1
  galaxy-codae demo-survey hard/ --n 500 --regime clean:0.7,neighbour:0.2,star:0.1 --workers 2"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", type=Path, help="output directory (must not exist unless --overwrite)")
    parser.add_argument("--n", type=int, required=True, help="number of galaxies")
    parser.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same files")
    parser.add_argument("--cutout-size", type=int, default=424,
                        help="side in pixels of each cutout file (424 as Galaxy Zoo DECaLS; smaller for quick trials)")
    parser.add_argument("--workers", type=int, default=1, help="processes rendering in parallel (1: this process)")
    parser.add_argument("--sky-noise", type=float, default=None,
                        help="r-band sky noise in nanomaggies per pixel for every galaxy "
                             "(default: drawn per galaxy, DECaLS-like)")
    parser.add_argument("--regime", default=None,
                        help="scenes beyond the isolated galaxy (pipeline.simulate.regimes): clean, neighbour, star, "
                             "faint, lopsided, mix, or fractions such as clean:0.7,star:0.3; DECaLS-depth noise, "
                             "not with --sky-noise (default: isolated galaxies)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing OUT that galaxy-codae wrote")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or lines")


def run(args: argparse.Namespace) -> int:
    from pipeline.simulate.survey import write_demo_survey

    t0 = time.perf_counter()
    out = write_demo_survey(args.out, args.n, seed=args.seed, size=args.cutout_size, sky_noise=args.sky_noise,
                            regime=args.regime,
                            workers=args.workers, overwrite=args.overwrite, progress=not args.quiet)
    if not args.quiet:
        import sys

        sys.stderr.write(f"demo-survey: wrote {args.n} galaxies to {out} in {time.perf_counter() - t0:.1f} s\n")
    print(out)
    return 0
