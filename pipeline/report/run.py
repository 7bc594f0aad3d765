"""Where a run's pieces are: the catalogue, the store, the run directory and the stacks of an output directory.

The run directory is the one whose checkpoint's SHA-256 the catalogue records (``CKPTSHA``),
else the most recently written one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import BadInputError

__all__ = ["RunPaths", "find_run"]


@dataclass(frozen=True)
class RunPaths:
    """Where a run's pieces are; None for a piece that is not there."""

    out: Path
    catalog: Path | None
    store: Path | None
    run_dir: Path | None
    stacks: Path | None
    run_note: str = ""


def find_run(out: str | os.PathLike, *, catalog: str | os.PathLike | None = None,
             store: str | os.PathLike | None = None, run_dir: str | os.PathLike | None = None) -> RunPaths:
    """The pieces of the run in ``out`` (see the module docstring); explicit paths win.

    Raises :class:`BadInputError` when ``out`` is not a directory.
    """
    from pipeline.checkpoint import file_sha256

    out = Path(out)
    if not out.is_dir():
        raise BadInputError(f"{out} is not a directory (give the run's output directory, e.g. demo-output)")
    cat = Path(catalog) if catalog is not None else out / "catalog.fits"
    st = Path(store) if store is not None else out / "store.zarr"
    note = ""
    if run_dir is not None:
        run = Path(run_dir)
    else:
        runs = sorted((p.parent for p in (out / "runs").glob("*/checkpoint.pt")), key=lambda p: p.stat().st_mtime)
        run = runs[-1] if runs else None
        if len(runs) > 1:
            note = f"{len(runs)} runs in {out / 'runs'}; showing the most recent"
        sha = _catalogue_sha(cat) if cat.is_file() else ""
        for candidate in runs:
            if sha and file_sha256(candidate / "checkpoint.pt") == sha:
                run, note = candidate, "the run whose checkpoint made the catalogue"
                break
    stacks = out / "stacks"
    return RunPaths(out=out, catalog=cat if cat.is_file() else None, store=st if (st / "zarr.json").is_file() else None,
                    run_dir=run if run is not None and run.is_dir() else None,
                    stacks=stacks if stacks.is_dir() else None, run_note=note)


def _catalogue_sha(catalog: Path) -> str:
    from catalogs.fits_io import open_catalog

    try:
        with open_catalog(catalog) as cat:
            return str(cat.meta.get("CKPTSHA", ""))
    except BadInputError:
        return ""
