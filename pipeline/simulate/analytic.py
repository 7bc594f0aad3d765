"""Analytic elliptical Gaussian blobs with known pose: tiny, dependency-free test and benchmark images."""

from __future__ import annotations

import numpy as np

__all__ = ["gaussian_ellipses"]


def gaussian_ellipses(n: int, size: int = 64, *, seed: int = 0, channels: int = 3, sky: float = 0.05,
                      noise: float = 0.0, max_shift: float = 6.0) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Elliptical Gaussian blobs in display order with known pose.

    Returns uint8 images (N, C, size, size) and truth: x_pix, y_pix (display frame, 0-based,
    y down), theta_deg (CCW as displayed, an axis in [0, 180)), axis_ratio, sigma_pix (major axis).
    ``max_shift``: largest centroid offset from the image centre, pixels per axis.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    x0 = (size - 1) / 2 + rng.uniform(-max_shift, max_shift, n)
    y0 = (size - 1) / 2 + rng.uniform(-max_shift, max_shift, n)
    theta = rng.uniform(0, 180, n)
    q = rng.uniform(0.3, 0.7, n)
    sig = rng.uniform(size / 14, size / 9, n)
    imgs = np.empty((n, channels, size, size), dtype=np.uint8)
    for i in range(n):
        t = np.deg2rad(theta[i])
        dx, dy = xx - x0[i], yy - y0[i]
        # major-axis direction as displayed is (cos t, -sin t) in (x, y-down)
        u = dx * np.cos(t) - dy * np.sin(t)
        v = dx * np.sin(t) + dy * np.cos(t)
        f = np.exp(-0.5 * ((u / sig[i]) ** 2 + (v / (q[i] * sig[i])) ** 2))
        img = sky + (0.9 - sky) * f + noise * rng.standard_normal(f.shape)
        for c in range(channels):
            imgs[i, c] = np.clip(np.round(255 * img * (1.0 - 0.1 * c)), 0, 255).astype(np.uint8)
    return imgs, {"x_pix": x0, "y_pix": y0, "theta_deg": theta, "axis_ratio": q, "sigma_pix": sig}
