"""Per-image predictions in the store's pixel frame: the piece inference, tests and benchmarks share.

Besides the model's pose, latents and the image moments, a prediction carries 1-sigma errors:

* moments: :func:`pipeline.moments.moment_errors`, the sky's pixel noise propagated linearly
  (no calibration: it is a property of the image);
* model: the spread of an ensemble the model can afford at inference (:func:`pose_spread`):
  the image re-drawn ``K`` times with Gaussian noise at its own sky level (each channel's
  noise in the border ring, from differences of neighbouring pixels) and turned by a quarter turn per draw (0, 90, 180, 270
  degrees in turn, the answers turned back).  The noise carries the error whatever the
  read-out; the turns add the model's own disagreement with itself where its read-out is not
  exactly equivariant on the pixel grid.  The catalogue's pose is the model's answer on the
  image as it is; the ensemble only measures how far that answer moves.

A spread is not yet an error: re-drawing adds noise to an image that has it already, and the
model errs for reasons noise does not show.  :class:`ErrorCalibration` turns spreads into
errors, ``error = sqrt((scale x spread)^2 + floor^2)`` per column, with the factors fitted on
simulations with truth (:func:`fit_error_calibration`; ``benchmarks/pose_errors.py
--calibrate`` writes them beside the checkpoint as ``pose_errors.json``, keyed by its SHA-256).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from catalogs import atomic
from pipeline.conventions import normalized_to_pixel, wrap_360
from pipeline.errors import BadInputError
from pipeline.loss import half_turn_significance
from pipeline.moments import MAX_AXIS_ERROR_RAD, image_moments, moment_errors, sky_noise, subtract_background

__all__ = [
    "Predictions",
    "predict_batch",
    "DIRECTION_SIGNIF_MIN",
    "pose_spread",
    "concat",
    "ErrorCalibration",
    "DEFAULT_CALIBRATION",
    "CALIBRATION_FILE",
    "fit_error_calibration",
    "coverage",
    "read_calibration",
    "write_calibration",
    "calibration_for",
]

#: below this |direction_signif| (noise units) a galaxy shows no direction: theta is an axis only.
DIRECTION_SIGNIF_MIN = 3.0
#: file beside a checkpoint that holds its error calibration.
CALIBRATION_FILE = "pose_errors.json"
#: largest stated axis error, degrees: the standard deviation of an axis drawn at random (52 deg).
MAX_AXIS_ERROR_DEG = math.degrees(MAX_AXIS_ERROR_RAD)


@dataclass(frozen=True)
class Predictions:
    """Numpy arrays, one entry per image.

    x_pix, y_pix: model centroid in the store image's display frame (0-based pixels, y down).
    theta_deg: model orientation, degrees CCW from +x as displayed, [0, 360).
    z: (N, D) latents.  recon_mse: mean squared error of the same-view reconstruction.
    moment_x_pix, moment_y_pix, moment_theta_deg ([0, 180)), moment_axis_ratio,
    moment_anisotropy: background-subtracted image moments of the input.
    moment_x_err_pix, moment_y_err_pix, moment_theta_err_deg: their 1-sigma errors from the
    sky noise (store pixels, degrees).
    x_spread_pix, y_spread_pix (store pixels), theta_spread_deg (degrees, of the axis mod 180):
    the model's ensemble spread (:func:`pose_spread`), uncalibrated; NaN without an ensemble.
    direction_signif: how much better the same-view reconstruction explains the image than the
    same drawing turned by a half turn, in units of the noise
    (:func:`pipeline.loss.half_turn_significance`); |value| < :data:`DIRECTION_SIGNIF_MIN` means the
    galaxy shows no direction and only the axis (theta mod 180) is measured.  NaN for models
    without a direction read-out.
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
    moment_x_err_pix: np.ndarray
    moment_y_err_pix: np.ndarray
    moment_theta_err_deg: np.ndarray
    x_spread_pix: np.ndarray
    y_spread_pix: np.ndarray
    theta_spread_deg: np.ndarray
    direction_signif: np.ndarray


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().float().cpu().numpy()


