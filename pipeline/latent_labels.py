"""Names for the latents: each ``z_i``'s Pearson correlation with properties measured on the input.

``evaluate`` names latents by the simulated factors; a survey has no truth, so the catalogue
names them by what any astronomer can measure on the same cutouts, from the sky-subtracted
luminance of :func:`pipeline.moments.subtract_background` (same ring and sigma as inference):

==================  =====  ================================================================
property            card   definition
==================  =====  ================================================================
``axis_ratio``      AXR    minor/major axis ratio of the second moments (``moment_axis_ratio``)
``size``            SIZ    second-moment radius ``sqrt(<dx^2 + dy^2>)``, store pixels
``log_flux``        FLX    log10 of the summed sky-subtracted luminance (pixel values in [0, 1])
``colour``          COL    ``-2.5 log10(F_blue / F_red)``: first and last channels, each less
                           its border-ring mean, summed over the luminance footprint (signal > 0)
``concentration``   CON    radial kurtosis ``<r^4> / <r^2>^2`` about the centroid: 2 for a
                           Gaussian, more for a peaked profile with wings (a bulge)
==================  =====  ================================================================

Frames: store images in display order (:mod:`pipeline.conventions`); sizes in store pixels.
A value that cannot be measured (no signal, one channel, a non-positive channel flux) is NaN
and that row is left out of the correlations.

A latent is named by the property with the largest ``|r|``, or ``unnamed`` when that is below
:data:`NAME_THRESHOLD` (0.5, as ``evaluate`` does for shapes).  In the FITS catalogue the name
goes into the ``TCOMM`` of ``z_i`` (``pose-invariant morphology latent ~ size (r=+0.82)``) and
every correlation into a header card per latent and property: ``R<card><i>`` (``RSIZ3`` is
r(z_3, size)) and ``ZLAB<i>`` (the name), with ``ZLABTHR`` the threshold.  A latent or property
without spread has r = 0.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "PROPERTIES",
    "NAME_THRESHOLD",
    "LATENT_DESCRIPTION",
    "LatentLabel",
    "measure_images",
    "correlations",
    "label_latents",
    "header_cards",
    "column_descriptions",
    "labels_from_header",
    "format_labels",
]

#: property -> (header card code, words used in names and comments).  Order is the card order.
PROPERTIES: dict[str, tuple[str, str]] = {
    "axis_ratio": ("AXR", "moment axis ratio"),
    "size": ("SIZ", "second-moment radius"),
    "log_flux": ("FLX", "log10 sky-subtracted flux"),
    "colour": ("COL", "colour -2.5log10(blue/red)"),
    "concentration": ("CON", "radial kurtosis <r^4>/<r^2>^2"),
}
#: a latent whose largest |r| is below this is ``unnamed``.
NAME_THRESHOLD: float = 0.5
#: start of every latent's TCOMM (the schema's own wording).
LATENT_DESCRIPTION = "pose-invariant morphology latent"
_UNNAMED = "unnamed"


@dataclass(frozen=True)
class LatentLabel:
    """One latent's name: ``label`` (a key of :data:`PROPERTIES` or ``unnamed``), ``r`` (its
    signed correlation with the best property, named or not), ``best`` (that property) and
    ``r_all`` (property -> r)."""

    name: str
    label: str
    best: str
    r: float
    r_all: dict[str, float]

    @property
    def named(self) -> bool:
        return self.label != _UNNAMED

    def text(self) -> str:
        """``z_3 ~ size (r=+0.82)`` or ``z_5 unnamed (best: colour, r=-0.31)``."""
        if self.named:
            return f"{self.name} ~ {self.label} (r={self.r:+.2f})"
        return f"{self.name} {_UNNAMED} (best: {self.best}, r={self.r:+.2f})"


def measure_images(images, *, ring: int = 4, k_sigma: float = 1.0) -> dict[str, NDArray[np.float64]]:
    """The properties of :data:`PROPERTIES` for images (B, C, H, W) in [0, 1]: name -> (B,) float64.

    ``ring`` (pixels) and ``k_sigma`` set the sky level as in
    :func:`pipeline.moments.subtract_background`.
    """
    import torch

    from pipeline.geometry import normalized_grid
    from pipeline.moments import image_moments, subtract_background

    images = torch.as_tensor(images).float()
    b, c, h, w = images.shape
    signal = subtract_background(images, ring=ring, k_sigma=k_sigma)  # (B, H, W)
    m = image_moments(signal)
    xx, yy = normalized_grid(h, w, device=signal.device, dtype=signal.dtype)
    r2 = (xx[None] - m.x[:, None, None]) ** 2 + (yy[None] - m.y[:, None, None]) ** 2  # (B, H, W), normalised
    flux = signal.sum(dim=(1, 2))
    has = flux > 0
    norm = flux.clamp_min(1e-12)
    m2 = (signal * r2).sum(dim=(1, 2)) / norm  # <r^2>, normalised units
    m4 = (signal * r2 * r2).sum(dim=(1, 2)) / norm
    radius = torch.sqrt(m2)
    nan = torch.full_like(flux, math.nan)
    out = {
        "axis_ratio": torch.where(has, m.axis_ratio, nan),
        "size": torch.where(has, radius * (w / 2.0), nan),  # normalised half-width is w / 2 pixels
        "log_flux": torch.where(has, torch.log10(norm), nan),
        "concentration": torch.where(has, m4 / m2.clamp_min(1e-12) ** 2, nan),
    }
    if c >= 3:
        mask = torch.ones(h, w, dtype=torch.bool, device=images.device)
        mask[ring:h - ring, ring:w - ring] = False
        sky = images[:, :, mask].mean(dim=2)  # (B, C) border-ring mean per channel
        foot = (signal > 0).to(images.dtype)[:, None]  # (B, 1, H, W)
        chan = ((images - sky[:, :, None, None]) * foot).sum(dim=(2, 3))  # (B, C)
        red, blue = chan[:, 0], chan[:, -1]
        ok = has & (red > 0) & (blue > 0)
        out["colour"] = torch.where(ok, -2.5 * torch.log10(blue.clamp_min(1e-12) / red.clamp_min(1e-12)), nan)
    else:
        out["colour"] = nan
    return {k: out[k].detach().double().cpu().numpy() for k in PROPERTIES}


def correlations(z: ArrayLike, properties: Mapping[str, ArrayLike]) -> NDArray[np.float64]:
    """Pearson r of every latent column with every property: (D, P), properties in the order given.

    Rows where the latent or the property is not finite are left out of that pair; fewer than
    three rows, or no spread, gives r = 0.
    """
    z = np.asarray(z, dtype=np.float64)
    z = z[:, None] if z.ndim == 1 else z
    out = np.zeros((z.shape[1], len(properties)))
    for p, values in enumerate(properties.values()):
        q = np.asarray(values, dtype=np.float64).ravel()
        if q.size != z.shape[0]:
            raise ValueError(f"a property has {q.size} values but z has {z.shape[0]} rows")
        for j in range(z.shape[1]):
            ok = np.isfinite(z[:, j]) & np.isfinite(q)
            if ok.sum() < 3:
                continue
            a = z[ok, j] - z[ok, j].mean()
            bq = q[ok] - q[ok].mean()
            den = math.sqrt(float((a * a).sum()) * float((bq * bq).sum()))
            out[j, p] = float((a * bq).sum()) / den if den > 0 else 0.0
    return out


def label_latents(r: ArrayLike, names: list[str] | None = None, *, threshold: float = NAME_THRESHOLD,
                  properties: list[str] | None = None) -> list[LatentLabel]:
    """Name each row of ``r`` (D, P) (from :func:`correlations`) by its largest |r|."""
    r = np.asarray(r, dtype=np.float64)
    props = list(properties or PROPERTIES)
    names = names or [f"z_{j}" for j in range(r.shape[0])]
    labels = []
    for j, row in enumerate(r):
        k = int(np.argmax(np.abs(row)))
        best, val = props[k], float(row[k])
        labels.append(LatentLabel(name=names[j], label=best if abs(val) >= threshold else _UNNAMED, best=best,
                                  r=val, r_all={p: float(v) for p, v in zip(props, row)}))
    return labels


def header_cards(labels: list[LatentLabel], *, threshold: float = NAME_THRESHOLD) -> dict[str, tuple]:
    """FITS keyword -> (value, comment) for the catalogue header (see the module docstring)."""
    cards: dict[str, tuple] = {"ZLABTHR": (threshold, "|r| below which a latent is unnamed")}
    for lab in labels:
        i = _index(lab.name)
        cards[f"ZLAB{i}"] = (lab.label, f"name of {lab.name}: property of largest |r|")
        for prop, (code, words) in PROPERTIES.items():
            if prop in lab.r_all:
                cards[f"R{code}{i}"] = (round(lab.r_all[prop], 6), f"Pearson r({lab.name}, {words})")
    return cards


def column_descriptions(labels: list[LatentLabel]) -> dict[str, str]:
    """Column -> TCOMM (at most 68 characters) naming each latent."""
    out = {}
    for lab in labels:
        if lab.named:
            out[lab.name] = f"{LATENT_DESCRIPTION} ~ {lab.label} (r={lab.r:+.2f})"
        else:
            out[lab.name] = f"{LATENT_DESCRIPTION}; {_UNNAMED} (|r|<{NAME_THRESHOLD:g} for all)"
    return out


def labels_from_header(meta: Mapping[str, object], latent_dim: int) -> list[LatentLabel]:
    """The labels :func:`header_cards` wrote, read back from a catalogue's header (``Table.meta``);
    empty when the catalogue has none."""
    threshold = float(meta.get("ZLABTHR", NAME_THRESHOLD))
    rows, names = [], []
    for i in range(latent_dim):
        if f"ZLAB{i}" not in meta:
            return []
        rows.append([float(meta.get(f"R{code}{i}", 0.0)) for code, _ in PROPERTIES.values()])
        names.append(f"z_{i}")
    return label_latents(np.array(rows).reshape(latent_dim, len(PROPERTIES)), names, threshold=threshold)


def format_labels(labels: list[LatentLabel]) -> list[str]:
    """One line per latent, named ones first by |r|: ``z_3 ~ size (r=+0.82)``."""
    order = sorted(labels, key=lambda lab: (not lab.named, -abs(lab.r)))
    return [lab.text() for lab in order]


def _index(name: str) -> int:
    m = re.fullmatch(r"z_(\d+)", name)
    if m is None:
        raise ValueError(f"not a latent column name: {name!r}")
    return int(m.group(1))
