"""The evaluation datasets: procedural XYRCS and dSprites with their ground truth, or a scientific stack.

Factors
-------
XYRCS: ``x_pix``, ``y_pix``, ``rotation_deg`` (circular, folded by the shape's symmetry: 120 for
triangles, 180 for rectangles; a circle's rotation is invisible and set to 0), ``hue_deg``
(circular, hue x 360), ``brightness``, ``shape_id``.  dSprites: ``x_pix``, ``y_pix``,
``rotation_deg`` (circular; 90 squares, 180 ellipses, 360 hearts), ``scale``, ``shape_id``.
The pose factors are x_pix, y_pix, rotation_deg.  A scientific stack (:mod:`pipeline.evaluate.scientific`)
has no ground truth: its Pearson table uses the centre of mass of each image instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from numpy.typing import NDArray

from pipeline.data.pixels import to_unit_float
from pipeline.errors import ConfigError
from pipeline.evaluate.metrics import angle_on_circle

__all__ = ["POSE_FACTORS", "SHAPE_ORIENTATION_ORDERS", "EvalData", "make_eval_data"]

#: The pose factors: what "without pose" leaves out.
POSE_FACTORS = ("x_pix", "y_pix", "rotation_deg")
#: CODAE's moment prior on the synthetic shape sets: shape harmonics 2 (the paper's moment axis), 3
#: (triangles, hearts) and 4 (squares); see :mod:`pipeline.loss`.  Scientific stacks keep (2,).
SHAPE_ORIENTATION_ORDERS = (2, 3, 4)


@dataclass(frozen=True)
class EvalData:
    """Images and what is known about them.

    ``images`` (N, C, S, S), uint8 or float in [0, 1], display frame.  ``factors`` (N, K) numeric
    ground truth with ``factor_names`` (None for scientific stacks), ``circular`` the names of the
    angle factors (degrees), ``period_deg`` their symmetry periods (scalar or (N,)).
    ``named`` are the quantities for the Pearson table (``named_circular``: angles in degrees).
    ``shapes`` (N,) shape names for the alignment spread, or None.
    """

    name: str
    images: NDArray
    factors: NDArray[np.float64] | None
    factor_names: tuple[str, ...]
    circular: tuple[str, ...]
    period_deg: dict[str, NDArray[np.float64] | float]
    named: dict[str, NDArray[np.float64]]
    named_circular: tuple[str, ...]
    shapes: NDArray | None
    reconstruction: str  # "bce" or "mse"
    orientation_prior: str  # "moments" or "com"
    learn_centroid: bool
    orientation_orders: tuple[int, ...] = (2,)  # shape harmonics CODAE's moment prior anchors to (LossConfig)

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def size(self) -> int:
        return int(self.images.shape[-1])


def _resize(images: NDArray, size: int) -> NDArray[np.float32]:
    """(N, C, H, W) -> float32 (N, C, size, size) in [0, 1], antialiased bilinear."""
    t = to_unit_float(images)
    if t.shape[-1] == size and t.shape[-2] == size:
        return t.numpy()
    out = torch.nn.functional.interpolate(t, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return out.clamp(0, 1).numpy()


def _com_quantities(images: NDArray) -> dict[str, NDArray[np.float64]]:
    """Centre of mass (sky removed) of each image: x, y (normalised, y down), angle (deg CCW), magnitude."""
    from pipeline.moments import com_orientation, image_moments, subtract_background

    out: dict[str, list[NDArray]] = {"com_x": [], "com_y": [], "com_angle": [], "com_mag": []}
    for a in range(0, len(images), 256):
        signal = subtract_background(to_unit_float(images[a:a + 256]))
        m = image_moments(signal)
        angle, mag = com_orientation(signal)
        out["com_x"].append(m.x.numpy())
        out["com_y"].append(m.y.numpy())
        out["com_angle"].append(np.rad2deg(angle.numpy()))
        out["com_mag"].append(mag.numpy())
    return {k: np.concatenate(v).astype(np.float64) for k, v in out.items()}


def make_eval_data(dataset: str | Path, *, n: int = 5000, seed: int = 0, size: int = 64, centred: bool = False,
                   key: str | None = None) -> EvalData:
    """``xyrcs``, ``dsprites`` (procedural) or a path to a stack (.npy, .npz, .fits, .mrcs; see
    :mod:`pipeline.evaluate.scientific`).  ``n`` images for the synthetic sets (a stack is used
    whole), resized to ``size``.  ``centred`` (stacks only): centre-of-mass orientation prior and no
    centroid learning, for centred patterns such as diffraction."""
    name = str(dataset)
    if name == "xyrcs":
        from pipeline.simulate.shapes import make_xyrcs

        data = make_xyrcs(n, seed=seed)
        f = data.factors
        circle = (f["shape"] == "circle").to_numpy()
        rotation = np.where(circle, 0.0, f["rotation_deg"].to_numpy())
        period = np.where(circle, 360.0, f["symmetry_deg"].to_numpy())
        cols = {"x_pix": f["x_pix"].to_numpy(), "y_pix": f["y_pix"].to_numpy(), "rotation_deg": rotation,
                "hue_deg": 360.0 * f["hue"].to_numpy(), "brightness": f["brightness"].to_numpy(),
                "shape_id": f["shape_id"].to_numpy().astype(np.float64)}
        circular, periods = ("rotation_deg", "hue_deg"), {"rotation_deg": period}
        recon, images, shapes = "mse", data.images, f["shape"].to_numpy()
    elif name == "dsprites":
        from pipeline.simulate.shapes import make_dsprites

        data = make_dsprites(n, seed=seed)
        f = data.factors
        cols = {"x_pix": f["x_pix"].to_numpy(), "y_pix": f["y_pix"].to_numpy(),
                "rotation_deg": f["rotation_deg"].to_numpy(), "scale": f["scale"].to_numpy(),
                "shape_id": f["shape_id"].to_numpy().astype(np.float64)}
        circular, periods = ("rotation_deg",), {"rotation_deg": f["symmetry_deg"].to_numpy()}
        recon, images, shapes = "bce", data.images, f["shape"].to_numpy()
    else:
        from pipeline.evaluate.scientific import load_scientific

        images = load_scientific(Path(dataset), size=size, key=key)
        named = _com_quantities(images)
        return EvalData(name=Path(dataset).name, images=images, factors=None, factor_names=(), circular=(),
                        period_deg={}, named=named, named_circular=("com_angle",), shapes=None,
                        reconstruction="mse", orientation_prior="com" if centred else "moments",
                        learn_centroid=not centred)
    if centred:
        raise ConfigError("--centred is for centred scientific stacks; XYRCS and dSprites objects move")
    images = _resize(images, size) if size != images.shape[-1] else images
    factors = np.stack(list(cols.values()), axis=1)
    named = dict(cols)
    for c in circular:  # the Pearson table sees the visible angle, folded by the shape's symmetry
        named[c] = angle_on_circle(cols[c], periods.get(c, 360.0))
    return EvalData(name=name, images=images, factors=factors, factor_names=tuple(cols), circular=circular,
                    period_deg=periods, named=named, named_circular=circular, shapes=shapes,
                    reconstruction=recon, orientation_prior="moments", learn_centroid=True,
                    orientation_orders=SHAPE_ORIENTATION_ORDERS)
