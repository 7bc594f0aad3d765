"""Synthetic shape data sets with known factors: XYRCS and a procedural dSprites.

XYRCS (as in the CODAE paper's Methods): 64 x 64 RGB images of one circle, triangle or
rectangle with factors x, y, rotation, colour (hue) and brightness.  dSprites
(Matthey et al. 2017): 64 x 64 binary images of a square, ellipse or heart with the
original factor grid: 6 scales in [0.5, 1], 40 rotations over [0, 2 pi), 32 x and 32 y
positions in [0, 1].  :func:`load_dsprites_npz` reads the real ``dsprites_ndarray_*.npz``.

Frames: images are (N, C, 64, 64) in display order (row 0 on top); ``x_pix``, ``y_pix``
are the shape's centre in pixels (0-based, centres at integers, y down);
``rotation_deg`` is the turn of the canonical shape in degrees counter-clockwise *as
displayed* (see :mod:`pipeline.conventions`).  Canonical shapes (rotation 0): the
rectangle and ellipse have their long axis along +x, the triangle has a vertex along +x,
the heart has its lobes up and its point down.  Each shape maps onto itself under turns
by :data:`ROTATIONAL_SYMMETRY_DEG` (0 = every angle; 360 = no symmetry), so only
``rotation_deg`` modulo that angle is visible.

Shapes are rasterised by supersampling (``SUPERSAMPLE`` x ``SUPERSAMPLE`` points per
pixel, inside-tests in the shape's own frame, averaged), so edges are anti-aliased and
rotation follows the stated convention exactly; binary dSprites images threshold the
pixel coverage at 1/2.
"""

from __future__ import annotations

import colorsys
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from pipeline.errors import BadInputError

__all__ = [
    "ShapeData",
    "ROTATIONAL_SYMMETRY_DEG",
    "XYRCS_SHAPES",
    "DSPRITES_SHAPES",
    "DSPRITES_SCALES",
    "DSPRITES_ROTATIONS_DEG",
    "DSPRITES_POSITIONS",
    "rasterize",
    "make_xyrcs",
    "make_dsprites",
    "load_dsprites_npz",
]

SIZE = 64
SUPERSAMPLE = 4

#: Smallest turn (degrees) mapping each shape onto itself; 0: any turn; 360: none.
ROTATIONAL_SYMMETRY_DEG: dict[str, float] = {
    "circle": 0.0, "triangle": 120.0, "rectangle": 180.0,
    "square": 90.0, "ellipse": 180.0, "heart": 360.0,
}
XYRCS_SHAPES: tuple[str, ...] = ("circle", "triangle", "rectangle")
DSPRITES_SHAPES: tuple[str, ...] = ("square", "ellipse", "heart")
DSPRITES_SCALES: NDArray[np.float64] = np.linspace(0.5, 1.0, 6)
DSPRITES_ROTATIONS_DEG: NDArray[np.float64] = np.arange(40) * 360.0 / 40
DSPRITES_POSITIONS: NDArray[np.float64] = np.linspace(0.0, 1.0, 32)

# Sizes in pixels at scale 1 (half-extents in the shape frame).
_XYRCS_RADIUS = 10.0  # circle radius; triangle circumradius; rectangle half-length
_XYRCS_RECT_ASPECT = 0.45  # rectangle half-width / half-length
_DSPRITES_HALF = 9.0  # square half-side, ellipse semi-major, heart half-width at scale 1
_DSPRITES_ELLIPSE_Q = 0.5
_DSPRITES_MARGIN = 13.0  # centres span [margin, 63 - margin] px as positions go 0 -> 1


class ShapeData(NamedTuple):
    """Images (N, C, 64, 64) and their factor table (one row per image).

    Images are uint8 in 0..255, as everywhere in the pipeline (uint8 / 255 gives [0, 1]); binary
    dSprites are {0, 255}.
    """

    images: NDArray
    factors: pd.DataFrame


