"""A shard's catalogue columns from the model's predictions: frames, errors and flags.

Frames: the model sees store images (display frame, ``size`` pixels after the centre crop and
resize).  ``x_pix``/``y_pix`` go back to the original cutout frame with
:func:`pipeline.conventions.store_to_cutout_pixels` (x with ``crop_start_x``, y with
``crop_start_y``).  ``theta_deg`` is in [0, 360) CCW from +x as displayed; ``pa_deg`` and
``moment_pa_deg`` are :func:`pipeline.conventions.theta_to_pa` of the model and moment
orientations.  Moments are taken on the background-subtracted input with the checkpoint's
``loss.background_ring`` and ``loss.background_sigma``.

Errors (1 sigma): ``moment_pa_err_deg`` propagates the sky noise of each image to the moment
axis (:func:`pipeline.moments.moment_errors`).  ``pa_err_deg``, ``x_err_pix``, ``y_err_pix``
come from an ensemble of ``error_samples`` (K) re-draws of each image with noise at its own
sky level, turned by quarter turns (:func:`pipeline.predict.pose_spread`): the spread of the
model's answers, made into errors by the plan's :class:`pipeline.predict.ErrorCalibration`
(the checkpoint's ``pose_errors.json`` when fitted for it, else the defaults), converted to
cutout pixels.  K = 0 leaves them NaN.

Flags: bits 1, 2 and 8 are set here by the rules of :mod:`pipeline.infer.flags`; bit 4 needs
the whole catalogue and is set at the merge.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from catalogs.schema import FLAG_CENTROID_NEAR_EDGE, FLAG_NO_DIRECTION, FLAG_ORIENTATION_ILL_DEFINED
from pipeline.conventions import store_to_cutout_pixels, theta_to_pa, wrap_360
from pipeline.infer.flags import near_edge, orientation_ill_defined

if TYPE_CHECKING:
    from pipeline.infer.plan import InferencePlan
    from pipeline.predict import Predictions

__all__ = ["ERROR_COLUMNS", "shard_columns"]

#: the error columns a part carries (pipeline.predict and pipeline.moments).
ERROR_COLUMNS = ("pa_err_deg", "x_err_pix", "y_err_pix", "moment_pa_err_deg")


def shard_columns(p: Predictions, plan: InferencePlan) -> dict[str, np.ndarray]:
    """The measured columns of one shard, in the cutout frame, with flags 1, 2 and 8 set.

    ``x_pix``, ``y_pix``, ``theta_deg``, ``pa_deg``, ``moment_pa_deg``, ``moment_axis_ratio``,
    the :data:`ERROR_COLUMNS`, ``direction_snr``, ``z``, ``recon_mse`` and ``flags``.
    """
    from pipeline.predict import DIRECTION_SIGNIF_MIN, ErrorCalibration

    size = plan.size
    x_cut = store_to_cutout_pixels(p.x_pix, crop_start=plan.crop_start_x, crop_size=plan.crop_size, size=size)
    y_cut = store_to_cutout_pixels(p.y_pix, crop_start=plan.crop_start_y, crop_size=plan.crop_size, size=size)
    theta = wrap_360(p.theta_deg).astype(np.float32)
    theta[theta >= 360.0] = 0.0  # float32 rounding of 359.99999 must stay in [0, 360)
    cal = ErrorCalibration(**plan.error_calibration)
    to_cutout = plan.crop_size / size  # cutout pixels per store pixel
    pa_err = cal.pa_err_deg(p.theta_spread_deg)
    moment_pa_err = p.moment_theta_err_deg
    flags = np.zeros(len(p.x_pix), dtype=np.int16)
    flags[orientation_ill_defined(p.moment_axis_ratio, moment_pa_err, pa_err)] |= FLAG_ORIENTATION_ILL_DEFINED
    flags[near_edge(p.x_pix, p.y_pix, size)] |= FLAG_CENTROID_NEAR_EDGE
    no_direction = ~(np.abs(p.direction_signif) >= DIRECTION_SIGNIF_MIN)  # NaN (no read-out): no direction
    flags[no_direction] |= FLAG_NO_DIRECTION
    theta[no_direction] = np.mod(theta[no_direction], 180.0)  # the axis only: honest about the half turn
    pa_deg = theta_to_pa(p.theta_deg).astype(np.float32)
    pa_deg[(flags & FLAG_ORIENTATION_ILL_DEFINED) != 0] = np.nan  # unknown orientation: null (theta_deg kept)
    return {
        "x_pix": x_cut.astype(np.float32), "y_pix": y_cut.astype(np.float32), "theta_deg": theta,
        "pa_deg": pa_deg,
        "moment_pa_deg": theta_to_pa(p.moment_theta_deg).astype(np.float32),
        "moment_axis_ratio": p.moment_axis_ratio.astype(np.float32),
        "pa_err_deg": pa_err.astype(np.float32),
        "x_err_pix": (cal.x_err_pix(p.x_spread_pix) * to_cutout).astype(np.float32),
        "y_err_pix": (cal.y_err_pix(p.y_spread_pix) * to_cutout).astype(np.float32),
        "moment_pa_err_deg": moment_pa_err.astype(np.float32),
        "direction_snr": p.direction_signif.astype(np.float32),
        "z": p.z.astype(np.float32), "recon_mse": p.recon_mse.astype(np.float32), "flags": flags,
    }
