"""Mosaics of a similarity search: the query and its neighbours as observed, and turned to the query's orientation.

Top row: each store cutout as it is (display frame, row 0 at the top).  Bottom row: the same
galaxies recentred and turned so that each one's orientation (catalogue ``theta_deg``) lies
where the query's does, through the project's one pose transform
(:func:`pipeline.geometry.align_to_pose`) in a single resampling: derotating galaxy ``i`` by
``theta_i`` and turning it to ``theta_q`` is the alignment with angle ``theta_i - theta_q``
(``M(theta_i) M(-theta_q) = M(theta_i - theta_q)`` in :mod:`pipeline.geometry`'s notation),
about its catalogue centroid (``x_pix``/``y_pix``, taken from the cutout frame to the store's
with :func:`pipeline.conventions.cutout_to_store_pixels`, then to the normalised frame).
Galaxies are matched to the store by id, never by position.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pipeline import __version__
from pipeline.errors import BadInputError

__all__ = ["store_rows", "read_cutouts", "turned_to", "render_mosaic", "similarity_mosaic", "save_png"]


def store_rows(store, ids: Sequence[str]) -> np.ndarray:
    """Row of each id in the open ``store`` (:func:`pipeline.ids.match_ids`); a :class:`BadInputError`
    names the first id not there."""
    from pipeline.ids import as_str_ids, match_ids

    ids = as_str_ids(np.asarray([str(i) for i in ids]))
    rows = match_ids(ids, store.ids)
    if (rows < 0).any():
        missing = ids[rows < 0]
        raise BadInputError(f"{len(missing)} id(s) are not in the store {store.path} (first: {str(missing[0])!r}); "
                            "was the catalogue made from another store?")
    return rows


def read_cutouts(store, ids: Sequence[str]) -> np.ndarray:
    """Store images of ``ids`` in that order, float32 in [0, 1]: (N, C, S, S).

    ``store``: an open :class:`pipeline.data.store.Store`.  An id missing from the store is a
    :class:`BadInputError` naming it.
    """
    rows = store_rows(store, ids)
    scale = np.float32(1.0 / 255.0) if store.info.dtype == "uint8" else np.float32(1.0)
    return store.read_indices(rows).astype(np.float32) * scale


def turned_to(images: np.ndarray, table, info, theta_deg: float) -> np.ndarray:
    """Images recentred on their centroids and turned so their orientation is ``theta_deg``.

    ``table``: rows with ``x_pix``, ``y_pix`` (cutout frame) and ``theta_deg``, one per image;
    ``info``: the store's :class:`~pipeline.data.store.StoreInfo`.  Returns (N, C, S, S).
    """
    import torch

    from pipeline.conventions import cutout_to_store_pixels, pixel_to_normalized
    from pipeline.geometry import align_to_pose

    def normalised(col: str, crop_start: int) -> np.ndarray:
        pix = cutout_to_store_pixels(np.asarray(table[col], dtype=np.float64), crop_start=crop_start,
                                     crop_size=info.crop_size, size=info.size)
        return pixel_to_normalized(pix, info.size)

    x, y = normalised("x_pix", info.crop_start_x), normalised("y_pix", info.crop_start_y)
    theta = np.deg2rad(np.asarray(table["theta_deg"], dtype=np.float64))
    if not (np.isfinite(theta).all() and np.isfinite(x).all() and np.isfinite(y).all()):
        raise BadInputError("a galaxy of the mosaic has no finite x_pix, y_pix or theta_deg")
    turn = theta - np.deg2rad(float(theta_deg))

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.asarray(a, dtype=np.float32))

    return align_to_pose(t(images), t(turn), t(x), t(y)).numpy()


def _rgb(image: np.ndarray) -> np.ndarray:
    """(C, H, W) in [0, 1] -> (H, W, 3) or (H, W) for imshow."""
    a = np.clip(image, 0.0, 1.0)
    return a[0] if a.shape[0] == 1 else np.moveaxis(a[:3], 0, -1)


def render_mosaic(observed: np.ndarray, turned: np.ndarray, labels: Sequence[str], *, title: str = "",
                  row_labels: tuple[str, str] = ("as observed", "turned to the query")) -> bytes:
    """PNG bytes of a two-row mosaic: ``observed`` on top, ``turned`` below, a label per column."""
    import matplotlib

    matplotlib.use("Agg")  # no display on compute nodes
    import matplotlib.pyplot as plt

    n = len(observed)
    fig, axes = plt.subplots(2, n, figsize=(1.25 * n + 0.4, 3.0 + (0.25 if title else 0.0)), squeeze=False)
    for j in range(n):
        for i, imgs in enumerate((observed, turned)):
            ax = axes[i][j]
            a = _rgb(imgs[j])
            ax.imshow(a, cmap="gray" if a.ndim == 2 else None, vmin=0, vmax=1, origin="upper",
                      interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                for spine in ax.spines.values():
                    spine.set_edgecolor("tab:orange")
                    spine.set_linewidth(2.5)
        axes[0][j].set_title(labels[j], fontsize=6.5)
    axes[0][0].set_ylabel(row_labels[0], fontsize=8)
    axes[1][0].set_ylabel(row_labels[1], fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout(pad=0.4)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": f"galaxy-codae {__version__}"})
    plt.close(fig)
    return buf.getvalue()


def save_png(data: bytes, out: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write PNG bytes atomically; an existing file is replaced only with ``overwrite`` and only if
    this project wrote it (:func:`catalogs.atomic.check_output_file`)."""
    from catalogs.atomic import check_output_file, write_bytes

    out = check_output_file(out, overwrite=overwrite, what="a PNG file", error=BadInputError)
    write_bytes(out, data)
    return out


def _label(row) -> str:
    ident = str(row["id"])
    short = ident if len(ident) <= 20 else ident[:9] + "…" + ident[-9:]
    if int(row["rank"]) == 0:
        return f"query\n{short}"
    return f"{int(row['rank'])}: d = {float(row['distance']):.2f}\n{short}"


def similarity_mosaic(result, store: str | os.PathLike, *, out: str | os.PathLike | None = None,
                      overwrite: bool = False) -> bytes:
    """The mosaic of a search result (:func:`catalogs.neighbours.find_similar`) as PNG bytes; also
    written to ``out`` when given.  ``result`` row 0 is the query; the bottom row is turned to its
    ``theta_deg``.  Ids missing from ``store`` are a :class:`BadInputError`.
    """
    from pipeline.data.store import open_store

    for col in ("id", "rank", "distance", "x_pix", "y_pix", "theta_deg"):
        if col not in result.colnames:
            raise BadInputError(f"the search result has no column {col!r}; the catalogue lacks it")
    st = open_store(store)
    observed = read_cutouts(st, [str(i) for i in result["id"]])
    turned = turned_to(observed, result, st.info, float(result["theta_deg"][0]))
    metric = result.meta.get("METRIC", "")
    title = f"{len(result) - 1} nearest in the {metric} latents" if metric else ""
    png = render_mosaic(observed, turned, [_label(r) for r in result], title=title)
    if out is not None:
        save_png(png, out, overwrite=overwrite)
    return png
