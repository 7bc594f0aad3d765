"""``galaxy-codae demo-survey OUT --n N [--seed S] [--regime R] [--workers W] [--overwrite]``.

Writes a simulated survey with known truth in the Galaxy Zoo DECaLS layout
(see :mod:`pipeline.data.survey`); prints the output directory on stdout.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", type=Path, help="output directory (must not exist unless --overwrite)")
    parser.add_argument("--n", type=int, required=True, help="number of galaxies")
    parser.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same files")
    parser.add_argument("--workers", type=int, default=1, help="rendering processes (default 1)")
    parser.add_argument("--sky-noise", type=float, default=None,
                        help="r-band sky noise in nanomaggies per pixel for every galaxy "
                             "(default: drawn per galaxy, DECaLS-like)")
    parser.add_argument("--regime", default=None,
                        help="scenes beyond the isolated galaxy (pipeline.data.regimes): clean, neighbour, star, "
                             "faint, lopsided, mix, or fractions such as clean:0.7,star:0.3; DECaLS-depth noise, "
                             "not with --sky-noise (default: isolated galaxies)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")


def run(args: argparse.Namespace) -> int:
    from pipeline.data.survey import write_demo_survey

    t0 = time.perf_counter()
    out = write_demo_survey(args.out, args.n, seed=args.seed, sky_noise=args.sky_noise, regime=args.regime,
                            workers=args.workers, overwrite=args.overwrite, progress=not args.quiet)
    if not args.quiet:
        import sys

        sys.stderr.write(f"demo-survey: wrote {args.n} galaxies to {out} in {time.perf_counter() - t0:.1f} s\n")
    print(out)
    return 0
