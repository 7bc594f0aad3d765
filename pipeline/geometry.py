"""The one transform from a pose to the spatial transformer's affine map.

A pose is ``(theta, x, y)``: orientation in radians counter-clockwise from +x as
displayed, centroid in the normalised frame of :mod:`pipeline.conventions`
(image spans [-1, 1], y down).  The *aligned* image has its object centred with
its orientation along +x; the *same-view* image is the aligned one turned by
``theta`` and moved to ``(x, y)``.

In the y-down frame a counter-clockwise turn (as displayed) by ``theta`` is the
matrix ``M(theta) = [[cos, sin], [-sin, cos]]``.  To draw the same view we sample
the aligned image at ``M(theta)^-1 (p - c) = M(-theta) (p - c)`` for each output
point ``p``; to align we sample the same view at ``c + M(theta) q``.

The model, the moment code and stacking all use :func:`pose_to_affine`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["pose_to_affine", "warp_to_view", "align_to_pose", "normalized_grid"]


def pose_to_affine(theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor, *, inverse: bool = False) -> torch.Tensor:
    """Affine maps for ``F.affine_grid`` from poses.

    theta: (B,) radians CCW as displayed; x, y: (B,) normalised centroid, y down.
    Returns (B, 2, 3).  ``inverse=False`` maps aligned -> same view (sample the aligned
    image); ``inverse=True`` maps same view -> aligned (sample the observed image).
    """
    c, s = torch.cos(theta), torch.sin(theta)
    if not inverse:
        # q = M(-theta) (p - t),  M(-theta) = [[c, -s], [s, c]]
        row0 = torch.stack([c, -s, -(c * x - s * y)], dim=-1)
        row1 = torch.stack([s, c, -(s * x + c * y)], dim=-1)
    else:
        # p = M(theta) q + t,  M(theta) = [[c, s], [-s, c]]
        row0 = torch.stack([c, s, x], dim=-1)
        row1 = torch.stack([-s, c, y], dim=-1)
    return torch.stack([row0, row1], dim=1)  # (B, 2, 3)


def _sample(images: torch.Tensor, affine: torch.Tensor, padding_mode: str) -> torch.Tensor:
    grid = F.affine_grid(affine.to(images.dtype), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)


def warp_to_view(aligned: torch.Tensor, theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
                 *, padding_mode: str = "border") -> torch.Tensor:
    """Turn and move aligned images (B, C, H, W) to their poses: the same-view images.

    ``padding_mode='border'`` repeats the edge (the sky level) instead of zeros, which
    would draw faint square outlines around large galaxies.
    """
    return _sample(aligned, pose_to_affine(theta, x, y), padding_mode)


def align_to_pose(images: torch.Tensor, theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
                  *, padding_mode: str = "border") -> torch.Tensor:
    """Recentre and derotate observed images (B, C, H, W): centroid to the centre, orientation to +x."""
    return _sample(images, pose_to_affine(theta, x, y, inverse=True), padding_mode)


def normalized_grid(h: int, w: int, *, device=None, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel-centre coordinates (xx, yy), each (H, W), in the normalised frame (y down)."""
    ys = (2 * torch.arange(h, device=device, dtype=dtype) + 1) / h - 1
    xs = (2 * torch.arange(w, device=device, dtype=dtype) + 1) / w - 1
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return xx, yy
