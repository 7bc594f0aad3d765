"""Image moments on the spatial transformer's grid (normalised frame, y down).

Centroid from first moments, orientation from second central moments (an axis,
mod 180 degrees), anisotropy ``(l1 - l2) / (l1 + l2)`` of the second-moment
eigenvalues (0 for round, 1 for a line: how well the orientation is defined),
and the minor/major axis ratio ``sqrt(l2 / l1)``.

Survey JPEGs carry a positive sky floor after the contrast stretch; moments taken
without removing it are biased towards round and centred.  :func:`subtract_background`
removes the mean of a border ring plus ``k`` standard deviations, clipped at zero.

All angles are radians counter-clockwise from +x as displayed (see
:mod:`pipeline.conventions`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from pipeline.geometry import normalized_grid

__all__ = ["Moments", "subtract_background", "image_moments", "com_orientation", "rotational_harmonics"]


@dataclass(frozen=True)
class Moments:
    """Per-image moment estimates, each (B,).

    x, y: normalised centroid (y down); theta: axis orientation in [0, pi) radians CCW
    as displayed; anisotropy in [0, 1]; axis_ratio in (0, 1]; flux: summed signal.
    """

    x: torch.Tensor
    y: torch.Tensor
    theta: torch.Tensor
    anisotropy: torch.Tensor
    axis_ratio: torch.Tensor
    flux: torch.Tensor


def _luminance(images: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) or (B, H, W) -> (B, H, W), channel mean in float32."""
    if images.dim() == 4:
        images = images.float().mean(dim=1)
    return images.float()


def subtract_background(images: torch.Tensor, *, ring: int = 4, k_sigma: float = 1.0) -> torch.Tensor:
    """Remove the sky: subtract (border-ring mean + k_sigma x ring std), clip at zero.

    images: (B, C, H, W) or (B, H, W); returns (B, H, W) luminance, float32.
    ``ring`` is the border width in pixels.
    """
    lum = _luminance(images)
    b, h, w = lum.shape
    mask = torch.ones(h, w, dtype=torch.bool, device=lum.device)
    mask[ring:h - ring, ring:w - ring] = False
    border = lum[:, mask]  # (B, n_border)
    level = border.mean(dim=1) + k_sigma * border.std(dim=1)
    return (lum - level[:, None, None]).clamp_min(0.0)


def image_moments(signal: torch.Tensor, *, eps: float = 1e-8) -> Moments:
    """Moments of non-negative signal images (B, H, W) (background already removed)."""
    b, h, w = signal.shape
    xx, yy = normalized_grid(h, w, device=signal.device, dtype=signal.dtype)
    flux = signal.sum(dim=(1, 2))
    norm = flux.clamp_min(eps)
    x = (signal * xx).sum(dim=(1, 2)) / norm
    y = (signal * yy).sum(dim=(1, 2)) / norm
    dx = xx[None] - x[:, None, None]
    dy = yy[None] - y[:, None, None]
    mu20 = (signal * dx * dx).sum(dim=(1, 2)) / norm
    mu02 = (signal * dy * dy).sum(dim=(1, 2)) / norm
    mu11 = (signal * dx * dy).sum(dim=(1, 2)) / norm
    # Angle from +x towards +y (down) is clockwise as displayed; negate for CCW.
    phi_down = 0.5 * torch.atan2(2.0 * mu11, mu20 - mu02)
    theta = torch.remainder(-phi_down, math.pi)
    trace = (mu20 + mu02).clamp_min(eps)
    diff = torch.sqrt((mu20 - mu02) ** 2 + 4.0 * mu11 ** 2)
    l1 = 0.5 * (trace + diff)
    l2 = (0.5 * (trace - diff)).clamp_min(0.0)
    anisotropy = (diff / trace).clamp(0.0, 1.0)
    axis_ratio = torch.sqrt(l2 / l1.clamp_min(eps))
    return Moments(x=x, y=y, theta=theta, anisotropy=anisotropy, axis_ratio=axis_ratio, flux=flux)


def com_orientation(signal: torch.Tensor, *, eps: float = 1e-8) -> tuple[torch.Tensor, torch.Tensor]:
    """Centre-of-mass orientation for centred patterns (diffraction data).

    The angle (radians CCW as displayed, [0, 2 pi)) of the vector from the image centre
    to the intensity centroid, and that vector's length (normalised units).
    signal: (B, H, W) non-negative.
    """
    m = image_moments(signal, eps=eps)
    angle = torch.remainder(torch.atan2(-m.y, m.x), 2 * math.pi)
    return angle, torch.hypot(m.x, m.y)


def rotational_harmonics(signal: torch.Tensor, orders: tuple[int, ...] = (2, 3, 4), *,
                         eps: float = 1e-8) -> torch.Tensor:
    """Shape harmonics about the centroid, (B, len(orders)), each in [0, 1] and pose-free.

    For order k: ``|sum w r^k exp(i k phi)| / sum w r^k`` with ``w`` the signal, ``r``, ``phi``
    the polar coordinates about the intensity centroid.  A turn or shift of the image leaves
    every amplitude unchanged.  Order 2 is the moment anisotropy of :func:`image_moments`; a
    filled triangle has a large order 3, a square a large order 4, and a disc or a round blob
    none of them.  signal: (B, H, W) non-negative (background already removed).
    """
    b, h, w = signal.shape
    xx, yy = normalized_grid(h, w, device=signal.device, dtype=signal.dtype)
    m = image_moments(signal, eps=eps)
    dx = xx[None] - m.x[:, None, None]
    dy = m.y[:, None, None] - yy[None]  # y up, so phi is CCW as displayed (the amplitude does not care)
    r = torch.hypot(dx, dy)
    phi = torch.atan2(dy, dx)
    out = []
    for k in orders:
        wk = signal * r ** k
        re = (wk * torch.cos(k * phi)).sum(dim=(1, 2))
        im = (wk * torch.sin(k * phi)).sum(dim=(1, 2))
        out.append(torch.hypot(re, im) / wk.sum(dim=(1, 2)).clamp_min(eps))
    return torch.stack(out, dim=1).clamp(0.0, 1.0)
