"""Whether aligned reconstructions are aligned and draw the shapes: spread of their orientation
per shape, and their pose-free shape measures against the inputs' (``alignment.csv``)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from numpy.typing import NDArray

from pipeline.data.pixels import to_unit_float

__all__ = ["OBJECT_FRACTION", "SHAPE_MEASURES", "object_signal", "orientation_spread", "shapes_drawn",
           "aligned_images", "alignment_rows"]

#: Shape measures of aligned reconstructions count pixels at or above this fraction of the peak.
OBJECT_FRACTION = 0.25


def object_signal(images: NDArray | torch.Tensor, *, fraction: float = OBJECT_FRACTION) -> torch.Tensor:
    """(N, C, H, W) in [0, 1] -> (N, H, W): the sky-subtracted luminance, kept only where it is at
    least ``fraction`` of the image's peak.

    Shape measures weight pixels by ``r^k``, so a faint texture over a 64 x 64 frame (a decoder's
    background at a few per cent of the peak, thousands of pixels far from the centre) outweighs
    a 300-pixel object; this keeps the drawn object.  Flat-filled inputs lose nothing.
    """
    from pipeline.moments import subtract_background

    t = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images).float()
    signal = subtract_background(t)
    peak = signal.amax(dim=(1, 2), keepdim=True)
    return torch.where(signal >= fraction * peak, signal, torch.zeros_like(signal))


def orientation_spread(aligned: NDArray | torch.Tensor, labels: NDArray | None = None,
                       *, min_strength: float = 0.05, min_peak: float = 0.05) -> pd.DataFrame:
    """Spread of the orientation of aligned reconstructions, and their shape, per label (e.g. shape).

    Everything is measured on each image's object (:func:`object_signal`).  Per label, the shape
    harmonic order ``k`` in (2, 3, 4) with the largest mean amplitude over the label's images
    (``spread_order``: 2 for an axis, 3 for a triangle, 4 for a square) gives each image's
    orientation ``phi = arg(H_k) / k`` (:func:`pipeline.moments.harmonic_sums`); the spread is its
    circular standard deviation ``sqrt(-2 ln R) / k`` in degrees with ``R = |mean exp(i k phi)|``
    (0 when every image is turned alike; for ``k = 2`` the spread of the moment axis).  Images
    whose amplitude of order ``k`` is below ``min_strength`` (round: no orientation) are left out,
    and so are images without an object: sky-subtracted peak under ``min_peak`` (intensity units in
    [0, 1]; a flat, untrained reconstruction has a spurious "axis" in its noise).  Columns: label,
    n, n_used, spread_order, spread_deg, mean_anisotropy, mean_harmonic_3, mean_harmonic_4 (means
    over the label's images of the pose-free amplitudes of orders 2, 3, 4; order 2 is the moment
    anisotropy).
    """
    from pipeline.moments import harmonic_sums

    orders = (2, 3, 4)
    signal = object_signal(aligned)
    re, im, norm = (v.double().numpy() for v in harmonic_sums(signal, orders))
    amp = np.clip(np.hypot(re, im) / norm, 0.0, 1.0)  # (N, 3)
    phase = np.arctan2(im, re)  # k phi of each order
    peak = signal.amax(dim=(1, 2)).double().numpy()
    labels = np.asarray(labels) if labels is not None else np.full(len(amp), "all")
    rows = []
    for lab in pd.unique(labels):
        sel = labels == lab
        j = int(np.argmax(amp[sel].mean(axis=0)))
        k = orders[j]
        use = sel & (amp[:, j] >= min_strength) & (peak >= min_peak)
        if use.sum() >= 2:
            r = np.abs(np.mean(np.exp(1j * phase[use, j])))
            spread = float(np.rad2deg(np.sqrt(-2.0 * np.log(max(r, 1e-12))) / k))
        else:
            spread = float("nan")
        a, h3, h4 = (float(amp[sel, i].mean()) for i in range(3))
        rows.append({"label": str(lab), "n": int(sel.sum()), "n_used": int(use.sum()), "spread_order": k,
                     "spread_deg": spread, "mean_anisotropy": a, "mean_harmonic_3": h3, "mean_harmonic_4": h4})
    return pd.DataFrame(rows)


#: Pose-free shape measures of ``alignment.csv``: the aligned images' column and the inputs'.
SHAPE_MEASURES = (("mean_anisotropy", "input_anisotropy"), ("mean_harmonic_3", "input_harmonic_3"),
                  ("mean_harmonic_4", "input_harmonic_4"))


def shapes_drawn(alignment: pd.DataFrame, *, tolerance: float = 0.1) -> bool:
    """Whether aligned reconstructions draw each shape as the inputs show it.

    ``alignment`` holds one model's rows of ``alignment.csv``.  The orientation spread says
    that aligned images share one axis; it is evidence that *shapes* are aligned only when the
    decoder draws them, i.e. when each shape's mean shape harmonics of orders 2 (the moment
    anisotropy), 3 and 4 in the aligned images are within ``tolerance`` of the inputs' (pose
    changes none of them; :data:`SHAPE_MEASURES`).  A decoder that draws one blurred blob for
    everything has a common axis too and fails on order 2; one that draws triangles or squares
    as round blobs (their orientation not learned, so the aligned images average over turns)
    fails on order 3 or 4.  Measures missing from ``alignment`` are not checked.
    """
    pairs = [(a, b) for a, b in SHAPE_MEASURES if a in alignment and b in alignment]
    rows = alignment.dropna(subset=[c for pair in pairs for c in pair])
    if not pairs or not len(rows):
        return False
    return all(bool(((rows[a] - rows[b]).abs() <= tolerance).all()) for a, b in pairs)


@torch.no_grad()
def aligned_images(model: torch.nn.Module, images: NDArray, *, batch_size: int = 128) -> torch.Tensor:
    """The model's aligned reconstructions (N, C, S, S) of ``images`` (model in eval mode)."""
    return torch.cat([model(to_unit_float(images[a:a + batch_size])).aligned
                      for a in range(0, len(images), batch_size)])


def alignment_rows(model: torch.nn.Module, images: NDArray, labels: NDArray | None, inputs: pd.DataFrame, *,
                   kind: str, seed: int) -> pd.DataFrame:
    """``alignment.csv`` rows of one model: :func:`orientation_spread` of its aligned reconstructions with
    the inputs' shape measures beside them (``inputs``: the inputs' spread table indexed by label)."""
    spread = orientation_spread(aligned_images(model, images), labels)
    for col, input_col in SHAPE_MEASURES:
        spread[input_col] = spread.label.map(inputs[col]).to_numpy()
    spread.insert(0, "model", kind)
    spread.insert(1, "seed", seed)
    return spread
