"""Time and peak memory to write, read and query a 314,000-row catalogue (latent_dim=8).

Run: ``python benchmarks/catalog.py [--rows N] [--latent-dim D] [--dir DIR]``.
Each step runs twice: once timed (wall clock), once under tracemalloc for its peak of
Python/numpy allocations (memory-mapped file pages are not counted; tracemalloc slows
the second run, so it is not timed).  The process's peak RSS is printed at the end.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from catalogs.fits_io import read_catalog, write_catalog  # noqa: E402
from catalogs.query import count, format_text, query_catalog, write_selection  # noqa: E402
from catalogs.schema import column_names  # noqa: E402


def make_catalog(n: int, latent_dim: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    cols: dict[str, np.ndarray] = {"id": np.char.add("J", np.char.zfill(np.arange(n).astype(str), 18))}
    for name in column_names(latent_dim)[1:-1]:
        cols[name] = rng.uniform(0, 180, n).astype(np.float64 if name in ("ra", "dec") else np.float32)
    cols["pa_deg"][::50] = np.nan
    cols["flags"] = rng.integers(0, 8, n).astype(np.int16)
    return cols


def measure(label: str, fn: Callable[[], Any]) -> Any:
    t0 = time.perf_counter()
    result = fn()
    dt = time.perf_counter() - t0
    tracemalloc.start()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"{label:<58s} {dt:8.3f} s   peak {peak / 2**20:8.1f} MiB")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=314_000)
    parser.add_argument("--latent-dim", type=int, default=8)
    parser.add_argument("--dir", default=None, help="where to write (default: a temporary directory)")
    args = parser.parse_args()

    cols = make_catalog(args.rows, args.latent_dim)
    size = sum(a.nbytes for a in cols.values()) / 2**20
    print(f"{args.rows} rows, {len(cols)} columns, {size:.1f} MiB in memory (numpy)")
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        fits_path, pq_path = Path(tmp) / "cat.fits", Path(tmp) / "cat.parquet"
        header = {"checkpoint_sha256": "0" * 64, "image_size": 64, "crop": 212, "config": {"batch_size": 256}}
        kw = {"latent_dim": args.latent_dim, "header": header, "overwrite": True}
        measure("write FITS", lambda: write_catalog(cols, fits_path, **kw))
        measure("write Parquet", lambda: write_catalog(cols, pq_path, format="parquet", **kw))
        print(f"FITS {fits_path.stat().st_size / 2**20:.1f} MiB, Parquet {pq_path.stat().st_size / 2**20:.1f} MiB")
        measure("read FITS, all columns", lambda: read_catalog(fits_path))
        measure("read Parquet, all columns", lambda: read_catalog(pq_path))
        where = "pa_deg > 30 && pa_deg < 60 && (flags & 1) == 0 && abs(z_3) < 50"
        for path, kind in ((fits_path, "FITS"), (pq_path, "Parquet")):
            n = measure(f"count {kind}: {where[:30]}...", lambda p=path: count(p, where))
            t = measure(f"query {kind}, all columns of selected rows", lambda p=path: query_catalog(p, where))
            assert len(t) == n
        print(f"selected {n} of {args.rows} rows")
        measure("query FITS, 3 columns", lambda: query_catalog(fits_path, where, ["id", "ra", "dec"]))
        measure(
            "query FITS + write selection (FITS)",
            lambda: write_selection(fits_path, Path(tmp) / "s.fits", where, overwrite=True),
        )
        measure(f"text output of the {len(t)} selected rows", lambda: sum(1 for _ in format_text(t)))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"process peak RSS {rss:.0f} MiB")


if __name__ == "__main__":
    main()
