"""The stack FITS file and its PNG previews.

FITS: an empty primary HDU whose header records the catalogue, the store, the selection, the
method and the catalogue's provenance, and one image HDU per stack (``STACK``, or ``BIN1`` ...
``BINK``) of shape (C, H, W), float32, rows in FITS order (row 1 at the bottom, as viewers
expect; :func:`pipeline.conventions.fits_to_display` flips them back).  Each image HDU says
what its values and axes are:

- ``BUNIT`` and ``VALSCALE``: the store's value scale (``uint8/255``: the display values of the
  survey's colour JPEG or PNG over 255, not flux; or ``input``: the FITS cutouts' own values);
- ``BAND1`` ... ``BANDC``: the band (or display colour) of each plane (``z``, ``r``, ``g`` for
  the planes of a Legacy Survey / DECaLS colour JPEG);
- when the pixel scale is known, WCS-style linear axes in arcsec centred on the centroid:
  ``CTYPE1 = 'XOFFSET'`` along the galaxy's orientation (``theta_deg``), ``CTYPE2 = 'YOFFSET'``,
  ``CUNIT = 'arcsec'``, ``CDELT`` (arcsec per stack pixel), ``CRPIX`` at the centre; axis 3 is
  the plane number.  ``PIXSCALE`` repeats the scale; ``PIXSCSRC`` says where it came from.

Header cards go through :mod:`catalogs.fits_header` (the catalogue's helpers: long strings,
comments that fit).  PNG previews: the stack asinh-stretched (``astropy.visualization``), shown
at least 360 pixels wide with a title and, when the pixel scale is known, a scale bar in
arcsec.  Every file is written under a temporary name and renamed into place only when all
of them are written (:mod:`catalogs.atomic`); each carries the ``galaxy-codae`` signature.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Scale", "asinh_preview", "preview_paths", "write_stacks"]

#: the colour planes of a Legacy Survey (DECaLS) colour JPEG: R, G, B show z, r, g.
DECALS_BANDS: tuple[str, str, str] = ("z", "r", "g")
_PREVIEW_PX = 360  # smallest preview side in screen pixels


@dataclass(frozen=True)
class Scale:
    """The stack's pixel scale: ``arcsec`` per stack pixel, and where it came from (``source``).

    ``spread``: (min, max) arcsec per stack pixel over the stacked galaxies when the scale came
    from a per-object column (``arcsec`` is then their median).
    """

    arcsec: float
    source: str
    spread: tuple[float, float] | None = None


def preview_paths(out: str | os.PathLike, n_stacks: int) -> list[Path]:
    """PNG preview paths beside ``out``: ``<stem>.png`` for one stack, ``<stem>_bin<k>.png`` for bins."""
    out = Path(out)
    stem = out.name[: -len(out.suffix)] if out.suffix else out.name
    if n_stacks == 1:
        return [out.with_name(f"{stem}.png")]
    return [out.with_name(f"{stem}_bin{k + 1}.png") for k in range(n_stacks)]


def asinh_preview(image: np.ndarray) -> np.ndarray:
    """A display image (H, W, 3) or (H, W) in [0, 1] from a stack (C, H, W), asinh stretch.

    Black at the median of a 4-pixel border ring (the sky), white at the 99.5th percentile
    of the channel mean; one interval for all channels keeps the colours.
    """
    from astropy.visualization import AsinhStretch, ManualInterval

    img = np.nan_to_num(np.asarray(image, dtype=np.float64), nan=0.0)
    lum = img.mean(axis=0)
    ring = np.ones(lum.shape, dtype=bool)
    ring[4:-4, 4:-4] = False
    vmin = float(np.median(lum[ring])) if ring.any() else float(lum.min())
    vmax = float(np.percentile(lum, 99.5))
    if not vmax > vmin:
        vmax = vmin + 1e-6
    norm = AsinhStretch(a=0.1)(ManualInterval(vmin, vmax)(img, clip=True), clip=True)
    if norm.shape[0] == 3:
        return np.moveaxis(norm, 0, -1)
    return norm.mean(axis=0)


def _bar_length(width_arcsec: float) -> float:
    """A round scale-bar length, about a quarter of the image width (arcsec)."""
    target = width_arcsec / 4
    steps = [0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 20, 30, 60, 120, 300, 600]
    return max([s for s in steps if s <= target], default=steps[0])


def _save_preview(path: Path, image: np.ndarray, title: str, scale: Scale | None) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display on compute nodes
    import matplotlib.pyplot as plt

    from catalogs import __version__

    shown = asinh_preview(image)
    h, w = shown.shape[:2]
    inches = max(_PREVIEW_PX / 100, 4.0)
    fig, ax = plt.subplots(figsize=(inches, inches * h / w + 0.45), dpi=100)
    ax.imshow(shown, cmap="gray" if shown.ndim == 2 else None, vmin=0, vmax=1, origin="upper",
              interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=9)
    if scale is not None:
        length = _bar_length(w * scale.arcsec)
        px = length / scale.arcsec
        x0, y0 = 0.06 * w, 0.92 * h
        ax.plot([x0, x0 + px], [y0, y0], color="white", linewidth=3, solid_capstyle="butt")
        label = f'{length:g}"' if length < 60 else f"{length / 60:g}'"
        ax.text(x0 + px / 2, y0 - 0.03 * h, label, color="white", ha="center", va="bottom", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, format="png", metadata={"Software": f"galaxy-codae {__version__}"})
    plt.close(fig)


def _image_cards(*, bands: Sequence[str], value_scale: tuple[str, str], scale: Scale | None,
                 size: int) -> list[tuple[str, Any, str]]:
    """Cards that say what an image HDU's values and axes are (see the module docstring)."""
    unit, meaning = value_scale
    cards: list[tuple[str, Any, str]] = [("BUNIT", "", meaning), ("VALSCALE", unit, "value scale of the pixels")]
    cards += [(f"BAND{k + 1}", name, f"band (or display colour) of plane {k + 1}") for k, name in enumerate(bands)]
    if scale is None:
        return cards
    centre = (size + 1) / 2.0  # FITS pixel of the centroid (1-based; 0-based (size - 1) / 2)
    cards += [("WCSAXES", 3, "linear offset axes, then the plane number"),
              ("CTYPE1", "XOFFSET", "offset along the galaxy orientation (theta_deg)"),
              ("CTYPE2", "YOFFSET", "offset perpendicular to it (CCW)"),
              ("CTYPE3", "BAND", "plane number: BAND1, BAND2, ..."),
              ("CUNIT1", "arcsec", ""), ("CUNIT2", "arcsec", ""),
              ("CRPIX1", centre, "the centroid"), ("CRPIX2", centre, "the centroid"), ("CRPIX3", 1.0, ""),
              ("CRVAL1", 0.0, ""), ("CRVAL2", 0.0, ""), ("CRVAL3", 1.0, ""),
              ("CDELT1", scale.arcsec, "[arcsec] per stack pixel"), ("CDELT2", scale.arcsec, "[arcsec] per stack pixel"),
              ("CDELT3", 1.0, ""),
              ("PIXSCALE", scale.arcsec, "[arcsec] per stack pixel"), ("PIXSCSRC", scale.source, "pixel scale from")]
    if scale.spread is not None:
        cards += [("PIXSCMIN", scale.spread[0], "[arcsec] smallest scale stacked"),
                  ("PIXSCMAX", scale.spread[1], "[arcsec] largest scale stacked")]
    return cards