def _inside(shape: str, u: NDArray[np.float64], v: NDArray[np.float64], half: float) -> NDArray[np.bool_]:
    """Inside-test in the shape frame (u right, v up, pixels), ``half`` = the shape's size."""
    if shape == "circle":
        return u * u + v * v <= half * half
    if shape == "rectangle":
        return (np.abs(u) <= half) & (np.abs(v) <= _XYRCS_RECT_ASPECT * half)
    if shape == "square":
        return (np.abs(u) <= half) & (np.abs(v) <= half)
    if shape == "ellipse":
        return (u / half) ** 2 + (v / (_DSPRITES_ELLIPSE_Q * half)) ** 2 <= 1.0
    if shape == "triangle":  # equilateral, circumradius half, a vertex on +u
        ok = np.ones(u.shape, dtype=bool)
        for k in range(3):
            a = np.deg2rad(60.0 + 120.0 * k)  # outward normals of the edges, apothem half / 2
            ok &= u * np.cos(a) + v * np.sin(a) <= 0.5 * half
        return ok
    if shape == "heart":  # (x^2 + y^2 - 1)^3 <= x^2 y^3, lobes up; spans |x| <= ~1.14
        x, y = u / (half / 1.14), v / (half / 1.14) + 0.15
        return (x * x + y * y - 1.0) ** 3 <= x * x * y ** 3
    raise ValueError(f"unknown shape {shape!r}")


def rasterize(shape: str, x_pix: float, y_pix: float, rotation_deg: float, half: float, *,
              size: int = SIZE, supersample: int = SUPERSAMPLE) -> NDArray[np.float32]:
    """Pixel coverage in [0, 1] of one shape, (size, size) float32, display frame.

    ``(x_pix, y_pix)``: centre in pixels (y down); ``rotation_deg``: CCW as displayed;
    ``half``: size in pixels (radius, half-length or half-side).
    """
    s = supersample
    sub = (np.arange(size * s) + 0.5) / s - 0.5  # sub-pixel centres, pixel centres at integers
    dx = sub[None, :] - x_pix
    dy_up = -(sub[:, None] - y_pix)  # y up for the rotation
    t = np.deg2rad(rotation_deg)
    c, sn = np.cos(t), np.sin(t)
    # Turning the shape CCW by t = turning the sample points by -t into the shape frame.
    u = c * dx + sn * dy_up
    v = -sn * dx + c * dy_up
    inside = _inside(shape, u, v, half).astype(np.float32)
    return inside.reshape(size, s, size, s).mean(axis=(1, 3))


def make_xyrcs(n: int, *, seed: int = 0, channels: int = 3) -> ShapeData:
    """``n`` XYRCS images, float32 (N, channels, 64, 64) in [0, 1] on a black background.

    Factors: ``shape`` (str), ``shape_id`` (index in :data:`XYRCS_SHAPES`), ``x_pix``,
    ``y_pix`` (centre, pixels, kept ``radius + 2`` from the edges), ``rotation_deg``
    (uniform in [0, 360), CCW as displayed), ``hue`` in [0, 1) and ``brightness`` in
    [0.4, 1] (HSV value; ``channels=1`` gives the brightness alone), ``symmetry_deg``.
    """
    rng = np.random.default_rng(seed)
    shape_id = rng.integers(0, len(XYRCS_SHAPES), n)
    lo, hi = _XYRCS_RADIUS + 2.0, SIZE - 1 - _XYRCS_RADIUS - 2.0
    x = rng.uniform(lo, hi, n)
    y = rng.uniform(lo, hi, n)
    rot = rng.uniform(0.0, 360.0, n)
    hue = rng.uniform(0.0, 1.0, n)
    bright = rng.uniform(0.4, 1.0, n)
    images = np.empty((n, channels, SIZE, SIZE), dtype=np.float32)
    for i in range(n):
        cover = rasterize(XYRCS_SHAPES[shape_id[i]], x[i], y[i], rot[i], _XYRCS_RADIUS)
        colour = colorsys.hsv_to_rgb(hue[i], 1.0, bright[i]) if channels == 3 else (bright[i],) * channels
        images[i] = np.asarray(colour, dtype=np.float32)[:, None, None] * cover[None]
    names = [XYRCS_SHAPES[k] for k in shape_id]
    factors = pd.DataFrame({"shape": names, "shape_id": shape_id, "x_pix": x, "y_pix": y, "rotation_deg": rot,
                            "hue": hue, "brightness": bright,
                            "symmetry_deg": [ROTATIONAL_SYMMETRY_DEG[s] for s in names]})
    return ShapeData(images, factors)


