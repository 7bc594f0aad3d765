"""Image moments on the spatial transformer's grid (normalised frame, y down).

Centroid from first moments, orientation from second central moments (an axis,
mod 180 degrees), anisotropy ``(l1 - l2) / (l1 + l2)`` of the second-moment
eigenvalues (0 for round, 1 for a line: how well the orientation is defined),
and the minor/major axis ratio ``sqrt(l2 / l1)``.  Shape harmonics of higher order
(:func:`harmonic_sums`) give the orientation of shapes whose second moments are round: a
triangle's turn mod 120 degrees (order 3), a square's mod 90 (order 4).

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

__all__ = ["Moments", "subtract_background", "image_moments", "com_orientation", "harmonic_sums",
           "rotational_harmonics", "HarmonicOrientation", "harmonic_orientation"]


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


def harmonic_sums(signal: torch.Tensor, orders: tuple[int, ...], *, moments: Moments | None = None,
                  eps: float = 1e-8) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Complex shape harmonics about the intensity centroid, each part (B, len(orders)).

    For order k: ``H_k = sum w r^k exp(i k phi)`` (real and imaginary parts) and its norm
    ``S_k = sum w r^k``, with ``w`` the signal and ``r``, ``phi`` the polar coordinates about
    the centroid, ``phi`` CCW as displayed.  Turning the image by ``a`` CCW multiplies ``H_k``
    by ``exp(i k a)``.  Differentiable.  signal: (B, H, W) non-negative (background removed);
    ``moments``: its :func:`image_moments`, when the caller has them already.
    """
    h, w = signal.shape[-2:]
    xx, yy = normalized_grid(h, w, device=signal.device, dtype=signal.dtype)
    m = moments if moments is not None else image_moments(signal, eps=eps)
    dx = xx[None] - m.x[:, None, None]
    dy = m.y[:, None, None] - yy[None]  # y up, so phi is CCW as displayed
    r2 = dx * dx + dy * dy + eps
    # r^k exp(i k phi) = (dx + i dy)^k, built by repeated complex products: no angles needed
    zr, zi = torch.ones_like(dx), torch.zeros_like(dx)
    parts: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
    for p in range(1, max(orders) + 1):
        zr, zi = zr * dx - zi * dy, zr * dy + zi * dx
        if p in orders:
            parts[p] = ((signal * zr).sum(dim=(1, 2)), (signal * zi).sum(dim=(1, 2)),
                        (signal * r2 ** (p / 2)).sum(dim=(1, 2)).clamp_min(eps))
    re, im, norm = ([parts[k][i] for k in orders] for i in range(3))
    return torch.stack(re, dim=1), torch.stack(im, dim=1), torch.stack(norm, dim=1)


def rotational_harmonics(signal: torch.Tensor, orders: tuple[int, ...] = (2, 3, 4), *,
                         eps: float = 1e-8) -> torch.Tensor:
    """Shape harmonics about the centroid, (B, len(orders)), each in [0, 1] and pose-free.

    For order k: ``|H_k| / S_k`` of :func:`harmonic_sums`.  A turn or shift of the image leaves
    every amplitude unchanged.  Order 2 is the moment anisotropy of :func:`image_moments`; a
    filled triangle has a large order 3, a square a large order 4, and a disc or a round blob
    none of them.  signal: (B, H, W) non-negative (background already removed).
    """
    re, im, norm = harmonic_sums(signal, orders, eps=eps)
    return (torch.hypot(re, im) / norm).clamp(0.0, 1.0)


@dataclass(frozen=True)
class HarmonicOrientation:
    """Orientation from each image's dominant shape harmonic, each (B,).

    order: the order k (float) whose amplitude is largest; theta: ``arg(H_k) / k`` in
    [0, 2 pi / k) radians CCW as displayed (defined modulo 2 pi / k: a triangle's turn mod
    120 degrees, a square's mod 90, an elongated shape's axis mod 180); strength: that
    amplitude in [0, 1] (how well the orientation is defined).
    """

    theta: torch.Tensor
    order: torch.Tensor
    strength: torch.Tensor


def harmonic_orientation(signal: torch.Tensor, orders: tuple[int, ...] = (2, 3, 4), *,
                         moments: Moments | None = None, eps: float = 1e-8) -> HarmonicOrientation:
    """Orientation of shapes whose second moments are round (triangles, squares) as well as elongated ones.

    Generalises the second-moment axis: with ``orders=(2,)`` theta is the moment axis of
    :func:`image_moments` and strength its anisotropy.  signal: (B, H, W) non-negative;
    ``moments`` as for :func:`harmonic_sums`.
    """
    re, im, norm = harmonic_sums(signal, orders, moments=moments, eps=eps)
    amp = (torch.hypot(re, im) / norm).clamp(0.0, 1.0)
    strength, idx = amp.max(dim=1)
    k = torch.as_tensor(orders, dtype=signal.dtype, device=signal.device)[idx]
    phase = torch.atan2(im.gather(1, idx[:, None])[:, 0], re.gather(1, idx[:, None])[:, 0])
    theta = torch.remainder(phase / k, 2 * math.pi / k)
    return HarmonicOrientation(theta=theta, order=k, strength=strength)
