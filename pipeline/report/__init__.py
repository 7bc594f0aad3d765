"""A run at a glance: one self-contained static HTML page (``galaxy-codae report``).

The page reads a run's output directory as the flow lays it out (:mod:`flows.galaxy_codae`)::

    OUT/catalog.fits                 the catalogue
    OUT/store.zarr (+ .rejects.csv)  the store and the ingest's counts
    OUT/runs/<hash>/                 checkpoint.pt, metrics.csv, figures/*.png
    OUT/stacks/*.png                 stack previews

and shows, in order: input counts and rejects by reason; the training (steps, final loss, the
loss curves, reconstructions and traversals the trainer drew, or drawn now from ``metrics.csv``,
the checkpoint and the store when the run directory lacks them); the model's position angle
against the moment position angle; each latent's distribution; a 2-D map of the latents
(their two leading principal components after the median/MAD standardisation of
:mod:`catalogs.neighbours`) with cutout thumbnails; the stacks; and a few similarity searches
(:mod:`pipeline.mosaic`).  A part whose inputs are missing says so and the page goes on.

Every image is a PNG inside the page as a ``data:image/png;base64`` URI; the page has no
script, loads nothing from the network and needs no server: open the file in any browser.
The run directory is the one whose checkpoint's SHA-256 the catalogue records (``CKPTSHA``),
else the most recently written one.
"""

from __future__ import annotations

import os
from pathlib import Path

from pipeline import __version__
from pipeline.errors import BadInputError
from pipeline.report.markup import CSS, esc, missing
from pipeline.report.plots import latent_hists, latent_map, pa_scatter
from pipeline.report.run import RunPaths, find_run
from pipeline.report.sections import counts, similarity_searches, stacks, training

__all__ = ["RunPaths", "find_run", "write_report", "render_report"]

#: the similarity searches shown: this many queries, each with this many neighbours.
SEARCHES: int = 3
NEIGHBOURS: int = 8


def render_report(paths: RunPaths, *, searches: int = SEARCHES, k: int = NEIGHBOURS) -> str:
    """The HTML page of a run as text."""
    import matplotlib

    matplotlib.use("Agg")  # no display on compute nodes

    from catalogs.neighbours import latent_columns

    sections = []
    table = None
    if paths.catalog is not None:
        from catalogs.fits_io import read_catalog

        table = read_catalog(paths.catalog)
    sections.append(counts(paths, None if table is None else len(table)))
    sections.append(training(paths))
    zcols: list[str] = []
    if table is None:
        sections.append("<h2>Catalogue</h2>" + missing(f"no catalogue at {paths.out / 'catalog.fits'}"))
    else:
        sections.append(pa_scatter(table))
        try:
            zcols = latent_columns(table.colnames, where=str(paths.catalog))
        except BadInputError as e:
            sections.append("<h2>Latents</h2>" + missing(str(e)))
        else:
            sections += [latent_hists(table, zcols), latent_map(table, zcols, paths)]
    sections.append(stacks(paths))
    if zcols:
        sections.append(similarity_searches(table, zcols, paths, searches, k))
    from datetime import UTC, datetime

    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    meta = table.meta if table is not None else {}
    facts = [("output directory", paths.out.resolve()), ("catalogue", paths.catalog or "none"),
             ("store", paths.store or "none"), ("checkpoint SHA-256", meta.get("CKPTSHA", "unknown")),
             ("latent size", meta.get("LATDIM", "unknown")), ("written", now)]
    head = "".join(f"<tr><td>{esc(a)}</td><td><code>{esc(b)}</code></td></tr>" for a, b in facts)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<meta name=\"generator\" content=\"galaxy-codae {esc(__version__)}\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<title>galaxy-codae run: {esc(paths.out.resolve().name)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        f"<h1>galaxy-codae run: {esc(paths.out.resolve().name)}</h1>\n<table>{head}</table>\n"
        + "\n".join(sections)
        + f"\n<p class=\"note\">Written by galaxy-codae {esc(__version__)}; self-contained (images inline, "
        "no scripts, nothing loaded from the network).</p>\n</body>\n</html>\n"
    )


def write_report(out: str | os.PathLike, html_path: str | os.PathLike | None = None, *,
                 catalog: str | os.PathLike | None = None, store: str | os.PathLike | None = None,
                 run_dir: str | os.PathLike | None = None, searches: int = SEARCHES, k: int = NEIGHBOURS,
                 overwrite: bool = False) -> Path:
    """Write the report of the run in ``out`` to ``html_path`` (default ``out/report.html``), atomically.

    An existing page is replaced only with ``overwrite`` and only if this project wrote it.
    """
    from catalogs.atomic import check_output_file, write_text

    paths = find_run(out, catalog=catalog, store=store, run_dir=run_dir)
    target = Path(html_path) if html_path is not None else paths.out / "report.html"
    check_output_file(target, overwrite=overwrite, what="an HTML file", error=BadInputError)
    write_text(target, render_report(paths, searches=searches, k=k))
    return target
