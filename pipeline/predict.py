"""Per-image predictions in the store's pixel frame: the piece inference, tests and benchmarks share."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from pipeline.conventions import normalized_to_pixel, wrap_360
from pipeline.moments import image_moments, subtract_background

__all__ = ["Predictions", "predict_batch"]


@dataclass(frozen=True)
class Predictions:
    """Numpy arrays, one entry per image.

    x_pix, y_pix: model centroid in the store image's display frame (0-based pixels, y down).
    theta_deg: model orientation, degrees CCW from +x as displayed, [0, 360).
    z: (N, D) latents.  recon_mse: mean squared error of the same-view reconstruction.
    moment_x_pix, moment_y_pix, moment_theta_deg ([0, 180)), moment_axis_ratio,
    moment_anisotropy: background-subtracted image moments of the input.
    """

    x_pix: np.ndarray
    y_pix: np.ndarray
    theta_deg: np.ndarray
    z: np.ndarray
    recon_mse: np.ndarray
    moment_x_pix: np.ndarray
    moment_y_pix: np.ndarray
    moment_theta_deg: np.ndarray
    moment_axis_ratio: np.ndarray
    moment_anisotropy: np.ndarray


@torch.no_grad()
def predict_batch(model: torch.nn.Module, images: torch.Tensor, *, background_ring: int = 4,
                  background_sigma: float = 1.0) -> Predictions:
    """Run the model (eval mode expected) on images (B, C, S, S) in [0, 1]."""
    out = model(images)
    size = images.shape[-1]
    recon = ((out.same_view.float() - images.float()) ** 2).mean(dim=(1, 2, 3))
    m = image_moments(subtract_background(images, ring=background_ring, k_sigma=background_sigma))

    def np_(t: torch.Tensor) -> np.ndarray:
        return t.detach().float().cpu().numpy()

    return Predictions(
        x_pix=normalized_to_pixel(np_(out.x), size), y_pix=normalized_to_pixel(np_(out.y), size),
        theta_deg=wrap_360(np.rad2deg(np_(out.theta))), z=np_(out.z), recon_mse=np_(recon),
        moment_x_pix=normalized_to_pixel(np_(m.x), size), moment_y_pix=normalized_to_pixel(np_(m.y), size),
        moment_theta_deg=np.mod(np.rad2deg(np_(m.theta)), 180.0), moment_axis_ratio=np_(m.axis_ratio),
        moment_anisotropy=np_(m.anisotropy))


def concat(preds: list[Predictions]) -> Predictions:
    """Join per-batch predictions in order."""
    fields = Predictions.__dataclass_fields__
    return Predictions(**{k: np.concatenate([getattr(p, k) for p in preds]) for k in fields})


