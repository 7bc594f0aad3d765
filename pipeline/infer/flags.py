"""The catalogue's flag rules (bits of :mod:`catalogs.schema`) and their thresholds.

- ``FLAG_ORIENTATION_ILL_DEFINED`` (1), :func:`orientation_ill_defined`: the 1-sigma PA
  error of the moments (``moment_pa_err_deg``) or of the model (``pa_err_deg``) exceeds
  :data:`PA_ERROR_ILL_DEFINED_DEG` (20 deg).  The errors grow as the shape turns round and
  as the signal sinks into the sky, so a faint elongated galaxy whose axis is lost in the
  noise is flagged and a bright, slightly round one whose axis is measured is not.  Without
  model errors (``error_samples`` 0) the fixed cut ``moment_axis_ratio >``
  :data:`NEAR_ROUND_AXIS_RATIO` (0.9; moment anisotropy < 0.105) stands in for the model's
  error.  On the demo surveys (``benchmarks/pose_errors.py``) the error rule flags 16 % of
  the galaxies and catches 93 % of the model's PA errors above 20 deg; the axis-ratio cut
  flags 28 %, and the 12 % it adds have honest errors (median 7 deg stated, 4 deg real).
  Where it is set, ``pa_deg`` is NaN (the
  orientation is unknown, as the contract says), so ``isnull(pa_deg)`` selects these rows;
  ``theta_deg``, ``moment_pa_deg`` and the errors keep their values for inspection.
- ``FLAG_CENTROID_NEAR_EDGE`` (2): the model centroid lies within :data:`EDGE_MARGIN_PIX`
  (2) store pixels of the store image's edge (or outside it).
- ``FLAG_RECON_OUTLIER`` (4): ``recon_mse > median + 5 x 1.4826 x MAD`` over the whole
  catalogue (:data:`RECON_OUTLIER_K`, :func:`recon_outlier_threshold`), computed at the merge.
- ``FLAG_NO_DIRECTION`` (8): ``|direction_snr| <`` :data:`pipeline.predict.DIRECTION_SIGNIF_MIN`
  (3): the same-view reconstruction explains the image no better with ``theta`` than with
  ``theta + 180`` (a galaxy that looks the same turned by a half turn, or a model without a
  direction read-out).  ``theta_deg`` is then the axis, reported in [0, 180); ``pa_deg`` is an
  axis whatever the flag.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "NEAR_ROUND_AXIS_RATIO",
    "PA_ERROR_ILL_DEFINED_DEG",
    "EDGE_MARGIN_PIX",
    "RECON_OUTLIER_K",
    "orientation_ill_defined",
    "near_edge",
    "recon_outlier_threshold",
]

#: flag bit 1 above this moment minor/major axis ratio (near-round: orientation ill-defined).
NEAR_ROUND_AXIS_RATIO: float = 0.9
#: flag bit 1 above this 1-sigma position-angle error, degrees (model or moments).
PA_ERROR_ILL_DEFINED_DEG: float = 20.0
#: flag bit 2 when the centroid is within this many store pixels of the image edge.
EDGE_MARGIN_PIX: float = 2.0
#: flag bit 4 above median + K x (1.4826 x MAD) of ``recon_mse`` over the catalogue.
RECON_OUTLIER_K: float = 5.0


def orientation_ill_defined(moment_axis_ratio: np.ndarray, moment_pa_err_deg: np.ndarray,
                            pa_err_deg: np.ndarray) -> np.ndarray:
    """Flag bit 1 (bool per object): the position angle cannot be trusted.

    True where the moments' 1-sigma PA error or the model's exceeds
    :data:`PA_ERROR_ILL_DEFINED_DEG`.  Where the model has no error (NaN: inference without
    an error ensemble) the fixed cut ``moment_axis_ratio >`` :data:`NEAR_ROUND_AXIS_RATIO`
    stands in for it.  A NaN moment error or axis ratio (no signal) counts as ill-defined.
    """
    pa_err = np.asarray(pa_err_deg)
    moment_bad = ~(np.asarray(moment_pa_err_deg) <= PA_ERROR_ILL_DEFINED_DEG)
    model_bad = pa_err > PA_ERROR_ILL_DEFINED_DEG  # NaN compares False
    round_ = ~(np.asarray(moment_axis_ratio) <= NEAR_ROUND_AXIS_RATIO)
    return moment_bad | model_bad | (round_ & ~np.isfinite(pa_err))


def near_edge(x_pix: np.ndarray, y_pix: np.ndarray, size: int) -> np.ndarray:
    """Flag bit 2 (bool per object): the store-frame centroid within :data:`EDGE_MARGIN_PIX` of the edge."""
    lo, hi = EDGE_MARGIN_PIX - 0.5, size - 0.5 - EDGE_MARGIN_PIX  # pixel edges at -0.5 and size - 0.5
    return ~((x_pix >= lo) & (x_pix <= hi) & (y_pix >= lo) & (y_pix <= hi))


def recon_outlier_threshold(recon_mse: np.ndarray, k: float = RECON_OUTLIER_K) -> float:
    """``median + k x 1.4826 x MAD`` of the finite values (the robust sigma of a normal)."""
    v = np.asarray(recon_mse, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("inf")
    med = float(np.median(v))
    return med + k * 1.4826 * float(np.median(np.abs(v - med)))
