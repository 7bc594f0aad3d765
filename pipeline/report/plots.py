"""The report's figures of the catalogue: model against moment position angles, the latents' distributions and map.

The map puts every galaxy on the two leading principal components of its latents after the
median/MAD standardisation of :mod:`catalogs.neighbours`, with cutout thumbnails from the store.
"""

from __future__ import annotations

import numpy as np

from pipeline.errors import BadInputError
from pipeline.report.markup import figure_png, img, missing
from pipeline.report.run import RunPaths

__all__ = ["MAP_THUMBNAILS", "pa_scatter", "latent_hists", "latent_map"]

#: thumbnails on the latent map (at most).
MAP_THUMBNAILS: int = 36


def pa_scatter(table) -> str:
    """The model's ``pa_deg`` against ``moment_pa_deg``, with their median difference (mod 180)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pipeline.conventions import angle_diff_180

    parts = ["<h2>Orientation: model against image moments</h2>"]
    if "pa_deg" not in table.colnames or "moment_pa_deg" not in table.colnames:
        return parts[0] + missing("the catalogue has no pa_deg / moment_pa_deg")
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
    return parts[0] + text + img(figure_png(fig), "model position angle against moment position angle")


def latent_hists(table, zcols: list[str]) -> str:
    """A histogram per latent."""
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
    return "<h2>Latent distributions</h2>" + img(figure_png(fig), "histograms of the latents")


def latent_map(table, zcols: list[str], paths: RunPaths) -> str:
    """The galaxies on the two leading principal components of their standardised latents, with thumbnails."""
    import matplotlib.pyplot as plt

    from catalogs.neighbours import embed

    z = np.stack([np.asarray(table[c], dtype=np.float64) for c in zcols], axis=1)
    good = np.isfinite(z).all(axis=1)
    if good.sum() < 3:
        return "<h2>Map of the latents</h2>" + missing("fewer than 3 galaxies with finite latents")
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
            thumbs, note = None, missing(f"no thumbnails: {e}")
        if thumbs is not None:
            from matplotlib.offsetbox import AnnotationBbox, OffsetImage

            zoom = 56.0 / thumbs.shape[-1]  # about 56 figure pixels a side, square whatever the axes' scales
            for (px, py), thumb in zip(xy[picks], thumbs):
                a = np.clip(thumb, 0, 1)
                a = a[0] if a.shape[0] == 1 else np.moveaxis(a[:3], 0, -1)
                box = OffsetImage(a, zoom=zoom, cmap="gray" if a.ndim == 2 else None, interpolation="nearest")
                ax.add_artist(AnnotationBbox(box, (px, py), frameon=True, pad=0.1, zorder=3))
            ax.set_xlim(lo[0] - span[0] * 0.06, hi[0] + span[0] * 0.06)
            ax.set_ylim(lo[1] - span[1] * 0.06, hi[1] + span[1] * 0.06)
    else:
        note = missing("no store: the map has no thumbnails")
    fig.tight_layout()
    return ("<h2>Map of the latents</h2><p>Every galaxy on the two leading principal components of its "
            "standardised latents; thumbnails are the galaxies nearest the centres of a grid over the map, "
            "as observed.</p>" + note + img(figure_png(fig), "2-D map of the latents with thumbnails"))
