"""The evaluation's tables and figures: ``metrics_runs.csv``, ``metrics_summary.csv``, ``metrics.md``,
``pearson_<kind>.csv``, ``pearson.md``, ``alignment.csv``, ``evaluation.json`` and the figures of
each model's best seed (see :mod:`pipeline.evaluate.run` for what each holds)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from numpy.typing import NDArray

from catalogs import atomic
from pipeline.data.pixels import to_unit_float
from pipeline.evaluate.metrics import EIGHT_METRICS

__all__ = ["markdown_table", "summarise", "summary_markdown", "draw_figures", "write_tables"]


def markdown_table(df: pd.DataFrame, floatfmt: str = ".3f") -> str:
    cols = list(df.columns)
    lines = ["| " + " | ".join(str(c) for c in cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for _, row in df.iterrows():
        cells = [format(v, floatfmt) if isinstance(v, float) else str(v) for v in row.tolist()]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    metric_cols = [*EIGHT_METRICS, "mean"]
    rows = []
    for (model, setting), grp in runs.groupby(["model", "setting"], sort=False):
        with_pose = runs[(runs.model == model) & (runs.setting == "with_pose")]
        best_seed = with_pose.loc[with_pose["mean"].idxmax(), "seed"]  # the paper's choice of seed
        best = grp[grp.seed == best_seed].iloc[0]
        row = {"model": model, "setting": setting, "n_seeds": len(grp), "best_seed": int(best_seed)}
        for m in metric_cols:
            row[f"{m}_best"] = float(best[m])
            row[f"{m}_mean"] = float(grp[m].mean())
            row[f"{m}_std"] = float(grp[m].std(ddof=0))
        rows.append(row)
    return pd.DataFrame(rows)


def summary_markdown(summary: pd.DataFrame, title: str) -> str:
    parts = [f"# Disentanglement metrics: {title}", "",
             "Best seed (highest mean of the eight metrics with pose factors) and mean +- std over seeds.", ""]
    for setting in ("with_pose", "without_pose"):
        sub = summary[summary.setting == setting]
        if sub.empty:
            continue
        best = pd.DataFrame({"model": sub.model, **{m: sub[f"{m}_best"] for m in [*EIGHT_METRICS, "mean"]}})
        spread = pd.DataFrame({"model": sub.model, "seeds": sub.n_seeds,
                               **{m: [f"{a:.3f} ± {b:.3f}" for a, b in zip(sub[f"{m}_mean"], sub[f"{m}_std"])]
                                  for m in [*EIGHT_METRICS, "mean"]}})
        label = "with position and orientation factors" if setting == "with_pose" else \
            "without position and orientation factors"
        parts += [f"## {label}: best seed", "", markdown_table(best), "", f"## {label}: mean ± std over seeds", "",
                  markdown_table(spread), ""]
    return "\n".join(parts)


def draw_figures(model: torch.nn.Module, images: NDArray, out: Path, kind: str) -> None:
    """``figures/<kind>_aligned.png`` (input / same view / aligned, 8 images) and ``figures/<kind>_traversals.png``."""
    from pipeline.figures import latent_traversals, reconstruction_grid

    grid = to_unit_float(images[np.linspace(0, len(images) - 1, min(8, len(images))).astype(int)])
    reconstruction_grid(model, grid, out / "figures" / f"{kind}_aligned.png")
    latent_traversals(model, grid[0], out / "figures" / f"{kind}_traversals.png")


def _csv(frame: pd.DataFrame, path: Path, **kwargs: Any) -> None:
    with atomic.atomic_path(path) as tmp:
        frame.to_csv(tmp, **kwargs)


def write_tables(out: Path, title: str, runs: pd.DataFrame, alignment: pd.DataFrame,
                 pearson: dict[str, pd.DataFrame], settings: dict[str, Any]) -> pd.DataFrame:
    """Write every table (each atomically) and ``evaluation.json`` (``settings``); returns the summary."""
    summary = summarise(runs) if not runs.empty else pd.DataFrame()
    if not runs.empty:
        _csv(runs, out / "metrics_runs.csv", index=False)
        _csv(summary, out / "metrics_summary.csv", index=False)
        atomic.write_text(out / "metrics.md", summary_markdown(summary, title))
    _csv(alignment, out / "alignment.csv", index=False)
    md = [f"# Pearson correlation of latents with named quantities: {title}", "",
          "Labels: the quantity with the largest |r| (circular quantities: Mardia's circular-linear r); "
          "`unnamed` when below 0.5.", ""]
    for kind, table in pearson.items():
        _csv(table, out / f"pearson_{kind}.csv", index_label="latent")
        md += [f"## {kind}", "", markdown_table(table.reset_index(names="latent")), ""]
    atomic.write_text(out / "pearson.md", "\n".join(md))
    atomic.write_text(out / "evaluation.json", json.dumps(settings, indent=2))
    return summary