def _turn_back(x: torch.Tensor, y: torch.Tensor, theta: torch.Tensor, turns: int):
    """Undo ``torch.rot90(image, turns, dims=(-2, -1))`` (CCW as displayed) on a normalised pose.

    A quarter turn CCW as displayed takes the point (x, y) (y down) to (y, -x) and adds
    pi/2 to theta; the pixel grid is symmetric about the centre, so this is exact.
    """
    for _ in range(turns % 4):
        x, y = -y, x
    return x, y, theta - (turns % 4) * (math.pi / 2)


@torch.no_grad()
def pose_spread(model: torch.nn.Module, images: torch.Tensor, samples: int, *, background_ring: int = 4,
                quarter_turns: bool = True, seeds: np.ndarray | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Ensemble spread of the model's pose on (B, C, S, S) images in [0, 1].

    ``samples`` (K >= 2) re-draws: image + N(0, sigma_c^2) per pixel, ``sigma_c`` each
    channel's noise in the border ring (:func:`pipeline.moments.sky_noise`), turned by
    ``k mod 4`` quarter turns for draw ``k`` when ``quarter_turns``.  Returns the standard
    deviations (ddof 1) of x and y in normalised units and the circular standard deviation of
    the axis (theta mod pi, ``sqrt(-2 ln R) / 2`` with ``R`` the mean resultant length of
    ``2 theta``) in radians, capped at the spread of a random axis; each (B,).
    ``seeds``: one integer per image for its noise (reproducible, and the same whatever
    batch the image is in); ``None`` draws from torch's global stream.
    """
    if samples < 2:
        raise ValueError(f"an ensemble spread needs at least 2 samples, got {samples}")
    sigma = sky_noise(images, ring=background_ring)  # (B, C)
    shape = (samples, *images.shape[1:])  # (K, C, S, S) per image
    if seeds is None:
        noises = torch.randn((images.shape[0], *shape), device=images.device)  # (B, K, C, S, S)
    else:
        gen = torch.Generator(device=images.device)
        noises = torch.empty((images.shape[0], *shape), device=images.device)
        for i, seed in enumerate(seeds):
            torch.randn(shape, generator=gen.manual_seed(int(seed)), device=images.device, out=noises[i])
    xs, ys, cs, ss = [], [], [], []
    for k in range(samples):
        drawn = images.float() + sigma[:, :, None, None] * noises[:, k]
        turns = k % 4 if quarter_turns else 0
        out = model(torch.rot90(drawn, turns, dims=(-2, -1)) if turns else drawn)
        x, y, theta = _turn_back(out.x.float(), out.y.float(), out.theta.float(), turns)
        xs.append(x)
        ys.append(y)
        cs.append(torch.cos(2.0 * theta))
        ss.append(torch.sin(2.0 * theta))
    x, y = torch.stack(xs), torch.stack(ys)  # (K, B)
    r = torch.hypot(torch.stack(cs).mean(0), torch.stack(ss).mean(0)).clamp(1e-12, 1.0)
    axis = (0.5 * torch.sqrt(-2.0 * torch.log(r))).clamp_max(MAX_AXIS_ERROR_RAD)
    return x.std(dim=0), y.std(dim=0), axis


@torch.no_grad()
def predict_batch(model: torch.nn.Module, images: torch.Tensor, *, background_ring: int = 4,
                  background_sigma: float = 1.0, error_samples: int = 0, quarter_turns: bool = True,
                  error_seeds: np.ndarray | None = None) -> Predictions:
    """Run the model (eval mode expected) on images (B, C, S, S) in [0, 1].

    ``error_samples``: K of the ensemble of :func:`pose_spread` (0: no ensemble, NaN spreads;
    1 is refused, one draw has no spread).  ``background_ring``, ``background_sigma``: the
    moments' sky (:func:`pipeline.moments.subtract_background`); the ring is also the
    ensemble's noise estimate.  ``error_seeds``: one noise seed per image (:func:`pose_spread`).
    """
    if error_samples == 1 or error_samples < 0:
        raise ValueError(f"error_samples must be 0 (no errors) or at least 2, got {error_samples}")
    out = model(images)
    size = images.shape[-1]
    half = size / 2.0  # pixels per normalised unit
    recon = ((out.same_view.float() - images.float()) ** 2).mean(dim=(1, 2, 3))
    m = image_moments(subtract_background(images, ring=background_ring, k_sigma=background_sigma))
    me = moment_errors(images, ring=background_ring, k_sigma=background_sigma, moments=m)
    n = images.shape[0]
    if error_samples and getattr(model, "has_pose", True):
        sx, sy, st = (_np(t) for t in pose_spread(model, images, error_samples, background_ring=background_ring,
                                                   quarter_turns=quarter_turns, seeds=error_seeds))
        spreads = (sx * half, sy * half, np.rad2deg(st))
    else:
        spreads = (np.full(n, np.nan, np.float32),) * 3

    flip = getattr(out, "same_view_flip", None)
    signif = (_np(half_turn_significance(images, out.same_view, flip)) if flip is not None
              else np.full(n, np.nan, np.float32))
    return Predictions(
        x_pix=normalized_to_pixel(_np(out.x), size), y_pix=normalized_to_pixel(_np(out.y), size),
        theta_deg=wrap_360(np.rad2deg(_np(out.theta))), z=_np(out.z), recon_mse=_np(recon),
        moment_x_pix=normalized_to_pixel(_np(m.x), size), moment_y_pix=normalized_to_pixel(_np(m.y), size),
        moment_theta_deg=np.mod(np.rad2deg(_np(m.theta)), 180.0), moment_axis_ratio=_np(m.axis_ratio),
        moment_anisotropy=_np(m.anisotropy), moment_x_err_pix=_np(me.x) * half, moment_y_err_pix=_np(me.y) * half,
        moment_theta_err_deg=np.rad2deg(_np(me.theta)), x_spread_pix=spreads[0], y_spread_pix=spreads[1],
        theta_spread_deg=spreads[2], direction_signif=signif)


def concat(preds: list[Predictions]) -> Predictions:
    """Join per-batch predictions in order."""
    fields = Predictions.__dataclass_fields__
    return Predictions(**{k: np.concatenate([getattr(p, k) for p in preds]) for k in fields})


# ---------------------------------------------------------------- calibration


@dataclass(frozen=True)
class ErrorCalibration:
    """How ensemble spreads become 1-sigma errors: ``sqrt((scale x spread)^2 + floor^2)`` per column.

    pa_scale, pa_floor_deg: for the axis (degrees); x_scale, y_scale, xy_floor_pix: for the
    centroid, floors in store pixels (the store's frame the spreads are measured in).
    samples: the ensemble size K the factors were fitted with; source: where they come from
    (recorded in the catalogue header); checkpoint_sha256: the checkpoint they were fitted
    for (empty for the defaults).
    """

    pa_scale: float
    pa_floor_deg: float
    x_scale: float
    y_scale: float
    xy_floor_pix: float
    samples: int
    source: str
    checkpoint_sha256: str = ""

    def pa_err_deg(self, spread_deg: np.ndarray) -> np.ndarray:
        """Calibrated axis error (degrees), capped at the spread of a random axis (52 deg)."""
        err = np.hypot(self.pa_scale * np.asarray(spread_deg, np.float64), self.pa_floor_deg)
        return np.minimum(err, MAX_AXIS_ERROR_DEG)

    def x_err_pix(self, spread_pix: np.ndarray) -> np.ndarray:
        """Calibrated centroid x error, in the spread's pixels (store frame)."""
        return np.hypot(self.x_scale * np.asarray(spread_pix, np.float64), self.xy_floor_pix)

    def y_err_pix(self, spread_pix: np.ndarray) -> np.ndarray:
        """Calibrated centroid y error, in the spread's pixels (store frame)."""
        return np.hypot(self.y_scale * np.asarray(spread_pix, np.float64), self.xy_floor_pix)

    def header(self) -> dict[str, object]:
        """The factors as recorded in a catalogue's inference configuration."""
        return {f"error_{k}": v for k, v in asdict(self).items()}


#: used for a checkpoint without its own ``pose_errors.json``: fitted by
#: ``benchmarks/pose_errors.py --calibrate`` (K = 8) for the default 64-pixel CODAE (windowed
#: centroid) trained 500 steps on a 2,000-galaxy demo survey, on 2,000 demo galaxies at four sky levels (S/N 9 to
#: 10,000; ``benchmarks/results/pose-errors-cpu2-2026-12-02.log``).  Another checkpoint's
#: errors are then only roughly calibrated: calibrate it.
DEFAULT_CALIBRATION = ErrorCalibration(pa_scale=0.951, pa_floor_deg=0.814, x_scale=0.670, y_scale=0.625,
                                       xy_floor_pix=0.014, samples=8,
                                       source="default (benchmarks/results/pose-errors-cpu2-2026-12-02.log)")


def coverage(abs_error: np.ndarray, stated: np.ndarray) -> float:
    """Fraction of finite pairs with ``|error| <= stated`` (0.68 for calibrated 1-sigma errors)."""
    a, s = np.asarray(abs_error, np.float64), np.asarray(stated, np.float64)
    ok = np.isfinite(a) & np.isfinite(s)
    return float(np.mean(np.abs(a[ok]) <= s[ok])) if ok.any() else float("nan")


def _fit_column(abs_error: np.ndarray, spread: np.ndarray, floor: float, target: float) -> float:
    """The scale with ``coverage(|err|, hypot(scale * spread, floor)) == target``, by bisection."""
    a, s = np.abs(np.asarray(abs_error, np.float64)), np.asarray(spread, np.float64)
    ok = np.isfinite(a) & np.isfinite(s)
    a, s = a[ok], s[ok]
    if a.size == 0:
        raise BadInputError("no finite errors and spreads to calibrate on")
    if np.mean(a <= floor) >= target:  # the floor alone covers enough
        return 0.0
    lo, hi = 0.0, 1.0
    while np.mean(a <= np.hypot(hi * s, floor)) < target:
        hi *= 2.0
        if hi > 1e9:
            raise BadInputError("the ensemble spreads are zero: nothing to scale (is K >= 2?)")
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if np.mean(a <= np.hypot(mid * s, floor)) < target else (lo, mid)
    return hi


#: candidate floors of the joint fit: these quantiles of the real |error| (0: no floor).
_FLOOR_QUANTILES = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6)


def _fit_floor(abs_error: np.ndarray, spread: np.ndarray, target: float, bins: int = 4) -> float:
    """The floor whose fitted scale gives the most even coverage across quantile bins of the spread.

    For each candidate floor (:data:`_FLOOR_QUANTILES` of the real |error|) the scale is fitted
    for an overall coverage of ``target``; the floor kept is the one whose worst bin (``bins``
    equal-count bins of the spread, an observable) is closest to ``target``: an error that is
    right for quiet and noisy objects alike, not only on average.
    """
    a, s = np.abs(np.asarray(abs_error, np.float64)), np.asarray(spread, np.float64)
    ok = np.isfinite(a) & np.isfinite(s)
    a, s = a[ok], s[ok]
    edges = np.quantile(s, np.linspace(0.0, 1.0, bins + 1))
    which = np.clip(np.searchsorted(edges, s, side="right") - 1, 0, bins - 1)
    best, best_worst = 0.0, np.inf
    for q in _FLOOR_QUANTILES:
        floor = float(np.quantile(a, q)) if q > 0 else 0.0
        scale = _fit_column(a, s, floor, target)
        covered = a <= np.hypot(scale * s, floor)
        worst = max(abs(covered[which == b].mean() - target) for b in range(bins) if (which == b).any())
        if worst < best_worst - 1e-9:
            best, best_worst = floor, worst
    return best


def fit_error_calibration(*, pa_abs_err_deg: np.ndarray, pa_spread_deg: np.ndarray, x_abs_err_pix: np.ndarray,
                          x_spread_pix: np.ndarray, y_abs_err_pix: np.ndarray, y_spread_pix: np.ndarray,
                          samples: int, source: str, checkpoint_sha256: str = "",
                          floor_quantile: float | None = None, target: float = 0.68) -> ErrorCalibration:
    """Fit scales and floors so that a fraction ``target`` of objects has ``|error| <= stated``.

    Errors and spreads in the same units (degrees; pixels of one frame), matched per object,
    from a survey with truth.  ``floor_quantile``: ``None`` fits the floor with the scale
    (:func:`_fit_floor`: even coverage across the range of spreads); a number fixes the floor
    at that quantile of the real |error| (0: no floor, the error is the scaled spread alone).
    The centroid's floor is one for x and y, fitted on both together.
    """
    x_a, y_a = np.asarray(x_abs_err_pix, np.float64), np.asarray(y_abs_err_pix, np.float64)
    x_s, y_s = np.asarray(x_spread_pix, np.float64), np.asarray(y_spread_pix, np.float64)

    def floor_of(a: np.ndarray, spread: np.ndarray) -> float:
        a = np.abs(np.asarray(a, np.float64))
        if floor_quantile is None:
            return _fit_floor(a, spread, target)
        return float(np.nanquantile(a, floor_quantile)) if floor_quantile > 0 else 0.0

    pa_floor = floor_of(pa_abs_err_deg, np.asarray(pa_spread_deg, np.float64))
    xy_floor = floor_of(np.concatenate([x_a, y_a]), np.concatenate([x_s, y_s]))
    return ErrorCalibration(
        pa_scale=_fit_column(pa_abs_err_deg, pa_spread_deg, pa_floor, target), pa_floor_deg=pa_floor,
        x_scale=_fit_column(x_a, x_s, xy_floor, target), y_scale=_fit_column(y_a, y_s, xy_floor, target),
        xy_floor_pix=xy_floor, samples=int(samples), source=source, checkpoint_sha256=checkpoint_sha256)


def write_calibration(cal: ErrorCalibration, path: str | os.PathLike, **extra: object) -> Path:
    """Write ``cal`` (plus ``extra`` facts, e.g. the coverage measured) as JSON, atomically."""
    path = Path(path)
    data = {"format": 1, "written": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            **asdict(cal), "extra": extra}
    atomic.write_text(path, json.dumps(data, indent=1, default=float) + "\n")
    return path


def read_calibration(path: str | os.PathLike) -> ErrorCalibration:
    """Read a ``pose_errors.json``; a defect is a :class:`BadInputError`."""
    try:
        data = json.loads(Path(path).read_text())
        fields = ErrorCalibration.__dataclass_fields__
        cal = ErrorCalibration(**{k: data[k] for k in fields if k in data})
        for k in ("pa_scale", "pa_floor_deg", "x_scale", "y_scale", "xy_floor_pix"):
            v = getattr(cal, k)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"{k} must be a finite number >= 0, got {v!r}")
        return replace(cal, samples=int(cal.samples), source=str(path))
    except FileNotFoundError:
        raise BadInputError(f"error calibration not found: {path}") from None
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise BadInputError(f"{path}: unreadable error calibration ({e})") from None


def calibration_for(checkpoint: str | os.PathLike, checkpoint_sha256: str) -> ErrorCalibration:
    """The calibration beside ``checkpoint`` when it was fitted for this checkpoint, else the defaults.

    A ``pose_errors.json`` fitted for another checkpoint (its SHA-256 differs) is not used: its
    factors describe another model.
    """
    path = Path(checkpoint).parent / CALIBRATION_FILE
    if path.is_file():
        cal = read_calibration(path)
        if cal.checkpoint_sha256 == checkpoint_sha256:
            return cal
    return DEFAULT_CALIBRATION
