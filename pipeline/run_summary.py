"""The lines ``galaxy-codae run`` ends with: what was found, where it is, and what to try next.

Counts (ingested, rejected, catalogued), the agreement of the model's position angles with the
image moments' (median of ``|pa_deg - moment_pa_deg|`` as axes, so modulo 180 degrees, over
the rows that have both), the paths of the catalogue, stacks, figures and report, and two
commands (a query and a similar-galaxy search on a real id) that run as printed.
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["pose_agreement", "example_id", "summary_lines", "print_summary"]

#: the training figures of a run directory (pipeline.figures), shown by name
FIGURES = ("loss_curves.png", "reconstructions.png", "traversals.png")


def pose_agreement(catalogue: str | Path) -> tuple[float, int, int]:
    """``(median |pa_deg - moment_pa_deg| in degrees, rows compared, rows without pa_deg)``.

    The difference is between axes (:func:`pipeline.conventions.angle_diff_180`, in [0, 90]);
    rows whose ``pa_deg`` is NaN (flag bit 1) are left out and counted.  NaN when no row has both.
    """
    from catalogs.reader import open_catalog
    from pipeline.conventions import angle_diff_180

    with open_catalog(catalogue) as cat:
        cols = cat.read_arrays(["pa_deg", "moment_pa_deg"])
    pa, mom = np.asarray(cols["pa_deg"], dtype=np.float64), np.asarray(cols["moment_pa_deg"], dtype=np.float64)
    both = np.isfinite(pa) & np.isfinite(mom)
    median = float(np.median(angle_diff_180(pa[both], mom[both]))) if both.any() else math.nan
    return median, int(both.sum()), int((~np.isfinite(pa)).sum())


def example_id(catalogue: str | Path) -> str | None:
    """The id of an unflagged galaxy (the most elongated one: its pose is the clearest), else the first row's."""
    from catalogs.reader import open_catalog

    with open_catalog(catalogue) as cat:
        cols = cat.read_arrays(["id", "flags", "moment_axis_ratio"])
    ids = [v.decode() if isinstance(v, bytes) else str(v) for v in cols["id"]]
    if not ids:
        return None
    ratio = np.where(np.asarray(cols["flags"]) == 0, np.asarray(cols["moment_axis_ratio"], dtype=np.float64), np.inf)
    ratio = np.where(np.isfinite(ratio), ratio, np.inf)
    return ids[int(np.argmin(ratio))] if np.isfinite(ratio).any() else ids[0]


def _show(path: str | Path) -> str:
    """A path as typed at the prompt: relative to the working directory when under it."""
    p = Path(path).resolve()
    try:
        return str(p.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(p)


def _cmd(*words: str) -> str:
    return " ".join(shlex.quote(w) for w in words)


def summary_lines(result: Mapping[str, Any], elapsed_s: float | None = None) -> list[str]:
    """The summary of a finished run from the flow's result (:func:`flows.galaxy_codae.galaxy_codae`)."""
    catalogue = result["catalogue"]
    out = Path(result["out"])
    figures = Path(result["run_dir"]) / "figures"
    median, n_both, n_no_pa = pose_agreement(catalogue)
    took = "" if elapsed_s is None else f" in {round(elapsed_s) // 60} min {round(elapsed_s) % 60} s"
    lines = [f"galaxy-codae run: done{took}",
             f"  galaxies   {result['n_ingested']} ingested, {result['n_rejected']} rejected, "
             f"{result['n_catalogued']} catalogued"]
    if "train_steps" in result:
        budget = " (stopped at the time budget)" if result.get("stopped_at_budget") else ""
        lines.append(f"  training   {result['train_steps']} steps{budget}")
    pose = "no row has both angles" if not n_both else f"{median:.1f} deg over {n_both} galaxies"
    lines.append(f"  pose       median |pa_deg - moment_pa_deg| (axes, mod 180): {pose}"
                 + (f"; {n_no_pa} without pa_deg (flag bit 1)" if n_no_pa else ""))
    lines += [f"  catalogue  {_show(catalogue)}",
              f"  stacks     {_show(out / 'stacks')}/ (FITS, PNG previews)",
              f"  figures    {_show(figures)}/ ({', '.join(f for f in FIGURES if (figures / f).is_file())})",
              f"  report     {_show(result['report'])} (one page: open it in a browser)",
              "next:",
              "  " + _cmd("galaxy-codae", "query", _show(catalogue), "--where", "moment_axis_ratio < 0.5 && (flags & 1) == 0",
                          "--columns", "id,pa_deg,moment_pa_deg,moment_axis_ratio")]
    gid = example_id(catalogue)
    if gid is not None:
        png = out / "similar.png"
        lines.append("  " + _cmd("galaxy-codae", "similar", _show(catalogue), "--id", gid, "--k", "8",
                                 "--store", _show(result["store"]), "--png", _show(png), "--overwrite"))
    return lines


def print_summary(result: Mapping[str, Any], elapsed_s: float | None = None) -> None:
    """Print :func:`summary_lines` to stdout."""
    print("\n".join(summary_lines(result, elapsed_s)), flush=True)
