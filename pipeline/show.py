"""One galaxy at a glance (``galaxy-codae show``): its cutout with the catalogue pose, the model's
same-view and aligned reconstructions, the residual, and its catalogue row.

Panels, left to right (store cutout, display frame, row 0 at the top):

1. the cutout, with the catalogue centroid (``x_pix``/``y_pix``, taken from the cutout frame to
   the store's with :func:`pipeline.conventions.cutout_to_store_pixels`) as a cross and the
   orientation ``theta_deg`` (counter-clockwise from +x as displayed) as an arrow from it;
2. the same-view reconstruction (the model run on this cutout);
3. the aligned reconstruction (centred, orientation along +x);
4. the residual, cutout minus same view, averaged over channels (blue negative, red positive).

Below them, every column of the catalogue row with its unit.  A checkpoint other than the one
the catalogue was made with (header ``CKPTSHA``) is said in the figure's title.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline import __version__
from pipeline.errors import BadInputError

__all__ = ["GalaxyView", "catalogue_row", "view_galaxy", "render_show", "show_galaxy"]


def catalogue_row(catalog: str | os.PathLike, id: str):
    """The catalogue row of ``id`` as a one-row astropy Table (units kept); BadInputError if absent."""
    from catalogs.fits_io import open_catalog

    with open_catalog(catalog) as cat:
        ids = np.asarray(np.asarray(cat.read_arrays(["id"])["id"]).tolist(), dtype=np.str_)
        rows = np.flatnonzero(ids == str(id))
        if len(rows) == 0:
            raise BadInputError(f"id {id!r} is not in {catalog}")
        return cat.read(None, rows[:1])


def _value_lines(row) -> list[str]:
    """``name = value unit`` for each column of a one-row table."""
    lines = []
    for name in row.colnames:
        value = row[name][0]
        unit = f" {row[name].unit}" if row[name].unit is not None else ""
        if isinstance(value, (float, np.floating)):
            text = f"{value:.5g}"
        else:
            text = str(value)
        lines.append(f"{name} = {text}{unit}")
    return lines


@dataclass(frozen=True)
class GalaxyView:
    """What the figure shows, as arrays.

    ``image``, ``same_view``, ``aligned``, ``residual`` (= image - same view): (C, S, S) in the
    store's display frame; ``arrow``: ((x0, y0), (x1, y1)) in store pixels, from the catalogue
    centroid along ``theta_deg`` (CCW as displayed, so y decreases for 0 < theta < 180);
    ``lines``: ``name = value unit`` for each column of the catalogue row; ``title``.
    """

    image: np.ndarray
    same_view: np.ndarray
    aligned: np.ndarray
    residual: np.ndarray
    arrow: tuple[tuple[float, float], tuple[float, float]]
    lines: list[str]
    title: str


def render_show(view: GalaxyView) -> bytes:
    """PNG bytes of the figure of a :class:`GalaxyView`."""
    import matplotlib

    matplotlib.use("Agg")  # no display on compute nodes
    import matplotlib.pyplot as plt

    def rgb(a: np.ndarray) -> np.ndarray:
        a = np.clip(a, 0.0, 1.0)
        return a[0] if a.shape[0] == 1 else np.moveaxis(a[:3], 0, -1)

    size = view.image.shape[-1]
    lines = view.lines
    ncol = 3
    nrow_text = -(-len(lines) // ncol)
    fig = plt.figure(figsize=(10.0, 3.0 + 0.17 * nrow_text))
    grid = fig.add_gridspec(2, 4, height_ratios=[2.6, 0.17 * nrow_text + 0.2])
    panels = [(view.image, "cutout, catalogue pose"), (view.same_view, "same-view reconstruction"),
              (view.aligned, "aligned reconstruction")]
    for j, (img, name) in enumerate(panels):
        ax = fig.add_subplot(grid[0, j])
        a = rgb(img)
        ax.imshow(a, cmap="gray" if a.ndim == 2 else None, vmin=0, vmax=1, origin="upper", interpolation="nearest")
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        if j == 0:
            (x0, y0), (x1, y1) = view.arrow
            ax.annotate("", xy=(x1, y1), xytext=(x0, y0),
                        arrowprops={"arrowstyle": "->", "color": "tab:orange", "lw": 1.8})
            ax.plot([x0], [y0], marker="+", color="tab:cyan", markersize=12, mew=2)
            ax.set_xlim(-0.5, size - 0.5)
            ax.set_ylim(size - 0.5, -0.5)
    resid = view.residual.mean(axis=0)
    lim = float(np.percentile(np.abs(resid), 99.5)) or 1e-6
    ax = fig.add_subplot(grid[0, 3])
    im = ax.imshow(resid, cmap="RdBu_r", vmin=-lim, vmax=lim, origin="upper", interpolation="nearest")
    ax.set_title("residual (cutout - same view)", fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03).ax.tick_params(labelsize=7)
    text = fig.add_subplot(grid[1, :])
    text.axis("off")
    for c in range(ncol):
        chunk = lines[c * nrow_text:(c + 1) * nrow_text]
        text.text(c / ncol, 1.0, "\n".join(chunk), va="top", ha="left", family="monospace", fontsize=7.5,
                  transform=text.transAxes)
    if view.title:
        fig.suptitle(view.title, fontsize=10)
    fig.tight_layout(pad=0.5)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": f"galaxy-codae {__version__}"})
    plt.close(fig)
    return buf.getvalue()


def view_galaxy(catalog: str | os.PathLike, id: str, store: str | os.PathLike,
                checkpoint: str | os.PathLike) -> GalaxyView:
    """Run the model of ``checkpoint`` on the store cutout of ``id`` and collect what the figure shows.

    Raises :class:`BadInputError` for an id not in the catalogue or not in the store, a catalogue
    without a pose, or a checkpoint whose image size or channels differ from the store's.
    """
    import torch

    from pipeline.checkpoint import file_sha256, load_model
    from pipeline.conventions import cutout_to_store_pixels
    from pipeline.data.store import open_store
    from pipeline.mosaic import read_cutouts

    row = catalogue_row(catalog, id)
    for col in ("x_pix", "y_pix", "theta_deg"):
        if col not in row.colnames:
            raise BadInputError(f"{catalog} has no column {col!r}; is it a catalogue from `galaxy-codae infer`?")
    st = open_store(store)
    info = st.info
    image = read_cutouts(st, [str(id)])  # (1, C, S, S)
    model, state = load_model(checkpoint)
    mc = state["config"].model
    if (mc.channels, mc.image_size) != (info.channels, info.size):
        raise BadInputError(f"{checkpoint}: model expects {mc.channels}x{mc.image_size}x{mc.image_size} images, "
                            f"the store {store} holds {info.channels}x{info.size}x{info.size}")
    with torch.inference_mode():
        out = model(torch.from_numpy(image))
    same_view = out.same_view[0].float().numpy()
    x0 = float(cutout_to_store_pixels(float(row["x_pix"][0]), crop_start=info.crop_start_x,
                                      crop_size=info.crop_size, size=info.size))
    y0 = float(cutout_to_store_pixels(float(row["y_pix"][0]), crop_start=info.crop_start_y,
                                      crop_size=info.crop_size, size=info.size))
    t = np.deg2rad(float(row["theta_deg"][0]))
    length = 0.3 * info.size
    arrow = ((x0, y0), (x0 + length * float(np.cos(t)), y0 - length * float(np.sin(t))))  # CCW as displayed, y down
    title = str(id)
    made_with = str(row.meta.get("CKPTSHA", ""))
    if made_with and made_with != file_sha256(checkpoint):
        title += "  (this checkpoint is not the one the catalogue was made with)"
    return GalaxyView(image=image[0], same_view=same_view, aligned=out.aligned[0].float().numpy(),
                      residual=image[0] - same_view, arrow=arrow, lines=_value_lines(row), title=title)


def show_galaxy(catalog: str | os.PathLike, id: str, store: str | os.PathLike, checkpoint: str | os.PathLike, *,
                out: str | os.PathLike | None = None, overwrite: bool = False) -> bytes:
    """The one-galaxy figure of ``id`` as PNG bytes (written to ``out`` when given; see :func:`view_galaxy`)."""
    from pipeline.mosaic import save_png

    png = render_show(view_galaxy(catalog, id, store, checkpoint))
    if out is not None:
        save_png(png, Path(out), overwrite=overwrite)
    return png