def make_dsprites(n: int, *, seed: int = 0) -> ShapeData:
    """``n`` procedural dSprites, uint8 (N, 1, 64, 64) in {0, 255}, factors on the dSprites grid.

    Factors: ``shape``, ``shape_id`` (index in :data:`DSPRITES_SHAPES`), ``scale``
    (:data:`DSPRITES_SCALES`), ``rotation_deg`` (:data:`DSPRITES_ROTATIONS_DEG`, CCW as
    displayed), ``pos_x``, ``pos_y`` in [0, 1] (:data:`DSPRITES_POSITIONS`; pos_y grows
    downward), ``x_pix``, ``y_pix`` (centre in pixels), ``symmetry_deg``, and the
    integer class of each factor (``*_class``) as in the real file.
    """
    rng = np.random.default_rng(seed)
    shape_id = rng.integers(0, 3, n)
    scale_c = rng.integers(0, len(DSPRITES_SCALES), n)
    rot_c = rng.integers(0, len(DSPRITES_ROTATIONS_DEG), n)
    px_c = rng.integers(0, 32, n)
    py_c = rng.integers(0, 32, n)
    span = SIZE - 1 - 2 * _DSPRITES_MARGIN
    x = _DSPRITES_MARGIN + DSPRITES_POSITIONS[px_c] * span
    y = _DSPRITES_MARGIN + DSPRITES_POSITIONS[py_c] * span
    images = np.empty((n, 1, SIZE, SIZE), dtype=np.uint8)
    for i in range(n):
        cover = rasterize(DSPRITES_SHAPES[shape_id[i]], x[i], y[i], DSPRITES_ROTATIONS_DEG[rot_c[i]],
                          _DSPRITES_HALF * DSPRITES_SCALES[scale_c[i]])
        images[i, 0] = np.where(cover >= 0.5, 255, 0)
    names = [DSPRITES_SHAPES[k] for k in shape_id]
    factors = pd.DataFrame({
        "shape": names, "shape_id": shape_id, "scale": DSPRITES_SCALES[scale_c],
        "rotation_deg": DSPRITES_ROTATIONS_DEG[rot_c], "pos_x": DSPRITES_POSITIONS[px_c],
        "pos_y": DSPRITES_POSITIONS[py_c], "x_pix": x, "y_pix": y,
        "symmetry_deg": [ROTATIONAL_SYMMETRY_DEG[s] for s in names],
        "scale_class": scale_c, "rotation_class": rot_c, "pos_x_class": px_c, "pos_y_class": py_c,
    })
    return ShapeData(images, factors)


#: Column names of ``latents_values`` / ``latents_classes`` in the real dSprites file.
_DSPRITES_LATENTS = ("color", "shape", "scale", "orientation", "pos_x", "pos_y")


def load_dsprites_npz(path: Path | str, *, indices: NDArray[np.integer] | None = None) -> ShapeData:
    """Read DeepMind's ``dsprites_ndarray_*.npz`` (keys ``imgs``, ``latents_values``, ``latents_classes``).

    Returns uint8 images (N, 1, 64, 64) in {0, 255} (the file stores {0, 1}; scaled so that uint8 /
    255 is [0, 1], as everywhere in the pipeline) and the factors as stored: ``color``, ``shape``
    (1 square, 2 ellipse, 3 heart), ``scale``, ``orientation`` (radians; the real file's
    40 values run over [0, 2 pi] inclusive, so 0 and 2 pi coincide), ``pos_x``, ``pos_y``,
    plus ``*_class`` integer columns.  The file's sense of rotation and of ``pos_y`` as
    displayed is the file's own; it is not converted here.  ``indices`` selects rows.
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in ("imgs", "latents_values", "latents_classes") if k not in npz.files]
            if missing:
                raise BadInputError(f"{path}: not a dSprites file (missing {', '.join(missing)})")
            imgs = npz["imgs"] if indices is None else npz["imgs"][indices]
            values = npz["latents_values"] if indices is None else npz["latents_values"][indices]
            classes = npz["latents_classes"] if indices is None else npz["latents_classes"][indices]
    except (OSError, ValueError) as e:
        raise BadInputError(f"{path}: cannot read dSprites npz ({e})") from e
    if imgs.ndim != 3 or values.shape != (len(imgs), 6) or classes.shape != (len(imgs), 6):
        raise BadInputError(f"{path}: unexpected dSprites shapes imgs {imgs.shape}, latents {values.shape}")
    if imgs.size and int(imgs.max()) > 1:
        raise BadInputError(f"{path}: dSprites imgs should be binary {{0, 1}}, found a maximum of {int(imgs.max())}")
    factors = pd.DataFrame({name: values[:, j] for j, name in enumerate(_DSPRITES_LATENTS)})
    for j, name in enumerate(_DSPRITES_LATENTS):
        factors[f"{name}_class"] = classes[:, j].astype(np.int64)
    return ShapeData(np.ascontiguousarray(imgs[:, None].astype(np.uint8) * np.uint8(255)), factors)
