"""Survey ingest: a catalogue and its cutout files into the sharded Zarr store of :mod:`pipeline.data.store`.

How the work is cut (and why)
-----------------------------
The store must hold exactly the good objects, contiguous 0..N-1, and every writer must own whole
shards (zarr-python loses rows when two processes write into one shard).  Most rejects (truncated
or corrupt files, NaN pixels) are only known after decoding, so the output position of an object
is not known until every earlier cutout has been decoded.  The ingest therefore runs in two
parallel passes over fixed blocks, with a short serial step between them:

1. **plan** (:func:`plan_ingest`, serial, catalogue only; :mod:`pipeline.data.ingest.plan`): read
   and check the catalogue, reject rows with a missing or duplicate id, an id the catalogue cannot
   hold (the policy of :func:`catalogs.schema.id_problem`) or bad RA/Dec
   (:mod:`pipeline.data.ingest.rows`), fix the survey's image shape from the first readable
   cutouts, and write ``plan.parquet`` with one row group per block of ``shard_size`` catalogue rows.
2. **decode** (:func:`decode_block`, one task per block; :mod:`pipeline.data.ingest.decode`):
   decode, crop and resize each cutout of the block, write the good images to a staging ``.npy``
   file, then the block's marker (row outcomes).  This is where all the time goes (about 1 ms per
   424-pixel JPEG).
3. **layout** (:func:`layout_store`, serial; :mod:`pipeline.data.ingest.shards`): from the
   markers' good counts, create the final arrays with exactly N objects.
4. **write** (:func:`write_store_shard`, one task per output shard; :mod:`pipeline.data.ingest.shards`):
   copy the shard's objects from the (at most a few) staging blocks that cover them into
   ``images`` as one whole-shard write, then the shard's done marker.
5. **finalize** (:func:`finalize_ingest`, serial; :mod:`pipeline.data.ingest.finalize`): the 1-D
   arrays, the rejects table beside the store, the attributes, ``complete: true`` last; then the
   staging is removed and the work directory ``<out>.partial`` is renamed to ``<out>``.

The work directory's files are laid out in :mod:`pipeline.data.ingest.work`.

A cutout path is resolved (symbolic links followed) before anything opens it; one that leads
outside the image root is a rejected row (``outside_root``), as is one that cannot name a regular
file (``bad_path``, ``not_a_file``): no path stops the ingest.

``overwrite`` replaces only a store this project wrote and marked (:mod:`catalogs.atomic`), never
a folder holding anything else or one that contains the inputs.  Every file is written under a
temporary name and renamed (:mod:`catalogs.atomic`), and each block or shard is marked done
only after its data is on disk, so a run killed at any moment (kill -9) and run again with the same
arguments resumes: finished blocks and shards are skipped (their files keep their mtimes) and each
good object ends up in the store exactly once.  Tasks take the work directory and an index, never
arrays; each holds at most one block of images (``shard_size`` cutouts), so memory stays flat as
the survey grows.

Work is spread with Dask: ``workers=1`` runs the tasks in this process, ``workers=N`` starts a
local cluster of N single-threaded worker processes on the loopback interface
(:func:`pipeline.cluster.local_cluster`), ``scheduler=ADDRESS`` uses an existing cluster (whose
workers must see the same file system).  A Prefect flow can call the five
functions above directly, one task per block or shard.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from pipeline.data.ingest.decode import BlockResult, decode_block
from pipeline.data.ingest.finalize import IngestSummary, finalize_ingest
from pipeline.data.ingest.plan import DEFAULT_CROP_FRACTION, plan_ingest
from pipeline.data.ingest.shards import layout_store, write_store_shard
from pipeline.data.ingest.work import IngestPlan
from pipeline.errors import ConfigError
from pipeline.progress import Progress, Sink

__all__ = [
    "DEFAULT_CROP_FRACTION",
    "IngestPlan",
    "BlockResult",
    "IngestSummary",
    "plan_ingest",
    "decode_block",
    "layout_store",
    "write_store_shard",
    "finalize_ingest",
    "ingest_survey",
]


def _run(fn: Callable, work: Path, indices: Iterable[int], client: Any) -> Iterable[Any]:
    """Run ``fn(work, i)`` for every index, in this process or on the Dask client; yield results as they finish."""
    indices = list(indices)
    if client is None:
        for i in indices:
            yield fn(work, i)
        return
    from distributed import as_completed

    futures = client.map(fn, [work] * len(indices), indices, pure=False)
    for fut in as_completed(futures):
        yield fut.result()


def ingest_survey(
    catalog: Path,
    images: Path,
    out: Path,
    *,
    size: int = 64,
    crop: int | None = None,
    workers: int = 1,
    scheduler: str | None = None,
    shard_size: int = 1024,
    chunk_size: int = 8,
    max_reject_fraction: float = 0.01,
    id_column: str = "iauname",
    path_column: str = "file_loc",
    ra_column: str = "ra",
    dec_column: str = "dec",
    overwrite: bool = False,
    progress: Sink = None,
) -> IngestSummary:
    """Ingest a survey into the store ``out`` (see the module docstring); resumes an unfinished run.

    ``size``: output side in pixels; ``crop``: centre crop side in pixels of the original cutout
    (None: :data:`DEFAULT_CROP_FRACTION` of the shorter side); ``workers``: 1 runs in this process,
    N > 1 starts a local Dask cluster of N single-threaded processes on loopback; ``scheduler``: address of an
    existing Dask scheduler (overrides ``workers``); ``progress``: True for a bar (a terminal) or
    periodic lines on stderr, a callable for the lines (:class:`pipeline.progress.Progress`).  Rejected rows never stop the run; check ``summary.too_many_rejects``.
    """
    t0 = time.perf_counter()
    plan = plan_ingest(
        catalog,
        images,
        out,
        size=size,
        crop=crop,
        shard_size=shard_size,
        chunk_size=chunk_size,
        max_reject_fraction=max_reject_fraction,
        id_column=id_column,
        path_column=path_column,
        ra_column=ra_column,
        dec_column=dec_column,
        overwrite=overwrite,
    )
    if workers < 1:
        raise ConfigError(f"workers must be at least 1 (got {workers})")
    from pipeline.cluster import dask_client

    with dask_client(workers, scheduler) as client:
        rows = good = blocks_resumed = 0
        rejected: Counter[str] = Counter()
        with Progress("ingest: decoded", plan.n_rows, unit="cutouts", sink=progress) as show:
            for r in _run(decode_block, plan.work, range(plan.n_blocks), client):
                rows, good = rows + r.n_rows, good + r.n_good
                rejected.update(r.rejected)
                blocks_resumed += r.skipped
                show.update(r.n_rows, rejected=sum(rejected.values()))
        n_shards = layout_store(plan)
        shards_resumed = 0
        with Progress("ingest: stored", n_shards, unit="shards", sink=progress) as show:
            for wrote in _run(write_store_shard, plan.work, range(n_shards), client):
                shards_resumed += not wrote
                show.update(1)
    summary = finalize_ingest(plan, elapsed_s=time.perf_counter() - t0)
    return replace(summary, blocks_resumed=blocks_resumed, shards_resumed=shards_resumed)
