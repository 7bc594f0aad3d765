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

import base64
import csv
import html
import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline import __version__
from pipeline.errors import BadInputError

__all__ = ["RunPaths", "find_run", "write_report", "render_report"]

#: the similarity searches shown: this many queries, each with this many neighbours.
SEARCHES: int = 3
NEIGHBOURS: int = 8
#: thumbnails on the latent map (at most).
MAP_THUMBNAILS: int = 36
#: figures the trainer writes into RUN/figures, with their headings.
TRAINING_FIGURES: tuple[tuple[str, str], ...] = (
    ("loss_curves.png", "Loss curves"),
    ("reconstructions.png", "Reconstructions (input, same view, aligned)"),
    ("traversals.png", "Latent traversals"),
)

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:1.5em auto;max-width:1100px;color:#222;
padding:0 1em;line-height:1.4}
h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.8em}
h3{font-size:1em;margin-bottom:.3em}table{border-collapse:collapse;margin:.5em 0}
td,th{border:1px solid #ccc;padding:.2em .6em;text-align:left}td.n{text-align:right;font-variant-numeric:tabular-nums}
img{max-width:100%;height:auto;display:block;margin:.3em 0 1em}code{background:#f4f4f4;padding:0 .2em}
.note{color:#666;font-size:.9em}.missing{color:#a40}
"""


@dataclass(frozen=True)
class RunPaths:
    """Where a run's pieces are; None for a piece that is not there."""

    out: Path
    catalog: Path | None
    store: Path | None
    run_dir: Path | None
    stacks: Path | None
    run_note: str = ""


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def _img(png: bytes, alt: str) -> str:
    uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    return f'<img src="{uri}" alt="{_esc(alt)}">'


def _missing(text: str) -> str:
    return f'<p class="missing">{_esc(text)}</p>'


def _figure_png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, metadata={"Software": f"galaxy-codae {__version__}"})
    plt.close(fig)
    return buf.getvalue()


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


# ---------------------------------------------------------------- sections


def _counts(paths: RunPaths, n_catalogued: int | None) -> str:
    parts = ["<h2>Inputs</h2>"]
    if paths.store is None:
        return parts[0] + _missing(f"no store at {paths.out / 'store.zarr'}: no ingest counts")
    from pipeline.data.store import open_store

    counts = open_store(paths.store).info.attrs.get("counts", {})
    rows = [("input rows", counts.get("input_rows", "?")), ("ingested", counts.get("stored", "?")),
            ("rejected", counts.get("rejected", "?"))]
    rows += [(f"rejected: {reason}", n) for reason, n in sorted(counts.get("rejected_by_reason", {}).items())]
    if n_catalogued is not None:
        rows.append(("catalogued", n_catalogued))
    body = "".join(f"<tr><td>{_esc(a)}</td><td class=n>{_esc(b)}</td></tr>" for a, b in rows)
    parts.append(f"<table><tr><th>count</th><th>n</th></tr>{body}</table>")
    rejects = paths.store.with_name(paths.store.name + ".rejects.csv")
    if rejects.is_file():
        parts.append(f'<p class="note">Rejected rows, with reasons: <code>{_esc(rejects)}</code></p>')
    return "".join(parts)


def _training(paths: RunPaths) -> str:
    parts = ["<h2>Training</h2>"]
    if paths.run_dir is None:
        return parts[0] + _missing(f"no run directory with a checkpoint under {paths.out / 'runs'}")
    parts.append(f"<p>Run directory <code>{_esc(paths.run_dir)}</code>"
                 + (f" ({_esc(paths.run_note)})" if paths.run_note else "") + ".</p>")
    metrics = paths.run_dir / "metrics.csv"
    if metrics.is_file():
        with open(metrics, newline="") as f:
            rows = list(csv.DictReader(f))
        if rows:
            last = rows[-1]
            shown = [(k, last[k]) for k in ("step", "epoch", "loss", "reconstruction", "beta") if k in last]
            parts.append("<table>" + "".join(f"<tr><td>last {_esc(k)}</td><td class=n>{_esc(v)}</td></tr>"
                                             for k, v in shown) + "</table>")
    drawn = _draw_training_figures(paths, [name for name, _ in TRAINING_FIGURES
                                           if not (paths.run_dir / "figures" / name).is_file()])
    for name, heading in TRAINING_FIGURES:
        png = paths.run_dir / "figures" / name
        if png.is_file():
            parts.append(f"<h3>{_esc(heading)}</h3>{_img(png.read_bytes(), heading)}")
        elif name in drawn:
            parts.append(f"<h3>{_esc(heading)}</h3>{_img(drawn[name], heading)}")
        else:
            parts.append(f"<h3>{_esc(heading)}</h3>" + _missing(f"{png} not found and cannot be drawn"))
    return "".join(parts)


def _draw_training_figures(paths: RunPaths, names: list[str]) -> dict[str, bytes]:
    """The trainer's figures that the run directory lacks, drawn now by :mod:`pipeline.figures`:
    loss curves from ``metrics.csv``, reconstructions and traversals from the checkpoint and the
    store.  Returns PNG bytes by file name (what could not be drawn is left out)."""
    import tempfile

    if not names:
        return {}
    from pipeline import figures

    out: dict[str, bytes] = {}
    with tempfile.TemporaryDirectory(prefix="galaxy-codae-report-") as tmp:
        metrics = paths.run_dir / "metrics.csv"
        if "loss_curves.png" in names and metrics.is_file():
            with open(metrics, newline="") as f:
                rows = [{k: float(v) for k, v in r.items() if v not in ("", None)} for r in csv.DictReader(f)]
            keys = ("step", "loss", "reconstruction", "centroid", "orientation", "aligned", "beta")
            if rows and all(k in rows[0] for k in keys):
                out["loss_curves.png"] = figures.loss_curves(rows, Path(tmp) / "loss.png").read_bytes()
        ckpt = paths.run_dir / "checkpoint.pt"
        wanted = {"reconstructions.png", "traversals.png"} & set(names)
        if wanted and ckpt.is_file() and paths.store is not None:
            import torch

            from pipeline.checkpoint import load_model
            from pipeline.data.store import open_store

            st = open_store(paths.store)
            try:
                model, state = load_model(ckpt)
            except BadInputError:
                return out
            if (state["config"].model.image_size, state["config"].model.channels) != (st.info.size, st.info.channels):
                return out
            rows = np.linspace(0, len(st) - 1, min(8, len(st))).astype(int)
            scale = 1.0 / 255.0 if st.info.dtype == "uint8" else 1.0
            images = torch.from_numpy(st.read_indices(rows).astype(np.float32) * np.float32(scale))
            with torch.no_grad():
                if "reconstructions.png" in wanted:
                    out["reconstructions.png"] = figures.reconstruction_grid(
                        model, images, Path(tmp) / "rec.png").read_bytes()
                if "traversals.png" in wanted:
                    out["traversals.png"] = figures.latent_traversals(
                        model, images[0], Path(tmp) / "trav.png").read_bytes()
    return out


def _pa_scatter(table) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pipeline.conventions import angle_diff_180

    parts = ["<h2>Orientation: model against image moments</h2>"]
    if "pa_deg" not in table.colnames or "moment_pa_deg" not in table.colnames:
        return parts[0] + _missing("the catalogue has no pa_deg / moment_pa_deg")
    pa = np.asarray(table["pa_deg"], dtype=np.float64)
    mpa = np.asarray(table["moment_pa_deg"], dtype=np.float64)
    flags = np.asarray(table["flags"], dtype=np.int64) if "flags" in table.colnames else np.zeros(len(pa), int)
    round_ = (flags & 1) != 0
    fig, ax = plt.subplots(figsize=(5.0, 4.6))
    ax.scatter(mpa[~round_], pa[~round_], s=4, alpha=0.6, label="orientation defined")
    ax.scatter(mpa[round_], pa[round_], s=4, alpha=0.4, color="0.6", label="near-round (flag 1)")
    ax.plot([0, 180], [0, 180], color="k", lw=0.8)
    ax.set_xlim(0, 180)
    ax.set_ylim(0, 180)
    ax.set_xlabel("moment_pa_deg (deg E of N)")
    ax.set_ylabel("pa_deg, model (deg E of N)")
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    diff = angle_diff_180(pa[~round_], mpa[~round_])
    diff = diff[np.isfinite(diff)]
    text = (f"<p>Median |pa_deg - moment_pa_deg| (mod 180) over the {len(diff)} galaxies with a defined "
            f"orientation: {np.median(diff):.2f} deg.</p>") if len(diff) else ""
    return parts[0] + text + _img(_figure_png(fig), "model position angle against moment position angle")


def _latent_hists(table, zcols: list[str]) -> str:
    import matplotlib.pyplot as plt

    d = len(zcols)
    ncol = min(d, 4)
    nrow = -(-d // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(2.6 * ncol, 1.9 * nrow), squeeze=False)
    for i, ax in enumerate(axes.ravel()):
        if i >= d:
            ax.axis("off")
            continue
        v = np.asarray(table[zcols[i]], dtype=np.float64)
        ax.hist(v[np.isfinite(v)], bins=40, color="tab:blue")
        ax.set_title(zcols[i], fontsize=9)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    return "<h2>Latent distributions</h2>" + _img(_figure_png(fig), "histograms of the latents")


def _latent_map(table, zcols: list[str], paths: RunPaths) -> str:
    import matplotlib.pyplot as plt

    from catalogs.neighbours import embed

    z = np.stack([np.asarray(table[c], dtype=np.float64) for c in zcols], axis=1)
    good = np.isfinite(z).all(axis=1)
    if good.sum() < 3:
        return "<h2>Map of the latents</h2>" + _missing("fewer than 3 galaxies with finite latents")
    points, _ = embed(z[good])
    centred = points - points.mean(axis=0)
    if centred.shape[1] >= 2:
        _, s, vt = np.linalg.svd(centred.astype(np.float64), full_matrices=False)
        xy = centred @ vt[:2].T
        explained = s[:2] ** 2 / max(float((s**2).sum()), 1e-12)
    else:
        xy = np.column_stack([centred[:, 0], np.zeros(len(centred))])
        explained = np.array([1.0, 0.0])
    fig, ax = plt.subplots(figsize=(9.0, 7.0))
    ax.scatter(xy[:, 0], xy[:, 1], s=3, color="0.6", alpha=0.5)
    ax.set_xlabel(f"PC 1 of standardised z ({100 * explained[0]:.0f} % of variance)")
    ax.set_ylabel(f"PC 2 ({100 * explained[1]:.0f} %)")
    note = ""
    if paths.store is not None:
        from pipeline.data.store import open_store
        from pipeline.mosaic import read_cutouts

        # one thumbnail per occupied cell of a grid over the map: the galaxy nearest the cell's centre
        side = int(np.sqrt(MAP_THUMBNAILS))
        lo, hi = xy.min(axis=0), xy.max(axis=0)
        span = np.where(hi > lo, hi - lo, 1.0)
        cell = np.minimum(((xy - lo) / span * side).astype(int), side - 1)
        picks = []
        for cx in range(side):
            for cy in range(side):
                inside = np.flatnonzero((cell[:, 0] == cx) & (cell[:, 1] == cy))
                if len(inside):
                    centre = lo + (np.array([cx, cy]) + 0.5) / side * span
                    picks.append(int(inside[np.argmin(((xy[inside] - centre) ** 2).sum(axis=1))]))
        ids = np.asarray(np.asarray(table["id"]).tolist(), dtype=np.str_)[good][picks]
        try:
            thumbs = read_cutouts(open_store(paths.store), ids)
        except BadInputError as e:
            thumbs, note = None, _missing(f"no thumbnails: {e}")
        if thumbs is not None:
            from matplotlib.offsetbox import AnnotationBbox, OffsetImage

            zoom = 56.0 / thumbs.shape[-1]  # about 56 figure pixels a side, square whatever the axes' scales
            for (px, py), img in zip(xy[picks], thumbs):
                a = np.clip(img, 0, 1)
                a = a[0] if a.shape[0] == 1 else np.moveaxis(a[:3], 0, -1)
                box = OffsetImage(a, zoom=zoom, cmap="gray" if a.ndim == 2 else None, interpolation="nearest")
                ax.add_artist(AnnotationBbox(box, (px, py), frameon=True, pad=0.1, zorder=3))
            ax.set_xlim(lo[0] - span[0] * 0.06, hi[0] + span[0] * 0.06)
            ax.set_ylim(lo[1] - span[1] * 0.06, hi[1] + span[1] * 0.06)
    else:
        note = _missing("no store: the map has no thumbnails")
    fig.tight_layout()
    return ("<h2>Map of the latents</h2><p>Every galaxy on the two leading principal components of its "
            "standardised latents; thumbnails are the galaxies nearest the centres of a grid over the map, "
            "as observed.</p>" + note + _img(_figure_png(fig), "2-D map of the latents with thumbnails"))


def _stacks(paths: RunPaths) -> str:
    parts = ["<h2>Stacks</h2>"]
    if paths.stacks is None:
        return parts[0] + _missing(f"no stacks in {paths.out / 'stacks'}")
    pngs = sorted(paths.stacks.glob("*.png"))
    if not pngs:
        return parts[0] + _missing(f"no stack previews in {paths.stacks}")
    parts.append("<p>Recentred and derotated by the catalogue pose, then combined; previews with an asinh "
                 "stretch (the FITS files are beside them).</p>")
    for png in pngs:
        parts.append(f"<h3>{_esc(png.stem)}</h3>{_img(png.read_bytes(), 'stack ' + png.stem)}")
    return "".join(parts)


def _searches(table, zcols: list[str], paths: RunPaths, n: int, k: int) -> str:
    from catalogs.neighbours import find_similar
    from pipeline.mosaic import similarity_mosaic

    parts = ["<h2>Galaxies like these</h2>"]
    if paths.store is None or paths.catalog is None:
        return parts[0] + _missing("similarity searches need the catalogue and the store")
    if len(table) < k + 1:
        return parts[0] + _missing(f"{len(table)} galaxies: too few for {k} neighbours")
    parts.append(f"<p>The {k} nearest galaxies in the standardised latents (exact search, "
                 "<code>galaxy-codae similar</code>): top row as observed, bottom row turned to the query's "
                 "orientation.  Queries are spread along the first latent.</p>")
    z0 = np.asarray(table[zcols[0]], dtype=np.float64)
    order = np.argsort(np.where(np.isfinite(z0), z0, np.inf), kind="stable")
    finite = int(np.isfinite(z0).sum())
    ids = np.asarray(np.asarray(table["id"]).tolist(), dtype=np.str_)
    for q in np.linspace(0.15, 0.85, n):
        query = str(ids[order[int(q * (finite - 1))]])
        try:
            result = find_similar(paths.catalog, id=query, k=k)
            png = similarity_mosaic(result, paths.store)
        except BadInputError as e:
            parts.append(_missing(f"{query}: {e}"))
            continue
        parts.append(f"<h3>{_esc(query)}</h3>{_img(png, 'galaxies like ' + query)}")
    return "".join(parts)


# ---------------------------------------------------------------- the page


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
    sections.append(_counts(paths, None if table is None else len(table)))
    sections.append(_training(paths))
    zcols: list[str] = []
    if table is None:
        sections.append("<h2>Catalogue</h2>" + _missing(f"no catalogue at {paths.out / 'catalog.fits'}"))
    else:
        sections.append(_pa_scatter(table))
        try:
            zcols = latent_columns(table.colnames, where=str(paths.catalog))
        except BadInputError as e:
            sections.append("<h2>Latents</h2>" + _missing(str(e)))
        else:
            sections += [_latent_hists(table, zcols), _latent_map(table, zcols, paths)]
    sections.append(_stacks(paths))
    if zcols:
        sections.append(_searches(table, zcols, paths, searches, k))
    from datetime import UTC, datetime

    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    meta = table.meta if table is not None else {}
    facts = [("output directory", paths.out.resolve()), ("catalogue", paths.catalog or "none"),
             ("store", paths.store or "none"), ("checkpoint SHA-256", meta.get("CKPTSHA", "unknown")),
             ("latent size", meta.get("LATDIM", "unknown")), ("written", now)]
    head = "".join(f"<tr><td>{_esc(a)}</td><td><code>{_esc(b)}</code></td></tr>" for a, b in facts)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<meta name=\"generator\" content=\"galaxy-codae {_esc(__version__)}\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<title>galaxy-codae run: {_esc(paths.out.resolve().name)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f"<h1>galaxy-codae run: {_esc(paths.out.resolve().name)}</h1>\n<table>{head}</table>\n"
        + "\n".join(sections)
        + f"\n<p class=\"note\">Written by galaxy-codae {_esc(__version__)}; self-contained (images inline, "
        "no scripts, nothing loaded from the network).</p>\n</body>\n</html>\n"
    )


def write_report(out: str | os.PathLike, html_path: str | os.PathLike | None = None, *,
                 catalog: str | os.PathLike | None = None, store: str | os.PathLike | None = None,
                 run_dir: str | os.PathLike | None = None, searches: int = SEARCHES, k: int = NEIGHBOURS,
                 overwrite: bool = False) -> Path:
    """Write the report of the run in ``out`` to ``html_path`` (default ``out/report.html``), atomically.

    An existing page is replaced only with ``overwrite`` and only if this project wrote it.
    """
    from catalogs.atomic import overwrite_refusal, write_text

    paths = find_run(out, catalog=catalog, store=store, run_dir=run_dir)
    target = Path(html_path) if html_path is not None else paths.out / "report.html"
    if target.is_dir():
        raise BadInputError(f"{target} is a directory, not an HTML file")
    if not target.parent.is_dir():
        raise BadInputError(f"directory {target.parent} does not exist")
    if target.exists() or target.is_symlink():
        if not overwrite:
            raise BadInputError(f"{target} exists; pass --overwrite to replace it")
        why = overwrite_refusal(target)
        if why is not None:
            raise BadInputError(f"--overwrite will not replace {target}: {why}")
    write_text(target, render_report(paths, searches=searches, k=k))
    return target
