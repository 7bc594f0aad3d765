"""Prefect tasks of the galaxy-codae flow: each body is one call into ``pipeline/`` or ``catalogs/``.

Tasks take paths, shard indices and small plain values (never arrays) and return small values
(counts, paths, summaries).  All of them share :data:`TASK_OPTIONS`:

* **caching**: ``INPUTS + TASK_SOURCE`` with persisted results, so a rerun (after a failure, a kill,
  or simply again) serves finished tasks from the cache (state name ``Cached``).  Every task takes
  a ``key`` argument, a fingerprint of what its output depends on upstream (the catalogue's
  SHA-256, the ingest options, the store's ``zarr.json``, the checkpoint's size and mtime, the
  full run config); a changed input or config changes the key and reruns what depends on it.
  Arguments that do not change the output (``overwrite``, ``resume``) are left out of the key.
  The result files live in ``OUT/.prefect-results`` (set by the flow with ``with_options``).
* **retries**: up to 3, with exponential back-off and jitter, only for transient I/O errors
  (:func:`transient_io`): an ``OSError`` that is not about a missing or forbidden path.  Bad data
  (:class:`pipeline.errors.GalaxyCodaeError`: a bad catalogue, a bad config) never retries; bad rows
  are not errors at all (they go to the ingest's rejects table).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import INPUTS, TASK_SOURCE
from prefect.tasks import exponential_backoff

__all__ = [
    "RESULTS_DIR",
    "TASK_OPTIONS",
    "transient_io",
    "fingerprint",
    "digest",
    "demo_survey",
    "plan_ingest",
    "ingest_block",
    "layout_store",
    "write_store_shard",
    "finalize_ingest",
    "train_model",
    "plan_inference",
    "infer_shard",
    "merge_parts",
    "stack_selection",
    "write_report",
]

#: Folder (under the flow's output directory) holding the persisted task results the cache reads.
RESULTS_DIR = ".prefect-results"

#: OSErrors that mean "wrong path or permissions" (bad input), not a passing I/O failure.
_PERMANENT_OS_ERRORS = (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError, FileExistsError)


def transient_io(task: Any, task_run: Any, state: Any) -> bool:
    """Retry condition: True only for a transient I/O error (an ``OSError`` other than a bad path)."""
    from pipeline.errors import GalaxyCodaeError

    exc = state.data if isinstance(state.data, BaseException) else None
    if exc is None:
        try:
            exc = state.result(raise_on_failure=False)
        except Exception:  # an unreadable failure is not worth a retry
            return False
    if not isinstance(exc, BaseException) or isinstance(exc, GalaxyCodaeError):
        return False
    return isinstance(exc, OSError) and not isinstance(exc, _PERMANENT_OS_ERRORS)


TASK_OPTIONS: dict[str, Any] = {
    "retries": 3,
    "retry_delay_seconds": exponential_backoff(backoff_factor=2),  # 2, 4, 8 s
    "retry_jitter_factor": 0.5,
    "retry_condition_fn": transient_io,
    "cache_policy": INPUTS + TASK_SOURCE,
    "persist_result": True,
}


def _options(*, exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    opts = dict(TASK_OPTIONS)
    if exclude:
        policy = INPUTS
        for name in exclude:
            policy = policy - name
        opts["cache_policy"] = policy + TASK_SOURCE
    return opts


# ----------------------------------------------------------------------------- fingerprints (flow side)


def fingerprint(path: str | Path, *, sha256: bool = False) -> dict[str, Any]:
    """What a file (or a Zarr store, through its ``zarr.json``) looks like now: path, size, mtime.

    ``sha256=True`` adds the content hash (for small files such as a catalogue or a config).
    A missing path gives ``{"path": ..., "missing": True}``.
    """
    p = Path(path).resolve()
    target = p / "zarr.json" if p.is_dir() and (p / "zarr.json").is_file() else p
    if not target.exists():
        return {"path": str(p), "missing": True}
    st = target.stat()
    fp: dict[str, Any] = {"path": str(p), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    if sha256 and target.is_file():
        from pipeline.hashing import file_sha256

        fp["sha256"] = file_sha256(target)
    return fp


def digest(*parts: Any) -> str:
    """A short stable hash of JSON-able parts (used as a task's upstream ``key``)."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


# ----------------------------------------------------------------------------- demo survey


@task(name="demo-survey", **_options())
def demo_survey(out: str, n: int, seed: int, size: int) -> str:
    """Write the simulated demo survey (Galaxy Zoo DECaLS layout) to ``out``; progress lines go to the task's log."""
    from pipeline.simulate.survey import write_demo_survey

    return str(write_demo_survey(Path(out), n, seed=seed, size=size, overwrite=True, progress=get_run_logger().info))


# ----------------------------------------------------------------------------- ingest (two passes)


@task(name="plan-ingest", **_options(exclude=("overwrite",)))
def plan_ingest(catalog: str, images: str, store: str, size: int, shard_size: int, key: str,
                overwrite: bool = False) -> dict[str, Any]:
    """Check the catalogue and write the ingest plan; returns ``{"work": dir, "n_blocks": k}``."""
    from pipeline.data.ingest import plan_ingest as plan

    p = plan(Path(catalog), Path(images), Path(store), size=size, shard_size=shard_size, overwrite=overwrite)
    return {"work": str(p.work), "n_blocks": p.n_blocks, "n_rows": p.n_rows}


@task(name="ingest-block", task_run_name="ingest-block-{shard_index}", **_options())
def ingest_block(work: str, shard_index: int, key: str) -> Any:
    """Decode catalogue block ``shard_index`` into staging (bad rows are counted, not raised)."""
    from pipeline.data.ingest import decode_block

    return decode_block(Path(work), shard_index)


@task(name="layout-store", **_options())
def layout_store(work: str, key: str) -> int:
    """Create the store's arrays from the decoded counts; returns the number of output shards."""
    from pipeline.data.ingest import layout_store as layout

    return layout(Path(work))


@task(name="write-store-shard", task_run_name="write-store-shard-{shard_index}", **_options())
def write_store_shard(work: str, shard_index: int, key: str) -> bool:
    """Copy output shard ``shard_index`` from staging into the store."""
    from pipeline.data.ingest import write_store_shard as write

    return write(Path(work), shard_index)


@task(name="finalize-ingest", **_options())
def finalize_ingest(work: str, key: str) -> Any:
    """Write the 1-D arrays and the rejects table, mark the store complete, move it into place."""
    from pipeline.data.ingest import finalize_ingest as finalize

    return finalize(Path(work))


# ----------------------------------------------------------------------------- train


@task(name="train", **_options(exclude=("resume",)))
def train_model(config: dict[str, Any], store: str, run_dir: str, key: str, resume: bool = False) -> Any:
    """Train CODAE on ``store`` into ``run_dir`` (``config``: a full :class:`RunConfig` as a dict).

    Progress lines (step, steps/s, ETA against the step count or the time budget, loss) go to the
    task's log, which is the flow run's log and the terminal: one at the start, then every 5 % or 10 s.
    """
    from pipeline.config import RunConfig
    from pipeline.train import train

    return train(RunConfig.from_dict(config), Path(store), Path(run_dir), resume=resume,
                 progress=get_run_logger().info)


# ----------------------------------------------------------------------------- infer (per shard)


@task(name="plan-inference", **_options())
def plan_inference(store: str, checkpoint: str, work: str, device: str, key: str) -> dict[str, Any]:
    """Plan the inference (one part per store shard) in ``work``; returns ``{"work": dir, "n_shards": k}``."""
    from pipeline.infer import plan_inference as plan

    p = plan(Path(store), Path(checkpoint), Path(work), device=device)
    return {"work": str(p.work), "n_shards": len(p.shard_ranges)}


@task(name="infer-shard", task_run_name="infer-shard-{shard_index}", **_options())
def infer_shard(work: str, shard_index: int, key: str) -> str:
    """Run the model on store shard ``shard_index``; writes one catalogue part (returns its path)."""
    from pipeline.infer import infer_shard as infer

    return str(infer(Path(work), shard_index))


@task(name="merge-catalogue", **_options(exclude=("overwrite",)))
def merge_parts(work: str, out: str, key: str, overwrite: bool = False) -> str:
    """Merge the parts into the FITS catalogue ``out`` (written once, atomically); returns its path."""
    from pipeline.infer import merge_parts as merge

    return str(merge(Path(work), Path(out), overwrite=overwrite))


# ----------------------------------------------------------------------------- stack


@task(name="stack", task_run_name="stack-{name}", **_options(exclude=("overwrite",)))
def stack_selection(catalog: str, store: str, out: str, name: str, where: str | None, method: str,
                    bin_by: str | None, bins: int, key: str, overwrite: bool = False) -> dict[str, Any]:
    """Recentre, derotate and stack the selected rows of ``catalog`` into ``out`` (FITS + PNG previews).

    Returns a small description (no pixels): ``{"out", "stacks": [{"extname", "n", "bin_lo", "bin_hi", "preview"}]}``.
    """
    from catalogs.query import count
    from pipeline.stack import stack_catalog

    if count(Path(catalog), where) == 0:  # an empty selection is reported, not a failed survey run
        get_run_logger().warning("stack %s: no rows of %s match %r; skipped", name, catalog, where)
        return {"out": None, "stacks": [], "skipped": f"no rows match {where!r}"}
    done = stack_catalog(Path(catalog), Path(store), Path(out), where=where, method=method, bin_by=bin_by, bins=bins,
                         overwrite=overwrite)
    return {"out": out, "stacks": [{"extname": r.extname, "n": r.n, "bin_lo": r.bin_lo, "bin_hi": r.bin_hi,
                                    "preview": None if r.preview is None else str(r.preview)} for r in done]}


# ----------------------------------------------------------------------------- report


@task(name="report", **_options())
def write_report(out_dir: str, html: str, key: str) -> str:
    """The run's self-contained HTML page (:func:`pipeline.report.write_report`); returns its path."""
    from pipeline.report import write_report as write

    return str(write(Path(out_dir), Path(html), overwrite=True))
