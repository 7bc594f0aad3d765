"""Ingest and store-read benchmark.  Prints figures; writes nothing outside a temporary directory.

    python benchmarks/ingest.py [--n 2000] [--rate-rows 10000] [--memory-n 20000] [--survey DIR] [--crop-study]

Measured in the same run on the same files (the rates on a catalogue of ``--rate-rows`` rows that
re-uses the ``--n`` demo cutouts under distinct ids, for the bare decode and the ingest alike):
* bare full-resolution JPEG decode rate (PIL ``Image.open(...).load()``) with 1 and 2 processes;
* the draft-mode decode + crop + resize of :func:`pipeline.data.readers.read_cutout` alone (1 process);
* ingest rate (decode in draft mode, crop, resize, staging, store write, finalize) with 1 worker
  (in-process) and with local Dask clusters of 1 and 2 worker processes (cluster start excluded);
* peak memory (max RSS of the ingest process, workers=1) at ``--n`` and ``--memory-n`` catalogue rows
  (the larger catalogue re-uses the same cutout files under distinct ids: the same work per row);
* store reads: random single-object latency, sequential throughput, random batches of 32 through
  :class:`pipeline.data.dataset.StoreImageDataset`;
* the projected time for 314,000 cutouts on a 32-core node.
With ``--crop-study``: the fraction of each demo galaxy's light inside centred crops of several
sizes (background = median of a 10-pixel border ring), to justify the default crop.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _decode_files(paths: list[str]) -> int:
    for p in paths:
        with Image.open(p) as im:
            im.load()
    return len(paths)


def bare_decode_rate(paths: list[str], processes: int) -> float:
    """Full-resolution decodes per second with ``processes`` processes (files already in the page cache)."""
    chunks = [paths[i : i + 64] for i in range(0, len(paths), 64)]
    t = time.perf_counter()
    if processes == 1:
        n = sum(_decode_files(c) for c in chunks)
    else:
        with multiprocessing.get_context("fork").Pool(processes) as pool:
            n = sum(pool.imap_unordered(_decode_files, chunks))
    return n / (time.perf_counter() - t)


def draft_decode_rate(paths: list[str], crop_size: int, size: int = 64) -> float:
    """Cutouts per second of :func:`pipeline.data.readers.read_cutout` alone (draft decode, crop, resize), 1 process."""
    from pipeline.data.readers import CropSpec, read_cutout

    with Image.open(paths[0]) as im:
        w, h = im.size
    crop = CropSpec.centred(w, h, crop_size, size)
    t = time.perf_counter()
    for p in paths:
        read_cutout(Path(p), crop)
    return len(paths) / (time.perf_counter() - t)


def _warm_imports() -> None:
    import PIL.JpegImagePlugin  # noqa: F401
    import zarr  # noqa: F401

    import pipeline.data.ingest  # noqa: F401


def ingest_rate(survey: Path, out: Path, *, workers: int, cluster: bool, shard_size: int) -> float:
    from pipeline.data.ingest import ingest_survey

    n = len(pd.read_parquet(survey / "catalog.parquet"))
    if not cluster:
        t = time.perf_counter()
        ingest_survey(survey / "catalog.parquet", survey / "images", out, overwrite=True, shard_size=shard_size)
        return n / (time.perf_counter() - t)
    from distributed import Client

    from pipeline.cluster import local_cluster

    with local_cluster(workers) as lc:
        with Client(lc) as c:
            c.run(_warm_imports)  # as a long-lived cluster would be
        t = time.perf_counter()
        ingest_survey(
            survey / "catalog.parquet",
            survey / "images",
            out,
            scheduler=lc.scheduler_address,
            overwrite=True,
            shard_size=shard_size,
        )
        return n / (time.perf_counter() - t)


_MEM_CHILD = """
import resource, sys
from pathlib import Path
from pipeline.data.ingest import ingest_survey
ingest_survey(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), overwrite=True)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def peak_memory_mib(catalog: Path, images: Path, out: Path) -> float:
    """Max RSS in MiB of a fresh process running the whole ingest with workers=1."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    r = subprocess.run(
        [sys.executable, "-c", _MEM_CHILD, str(catalog), str(images), str(out)], env=env, capture_output=True, text=True
    )
    if r.returncode:
        raise RuntimeError(r.stderr[-2000:])
    return int(r.stdout.split()[-1]) / 1024.0


def read_figures(store_path: Path) -> dict[str, float]:
    import torch

    from pipeline.data.dataset import StoreImageDataset
    from pipeline.data.store import open_store

    store = open_store(store_path)
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(store), 300)
    t = time.perf_counter()
    for j in idx:
        store.read_images(int(j), int(j) + 1)
    lat = (time.perf_counter() - t) / len(idx)
    t = time.perf_counter()
    nbytes = 0
    for a, b in store.shard_ranges():
        nbytes += store.read_images(a, b).nbytes
    seq = time.perf_counter() - t
    ds = StoreImageDataset(store_path)
    loader = torch.utils.data.DataLoader(ds, batch_size=32, shuffle=True, num_workers=0)
    t, n = time.perf_counter(), 0
    for x, _ in loader:
        n += len(x)
    batch_rate = n / (time.perf_counter() - t)
    return {
        "random_latency_ms": 1e3 * lat,
        "seq_mb_s": nbytes / seq / 1e6,
        "seq_images_s": len(store) / seq,
        "batch32_images_s": batch_rate,
    }


def crop_study(survey: Path, n: int = 300) -> None:
    cat = pd.read_parquet(survey / "catalog.parquet").iloc[:n]
    crops = [128, 160, 192, 212, 256, 320, 424]
    frac = {c: [] for c in crops}
    for rel in cat.file_loc:
        a = np.asarray(Image.open(survey / "images" / rel).convert("L"), np.float64)
        ring = np.concatenate([a[:10].ravel(), a[-10:].ravel(), a[:, :10].ravel(), a[:, -10:].ravel()])
        a = a - np.median(ring)
        total = a.sum()
        for c in crops:
            s = (a.shape[0] - c) // 2
            frac[c].append(a[s : s + c, s : s + c].sum() / total)
    print(f"crop study on {len(cat)} demo galaxies: fraction of background-subtracted light inside the centre crop")
    for c in crops:
        f = np.array(frac[c])
        print(
            f"  crop {c:3d} px: median {np.median(f):.3f}  10th pct {np.percentile(f, 10):.3f}  5th pct {np.percentile(f, 5):.3f}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000, help="demo cutouts written (when no --survey)")
    ap.add_argument(
        "--rate-rows",
        type=int,
        default=10000,
        help="catalogue rows for the rate figures (re-using the survey's files under distinct ids, for"
        " the bare decode as for the ingest), so that a run's fixed costs weigh as little as at survey scale",
    )
    ap.add_argument(
        "--shard-size", type=int, default=1024, help="objects per shard (the store's default; 10 blocks at 10,000 rows)"
    )
    ap.add_argument("--memory-small", type=int, default=2000)
    ap.add_argument("--memory-n", type=int, default=20000)
    ap.add_argument("--survey", type=Path, default=None, help="an existing demo survey (default: write one)")
    ap.add_argument("--crop-study", action="store_true")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ingest-bench-"))
    survey = args.survey
    if survey is None:
        from pipeline.simulate.survey import write_demo_survey

        t = time.perf_counter()
        survey = write_demo_survey(tmp / "survey", args.n, seed=1, workers=2, progress=False)
        print(f"demo survey: {args.n} cutouts written in {time.perf_counter() - t:.1f} s")
    cat = pd.read_parquet(survey / "catalog.parquet")
    n = len(cat)
    paths = [str(survey / "images" / p) for p in cat.file_loc]
    if args.crop_study:
        crop_study(survey)
    _decode_files(paths)  # page cache warm

    def rows(m: int) -> Path:  # a catalogue of m rows re-using the survey's files under distinct ids
        reps = int(np.ceil(m / n))
        big = pd.concat([cat.assign(iauname=cat.iauname + f"_{r}") for r in range(reps)], ignore_index=True)
        big.iloc[:m].to_parquet(tmp / f"rows{m}.parquet")
        return tmp / f"rows{m}.parquet"

    m = args.rate_rows
    rate_survey = tmp / "rate-survey"
    rate_survey.mkdir()
    shutil.copy(rows(m), rate_survey / "catalog.parquet")
    (rate_survey / "images").symlink_to((survey / "images").resolve())
    rate_paths = [paths[i % n] for i in range(m)]
    print(f"cores: {os.cpu_count()}  cutout files: {n}  catalogue rows for the rates: {m}")
    bare1, bare2 = bare_decode_rate(rate_paths, 1), bare_decode_rate(rate_paths, 2)
    print(f"bare full-resolution JPEG decode: 1 process {bare1:7.0f}/s   2 processes {bare2:7.0f}/s")
    from pipeline.data.ingest import DEFAULT_CROP_FRACTION

    with Image.open(paths[0]) as im:
        crop_px = int(round(DEFAULT_CROP_FRACTION * min(im.size)))
    draft = draft_decode_rate(rate_paths[:n], crop_px)
    print(
        f"draft-mode decode + crop + resize alone (read_cutout), 1 process: {draft:7.0f}/s"
        f"  ({draft / bare1:.2f}x the bare decode rate)"
    )
    serial = ingest_rate(rate_survey, tmp / "s.zarr", workers=1, cluster=False, shard_size=args.shard_size)
    d1 = ingest_rate(rate_survey, tmp / "d1.zarr", workers=1, cluster=True, shard_size=args.shard_size)
    d2 = ingest_rate(rate_survey, tmp / "d2.zarr", workers=2, cluster=True, shard_size=args.shard_size)
    print(
        f"ingest (size 64, default crop): in-process {serial:7.0f}/s  ({100 * serial / bare1:.0f} % of bare 1-process decode)"
    )
    print(
        f"ingest, Dask LocalCluster:   1 worker {d1:7.0f}/s ({100 * d1 / bare1:.0f} %)   2 workers {d2:7.0f}/s"
        f"  ({100 * d2 / bare2:.0f} % of bare 2-process decode)"
    )
    print(f"speed-up 1 -> 2 workers: {d2 / d1:.2f}x (Dask)   {d2 / serial:.2f}x (vs in-process)")

    mem = {}
    for m in (args.memory_small, args.memory_n):
        t = time.perf_counter()
        mem[m] = peak_memory_mib(rows(m), survey / "images", tmp / f"m{m}.zarr")
        print(
            f"peak RSS (workers=1, {m} rows): {mem[m]:.0f} MiB  ({m / (time.perf_counter() - t):.0f} rows/s incl. start)"
        )
    print(
        f"peak memory ratio {args.memory_n} / {args.memory_small} rows: {mem[args.memory_n] / mem[args.memory_small]:.2f}"
    )

    r = read_figures(tmp / "s.zarr")
    print(
        f"store reads: random single object {r['random_latency_ms']:.2f} ms   sequential {r['seq_mb_s']:.0f} MB/s "
        f"({r['seq_images_s']:.0f} images/s)   shuffled batches of 32 via Dataset {r['batch32_images_s']:.0f} images/s"
    )
    per_core = d2 / 2
    eff = d2 / (2 * d1)
    t32 = 314_000 / (per_core * 32 * min(1.0, eff))
    print(
        f"projection: 314,000 cutouts on 32 cores at {per_core:.0f}/s per core and the measured "
        f"parallel efficiency {eff:.2f}: {t32:.0f} s ({t32 / 60:.1f} min), if the file system keeps up"
    )
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"ru_maxrss of this driver: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