def write_stacks(out: Path, stacks: Sequence[tuple[str, np.ndarray, list[tuple[str, Any, str]], str]],
                 primary_cards: list[tuple[str, Any, str]], pngs: Sequence[Path | None], *, bands: Sequence[str],
                 value_scale: tuple[str, str], scale: Scale | None) -> None:
    """Write ``out`` (FITS) and the previews ``pngs`` (None: no preview for that stack), all or nothing.

    ``stacks``: (extname, image (C, H, W) in the display frame, its own cards, preview title).
    """
    from astropy.io import fits

    from catalogs.atomic import atomic_path
    from catalogs.fits_header import set_cards
    from pipeline.conventions import fits_to_display

    primary = fits.PrimaryHDU()
    set_cards(primary.header, primary_cards)
    hdus: list[Any] = [primary]
    for extname, image, cards, _ in stacks:
        # fits_to_display flips rows; the flip is its own inverse: display -> FITS order here
        hdu = fits.ImageHDU(data=fits_to_display(image).astype(np.float32), name=extname)
        set_cards(hdu.header, cards + _image_cards(bands=bands, value_scale=value_scale, scale=scale,
                                                   size=image.shape[-1]))
        hdu.header.add_comment("Rows in FITS order (row 1 at the bottom); centroid at the centre,")
        hdu.header.add_comment("orientation (theta_deg) along +x (axis 1).")
        hdus.append(hdu)
    with ExitStack() as stack:  # every temporary is renamed only when all are written
        for (_, image, _, title), png in zip(stacks, pngs):
            if png is not None:
                _save_preview(stack.enter_context(atomic_path(png)), image, title, scale)
        with atomic_path(out) as tmp:
            fits.HDUList(hdus).writeto(tmp)
