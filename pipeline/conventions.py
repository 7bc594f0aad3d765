"""Pixel and angle conventions: stated once, converted only here.

Frames
------
*Display frame* (every image array in this package): row 0 is the top row as a
person sees the cutout (north for survey JPEGs), ``x`` runs along columns to the
right, ``y`` along rows downward, pixel centres at integers, 0-based.

*Normalised frame* (what the model and the spatial transformer use): the same
axes scaled so that the image spans [-1, 1] on each axis with pixel centres at
``u = (2 j + 1) / n - 1`` (``torch.nn.functional.affine_grid`` with
``align_corners=False``).  ``(0, 0)`` is the image centre; ``y`` still points down.

*Cutout frame*: the display frame of the original survey file, before the
store's centre crop and resize.  Catalogue ``x_pix``/``y_pix`` are in this frame.

Angles
------
``theta_deg`` is counter-clockwise from +x *as displayed* (so towards -y in
array rows), in [0, 360).  ``pa_deg`` is the position angle East of North for
north-up, east-left cutouts: ``pa_deg = (theta_deg - 90) mod 180``.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "wrap_360",
    "fold_180",
    "angle_diff_180",
    "theta_to_pa",
    "pa_to_theta",
    "fits_to_display",
    "pixel_to_normalized",
    "normalized_to_pixel",
    "store_to_cutout_pixels",
    "cutout_to_store_pixels",
    "centre_crop_box",
]


def wrap_360(angle_deg: ArrayLike) -> NDArray[np.float64]:
    """Wrap angles in degrees into [0, 360)."""
    return np.mod(np.asarray(angle_deg, dtype=np.float64), 360.0)


def fold_180(angle_deg: ArrayLike) -> NDArray[np.float64]:
    """Fold angles in degrees into [0, 180): an axis, not a direction."""
    return np.mod(np.asarray(angle_deg, dtype=np.float64), 180.0)


def angle_diff_180(a_deg: ArrayLike, b_deg: ArrayLike) -> NDArray[np.float64]:
    """Smallest absolute difference between two axes, in degrees, in [0, 90]."""
    d = fold_180(np.asarray(a_deg, dtype=np.float64) - np.asarray(b_deg, dtype=np.float64))
    return np.minimum(d, 180.0 - d)


def theta_to_pa(theta_deg: ArrayLike) -> NDArray[np.float64]:
    """Orientation (degrees CCW from +x as displayed) to position angle (degrees E of N).

    Valid for north-up, east-left cutouts (Galaxy Zoo DECaLS): ``(theta - 90) mod 180``.
    """
    return fold_180(np.asarray(theta_deg, dtype=np.float64) - 90.0)


def pa_to_theta(pa_deg: ArrayLike) -> NDArray[np.float64]:
    """Position angle (degrees E of N) to an orientation in [0, 180) CCW from +x as displayed."""
    return fold_180(np.asarray(pa_deg, dtype=np.float64) + 90.0)


def fits_to_display(array: NDArray) -> NDArray:
    """Flip a FITS image (row 0 = bottom, FITS convention) into display order (row 0 = top).

    Works on 2-D images and on (..., H, W) band cubes; returns a contiguous copy.
    """
    return np.ascontiguousarray(array[..., ::-1, :])


def pixel_to_normalized(p: ArrayLike, n: int) -> NDArray[np.float64]:
    """Pixel coordinate (0-based, centres at integers) to normalised [-1, 1] on an n-pixel axis."""
    return (2.0 * np.asarray(p, dtype=np.float64) + 1.0) / n - 1.0


def normalized_to_pixel(u: ArrayLike, n: int) -> NDArray[np.float64]:
    """Normalised coordinate on an n-pixel axis back to pixels (0-based, centres at integers)."""
    return ((np.asarray(u, dtype=np.float64) + 1.0) * n - 1.0) / 2.0


def centre_crop_box(full: int, crop: int) -> int:
    """First pixel (0-based) of a centred crop of ``crop`` pixels from an axis of ``full``."""
    if not 0 < crop <= full:
        raise ValueError(f"crop {crop} must be in (0, {full}]")
    return (full - crop) // 2


def store_to_cutout_pixels(p: ArrayLike, *, crop_start: int, crop_size: int, size: int) -> NDArray[np.float64]:
    """Store pixel coordinate (after crop and resize to ``size``) to the original cutout frame.

    Pixel ``j`` of the resized image covers ``[crop_start + j s, crop_start + (j + 1) s)`` in
    the cutout (edges), with ``s = crop_size / size``; its centre is at
    ``crop_start + (j + 0.5) s - 0.5`` in the 0-based, centre-at-integer convention.
    """
    s = crop_size / size
    return crop_start + (np.asarray(p, dtype=np.float64) + 0.5) * s - 0.5


def cutout_to_store_pixels(p: ArrayLike, *, crop_start: int, crop_size: int, size: int) -> NDArray[np.float64]:
    """Inverse of :func:`store_to_cutout_pixels`."""
    s = crop_size / size
    return (np.asarray(p, dtype=np.float64) + 0.5 - crop_start) / s - 0.5
