"""Prefect artifacts of a galaxy-codae run: counts table, training figures, stack previews, summary.

Images: Prefect image artifacts hold a URL that the UI puts in an ``<img>`` tag, and markdown
artifacts are rendered to HTML (sanitised by DOMPurify, which keeps ``data:`` URIs on images).
A browser will not load ``file://`` images into a page served over http, and nothing else here
serves the PNGs, so every figure is embedded as a ``data:image/png;base64,...`` URI: it renders
in the UI offline, without access to the run's disk.  The local path of each PNG is written
beside it (as text) for people on the machine.  Figures larger than :data:`MAX_EMBED_BYTES` are
only linked by path, to keep the Prefect database small.

Keys (lowercase, dashes; the latest version of each is on the Artifacts page):
``galaxy-codae-counts``, ``galaxy-codae-loss-curves``, ``galaxy-codae-reconstructions``,
``galaxy-codae-traversals``, ``galaxy-codae-stacks``, ``galaxy-codae-summary``.  The summary links the
run's HTML report (``OUT/report.html``, :mod:`pipeline.report`) by its ``file://`` URL and path: a page
served over http may not follow the link, so the path is printed beside it to open by hand.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from prefect.artifacts import create_image_artifact, create_markdown_artifact, create_table_artifact

__all__ = ["MAX_EMBED_BYTES", "FIGURES", "counts_rows", "catalogue_rows", "data_uri", "publish"]

#: Largest PNG embedded as a data: URI (bigger ones are linked by path only).
MAX_EMBED_BYTES = 2_000_000

#: Training figures (file name in RUN/figures -> artifact key, title).
FIGURES = {
    "loss_curves.png": ("galaxy-codae-loss-curves", "Loss curves"),
    "reconstructions.png": ("galaxy-codae-reconstructions", "Reconstruction grid"),
    "traversals.png": ("galaxy-codae-traversals", "Latent traversals"),
}


def data_uri(png: Path) -> str | None:
    """``data:image/png;base64,...`` of a PNG file, or None when missing or above :data:`MAX_EMBED_BYTES`."""
    png = Path(png)
    if not png.is_file() or png.stat().st_size > MAX_EMBED_BYTES:
        return None
    return "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode("ascii")


def catalogue_rows(catalogue: str | Path) -> int:
    """Rows of the catalogue (read from its header, not its data)."""
    from catalogs.fits_io import open_catalog

    with open_catalog(catalogue) as cat:
        return int(cat.nrows)


def counts_rows(summary: Any, n_catalogued: int) -> list[dict[str, Any]]:
    """The counts table: input rows, ingested, rejected (total and one row per reason), catalogued."""
    rows = [
        {"count": "input rows", "n": summary.n_input, "note": "catalogue rows read"},
        {"count": "ingested", "n": summary.n_stored, "note": f"objects in {Path(summary.store).name}"},
        {"count": "rejected", "n": summary.n_rejected, "note": f"table: {summary.rejects_table}"},
    ]
    rows += [{"count": f"rejected: {reason}", "n": n, "note": ""}
             for reason, n in sorted(summary.rejected_by_reason.items())]
    rows.append({"count": "catalogued", "n": n_catalogued, "note": "rows in the FITS catalogue"})
    return rows


def _image_md(title: str, png: Path) -> str:
    uri = data_uri(png)
    img = f"![{title}]({uri})\n\n" if uri else ""
    return f"### {title}\n\n{img}`{png}`\n"


def publish(*, summary: Any, trained: Any, catalogue: str, n_catalogued: int, stacks: list[dict[str, Any]],
            selections: list[dict[str, Any]], out: Path, report: str | None = None) -> dict[str, Any]:
    """Create every artifact of the run (in the calling flow run); returns their ids by key."""
    ids: dict[str, Any] = {}
    ids["galaxy-codae-counts"] = create_table_artifact(
        key="galaxy-codae-counts", table=counts_rows(summary, n_catalogued),
        description="Objects ingested, rejected (by reason) and catalogued")

    figures = Path(trained.run_dir) / "figures"
    for name, (key, title) in FIGURES.items():
        uri = data_uri(figures / name)
        if uri is not None:
            ids[key] = create_image_artifact(image_url=uri, key=key, description=f"{title}: {figures / name}")

    stack_dir = out / "stacks"
    parts = ["# Stacks\n"]
    previews: list[Path] = []
    for s, done in zip(selections, stacks):
        what = f"where `{s['where']}`" if s["where"] else "every object"
        binned = f", binned by `{s['bin_by']}` ({s['bins']} quantile bins)" if s["bin_by"] else ""
        if done.get("skipped"):
            parts.append(f"## {s['name']}: skipped ({done['skipped']})\n")
            continue
        parts.append(f"## {s['name']}: {s['method']} of {what}{binned}\n\n`{done['out']}`\n")
        for st in done["stacks"]:
            label = f"{st['extname']}: {st['n']} galaxies"
            if st["bin_lo"] is not None:
                label += f", {s['bin_by']} in [{st['bin_lo']:.3g}, {st['bin_hi']:.3g}]"
            if st["preview"]:
                previews.append(Path(st["preview"]))
                parts.append(_image_md(label, Path(st["preview"])))
            else:
                parts.append(f"### {label}\n")
    ids["galaxy-codae-stacks"] = create_markdown_artifact(
        key="galaxy-codae-stacks", markdown="\n".join(parts), description="Stack previews (PNG) and FITS paths")

    rej = ", ".join(f"{r} {n}" for r, n in sorted(summary.rejected_by_reason.items())) or "none"
    lines = [
        "# galaxy-codae run",
        "",
        f"**Catalogue**: `{catalogue}` ({n_catalogued} rows)",
        "",
        "| | |",
        "|---|---|",
        f"| input rows | {summary.n_input} |",
        f"| ingested | {summary.n_stored} (store `{summary.store}`) |",
        f"| rejected | {summary.n_rejected} ({100 * summary.reject_fraction:.2f} %): {rej} |",
        f"| catalogued | {n_catalogued} |",
        f"| training | {trained.steps} steps, {trained.epochs_completed:.2f} epochs"
        f"{' (stopped at the time budget)' if trained.stopped_early else ''}, final loss {trained.final_loss:.5f} |",
        f"| run directory | `{trained.run_dir}` |",
        f"| stacks | {len(stacks)} selections, {len(previews)} previews in `{stack_dir}` |",
    ]
    if report is not None:
        lines.append(f"| report | [{Path(report).name}]({Path(report).resolve().as_uri()}) `{report}` "
                     "(one self-contained page: open it in a browser) |")
    lines.append("")
    lines += [_image_md(title, figures / name) for name, (_, title) in FIGURES.items()]
    ids["galaxy-codae-summary"] = create_markdown_artifact(
        key="galaxy-codae-summary", markdown="\n".join(lines), description="Catalogue path and key figures")
    return ids
