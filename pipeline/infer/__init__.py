"""Inference: a Zarr store and a checkpoint -> the FITS catalogue of ``../shared/CONTRACT.md``.

The work is cut per store shard (objects ``[k * shard_size, (k + 1) * shard_size)``):

1. :func:`plan_inference` (:mod:`pipeline.infer.plan`) checks the store and the checkpoint and
   writes ``plan.json`` in a work directory (by default ``<out>.partial`` beside the catalogue).
   A rerun with the same store and checkpoint reuses the plan and every finished part; a
   different checkpoint or store clears the stale parts.
2. :func:`infer_shard` (:mod:`pipeline.infer.shard`) runs the model on one shard and writes
   ``parts/part-<k>.npz`` atomically (temporary name, fsync, rename).  A part holds every
   column keyed by ``id`` (:mod:`pipeline.infer.columns`: frames, errors, flags); an existing,
   readable part made with the same checkpoint is reused, not recomputed.  Each process loads
   the model once (:mod:`pipeline.infer.model`).
3. :func:`merge_parts` (:mod:`pipeline.infer.merge`) joins the parts, keys rows by id into store
   order (never by the order workers finish), checks that the ids are unique and are exactly
   the store's, sets the reconstruction-outlier flag over the whole catalogue, names the
   latents and writes the catalogue once, atomically, with :func:`catalogs.fits_io.write_catalog`.
   Then the work directory is removed.

:func:`infer_catalog` does all three, over a Dask cluster for ``workers > 1`` (a
``LocalCluster`` of single-threaded processes) or an existing scheduler (``scheduler``);
``workers=1`` without a scheduler runs in this process (no cluster to start); a local cluster
listens on loopback only (:func:`pipeline.cluster.local_cluster`).  Tasks ask
for ``resources={"GPU": 1}`` only when some worker of the cluster advertises a GPU resource.

The flags and their thresholds are in :mod:`pipeline.infer.flags`.  The ensemble's noise is
seeded per object, so a catalogue is the same for any batch size and number of workers.
Precision: float32 everywhere (CPU and CUDA); bfloat16 autocast is not used.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from catalogs.atomic import check_output_file
from pipeline.errors import BadInputError, ConfigError
from pipeline.infer.flags import (
    EDGE_MARGIN_PIX,
    NEAR_ROUND_AXIS_RATIO,
    PA_ERROR_ILL_DEFINED_DEG,
    RECON_OUTLIER_K,
    orientation_ill_defined,
    recon_outlier_threshold,
)
from pipeline.infer.merge import merge_parts
from pipeline.infer.model import load_inference_model
from pipeline.infer.plan import (
    DEFAULT_ERROR_SAMPLES,
    InferencePlan,
    default_work_dir,
    plan_inference,
    read_plan,
)
from pipeline.infer.shard import infer_shard
from pipeline.progress import Progress, Sink

if TYPE_CHECKING:
    from pipeline.predict import ErrorCalibration

__all__ = [
    "NEAR_ROUND_AXIS_RATIO",
    "PA_ERROR_ILL_DEFINED_DEG",
    "DEFAULT_ERROR_SAMPLES",
    "orientation_ill_defined",
    "EDGE_MARGIN_PIX",
    "RECON_OUTLIER_K",
    "InferencePlan",
    "plan_inference",
    "infer_shard",
    "merge_parts",
    "infer_catalog",
    "load_inference_model",
    "default_work_dir",
    "read_plan",
    "recon_outlier_threshold",
]


def _gpu_resources(client) -> dict[str, float] | None:
    """``{"GPU": 1}`` when some worker of the cluster advertises a GPU resource, else None."""
    workers = client.scheduler_info().get("workers", {})
    if any("GPU" in (w.get("resources") or {}) for w in workers.values()):
        return {"GPU": 1}
    return None


def infer_catalog(store: str | os.PathLike, checkpoint: str | os.PathLike, out: str | os.PathLike, *,
                  workers: int = 1, scheduler: str | None = None, batch_size: int = 256, device: str = "auto",
                  format: Literal["fits", "parquet"] = "fits", overwrite: bool = False,
                  work_dir: str | os.PathLike | None = None,
                  progress: Sink = None, error_samples: int = DEFAULT_ERROR_SAMPLES,
                  error_calibration: ErrorCalibration | None = None) -> Path:
    """Write the catalogue of every object in ``store`` with the model of ``checkpoint``; return its path.

    ``workers``: 1 runs in this process; N > 1 starts a ``LocalCluster`` of N single-threaded
    processes.  ``scheduler``: address of an existing Dask scheduler (overrides ``workers``).
    ``device``: ``auto`` (CUDA when present), ``cpu`` or ``cuda``.  ``work_dir``: plan and parts
    (default ``<out>.partial``); a killed run resumes from it.  ``progress``: True for a bar (a
    terminal) or periodic lines on stderr with counts, rate and ETA; a callable for the lines.  ``error_samples`` and
    ``error_calibration``: the model's error ensemble, as for :func:`plan_inference` (each
    sample is one more model pass: K = 8 makes inference about 9 times slower).
    """
    out = Path(out)
    if format not in ("fits", "parquet"):
        raise ConfigError(f"unknown catalogue format {format!r} (fits or parquet)")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers must be a positive integer, got {workers!r}")
    check_output_file(out, overwrite=overwrite, what="a catalogue file", error=BadInputError)  # before the work
    work = Path(work_dir) if work_dir is not None else default_work_dir(out)
    plan = plan_inference(store, checkpoint, work, batch_size=batch_size, device=device,
                          error_samples=error_samples, error_calibration=error_calibration)
    n_shards = len(plan.shard_ranges)
    reused = sum(plan.part_path(k).is_file() for k in range(n_shards))
    bar = Progress("infer", plan.n_objects, unit="objects", sink=progress, note=f"{reused} finished part(s) reused")

    def report(k: int) -> None:
        a, b = plan.shard_ranges[k]
        bar.update(b - a)

    if scheduler is None and workers == 1:
        for k in range(n_shards):
            infer_shard(plan.work, k)
            report(k)
    else:
        from distributed import as_completed

        from pipeline.cluster import dask_client

        with dask_client(workers, scheduler) as client:  # a local cluster listens on loopback only
            resources = _gpu_resources(client)
            token = plan.checkpoint_sha256[:12]
            futures = {client.submit(infer_shard, str(plan.work), k, key=f"infer-shard-{token}-{k}", pure=False,
                                     resources=resources): k for k in range(n_shards)}
            for fut in as_completed(futures):
                fut.result()  # re-raises a worker's error here
                report(futures[fut])
    bar.close()
    conf = {"workers": workers if scheduler is None else None, "scheduler": scheduler,
            "python": sys.version.split()[0]}
    return merge_parts(plan.work, out, format=format, overwrite=overwrite, config=conf)
