"""The report's sections about the run's files: inputs, training, stacks and similarity searches.

Each returns its HTML (a heading and its content); a part whose inputs are missing says so.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from pipeline.errors import BadInputError
from pipeline.report.markup import esc, img, missing
from pipeline.report.run import RunPaths

__all__ = ["TRAINING_FIGURES", "counts", "training", "stacks", "similarity_searches"]

#: figures the trainer writes into RUN/figures, with their headings.
TRAINING_FIGURES: tuple[tuple[str, str], ...] = (
    ("loss_curves.png", "Loss curves"),
    ("reconstructions.png", "Reconstructions (input, same view, aligned)"),
    ("traversals.png", "Latent traversals"),
)


def counts(paths: RunPaths, n_catalogued: int | None) -> str:
    """Input rows, ingested, rejected by reason (the store's counts) and catalogued rows."""
    parts = ["<h2>Inputs</h2>"]
    if paths.store is None:
        return parts[0] + missing(f"no store at {paths.out / 'store.zarr'}: no ingest counts")
    from pipeline.data.store import open_store

    counts = open_store(paths.store).info.attrs.get("counts", {})
    rows = [("input rows", counts.get("input_rows", "?")), ("ingested", counts.get("stored", "?")),
            ("rejected", counts.get("rejected", "?"))]
    rows += [(f"rejected: {reason}", n) for reason, n in sorted(counts.get("rejected_by_reason", {}).items())]
    if n_catalogued is not None:
        rows.append(("catalogued", n_catalogued))
    body = "".join(f"<tr><td>{esc(a)}</td><td class=n>{esc(b)}</td></tr>" for a, b in rows)
    parts.append(f"<table><tr><th>count</th><th>n</th></tr>{body}</table>")
    rejects = paths.store.with_name(paths.store.name + ".rejects.csv")
    if rejects.is_file():
        parts.append(f'<p class="note">Rejected rows, with reasons: <code>{esc(rejects)}</code></p>')
    return "".join(parts)


def training(paths: RunPaths) -> str:
    """The run directory, the last line of ``metrics.csv`` and the trainer's figures."""
    parts = ["<h2>Training</h2>"]
    if paths.run_dir is None:
        return parts[0] + missing(f"no run directory with a checkpoint under {paths.out / 'runs'}")
    parts.append(f"<p>Run directory <code>{esc(paths.run_dir)}</code>"
                 + (f" ({esc(paths.run_note)})" if paths.run_note else "") + ".</p>")
    metrics = paths.run_dir / "metrics.csv"
    if metrics.is_file():
        with open(metrics, newline="") as f:
            rows = list(csv.DictReader(f))
        if rows:
            last = rows[-1]
            shown = [(k, last[k]) for k in ("step", "epoch", "loss", "reconstruction", "beta") if k in last]
            parts.append("<table>" + "".join(f"<tr><td>last {esc(k)}</td><td class=n>{esc(v)}</td></tr>"
                                             for k, v in shown) + "</table>")
    drawn = _draw_training_figures(paths, [name for name, _ in TRAINING_FIGURES
                                           if not (paths.run_dir / "figures" / name).is_file()])
    for name, heading in TRAINING_FIGURES:
        png = paths.run_dir / "figures" / name
        if png.is_file():
            parts.append(f"<h3>{esc(heading)}</h3>{img(png.read_bytes(), heading)}")
        elif name in drawn:
            parts.append(f"<h3>{esc(heading)}</h3>{img(drawn[name], heading)}")
        else:
            parts.append(f"<h3>{esc(heading)}</h3>" + missing(f"{png} not found and cannot be drawn"))
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


def stacks(paths: RunPaths) -> str:
    """The stack previews in ``OUT/stacks``."""
    parts = ["<h2>Stacks</h2>"]
    if paths.stacks is None:
        return parts[0] + missing(f"no stacks in {paths.out / 'stacks'}")
    pngs = sorted(paths.stacks.glob("*.png"))
    if not pngs:
        return parts[0] + missing(f"no stack previews in {paths.stacks}")
    parts.append("<p>Recentred and derotated by the catalogue pose, then combined; previews with an asinh "
                 "stretch (the FITS files are beside them).</p>")
    for png in pngs:
        parts.append(f"<h3>{esc(png.stem)}</h3>{img(png.read_bytes(), 'stack ' + png.stem)}")
    return "".join(parts)


def similarity_searches(table, zcols: list[str], paths: RunPaths, n: int, k: int) -> str:
    """``n`` queries spread along ``z_0``, each with the mosaic of its ``k`` nearest galaxies."""
    from catalogs.neighbours import find_similar
    from pipeline.mosaic import similarity_mosaic

    parts = ["<h2>Galaxies like these</h2>"]
    if paths.store is None or paths.catalog is None:
        return parts[0] + missing("similarity searches need the catalogue and the store")
    if len(table) < k + 1:
        return parts[0] + missing(f"{len(table)} galaxies: too few for {k} neighbours")
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
            parts.append(missing(f"{query}: {e}"))
            continue
        parts.append(f"<h3>{esc(query)}</h3>{img(png, 'galaxies like ' + query)}")
    return "".join(parts)
