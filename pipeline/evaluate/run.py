"""The evaluation driver behind ``galaxy-codae evaluate``: train, encode, score, draw.

For every model kind and seed: train through :func:`pipeline.train.train` within a wall-clock
budget (or take a given checkpoint), encode the evaluation images, score the codes with
:func:`pipeline.evaluate.metrics.compute_all` with and without the pose factors, and write
into ``OUT``:

``metrics_runs.csv``      one row per (model, seed, setting): every metric, ``mean`` of the eight
``metrics_summary.csv``   per (model, setting): the best seed's scores (best = highest ``mean``
                          *with* pose factors, as the paper picks its seed) and mean / std over seeds
``metrics.md``            the same as markdown tables (best and mean +- std)
``pearson_<kind>.csv``    Pearson r of each latent with named quantities, labels (``unnamed`` < 0.5)
``pearson.md``            all of them as markdown
``alignment.csv``         per model and shape: circular spread (degrees) of the orientation of the
                          aligned reconstructions (from the shape's strongest harmonic: the
                          moment axis, or order 3 for triangles, 4 for squares), their mean
                          moment anisotropy and shape harmonics of orders 3 and 4, and those of
                          the input images (``input_*``; see :func:`shapes_drawn`)
``figures/<kind>_aligned.png``     input / same view / aligned reconstructions (best seed)
``figures/<kind>_traversals.png``  latent traversals (best seed)
``runs/<kind>/seed<k>/``  each training run (checkpoint, config, metrics.csv, figures)

Codes given to the metrics
--------------------------
*Models with explicit pose* (CODAE, spatial-VAE, TARGET-VAE, IRL-INR): ``x``, ``y`` (normalised,
y down; left out for centred data), ``theta_deg`` (the orientation as one angle code in degrees,
wrapped to [0, 360): quantile bins of a uniform angle are the equal-width circular bins of the
metrics' rule, and the regressors of DCI see it as one dimension, as every other latent), then
``z_0..``.  "Without pose" drops x, y, theta_deg and the pose factors.
*Models without pose* (beta-VAE, DAE): ``z_0..``; "without pose" removes the latents most
informative of x, y and orientation with :func:`pipeline.evaluate.metrics.remove_pose_latents`
(one latent per pose factor), as the paper does.

Factors
-------
XYRCS: ``x_pix``, ``y_pix``, ``rotation_deg`` (circular, folded by the shape's symmetry: 120 for
triangles, 180 for rectangles; a circle's rotation is invisible and set to 0), ``hue_deg``
(circular, hue x 360), ``brightness``, ``shape_id``.  dSprites: ``x_pix``, ``y_pix``,
``rotation_deg`` (circular; 90 squares, 180 ellipses, 360 hearts), ``scale``, ``shape_id``.
The pose factors are x_pix, y_pix, rotation_deg.  Models train and are scored on the same images
(as in the paper); ``n_eval`` of them, spread evenly, are scored.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from numpy.typing import NDArray

from catalogs import atomic
from pipeline.config import LossConfig, ModelConfig, RunConfig, TrainConfig
from pipeline.data.memory import ArrayDataset
from pipeline.errors import BadInputError, ConfigError
from pipeline.evaluate.metrics import EIGHT_METRICS, compute_all, pearson_table, remove_pose_latents

__all__ = [
    "EvalData",
    "ModelCodes",
    "EvaluationResult",
    "make_eval_data",
    "model_config_for",
    "encode",
    "codes_for_metrics",
    "object_signal",
    "orientation_spread",
    "shapes_drawn",
    "evaluate",
]

POSE_FACTORS = ("x_pix", "y_pix", "rotation_deg")
#: Kinds whose ``z`` is the whole code (no explicit pose).
NO_POSE_KINDS = ("beta-vae", "dae")
#: CODAE's moment prior on the synthetic shape sets: shape harmonics 2 (the paper's moment axis), 3
#: (triangles, hearts) and 4 (squares); see :mod:`pipeline.loss`.  Scientific stacks keep (2,).
SHAPE_ORIENTATION_ORDERS = (2, 3, 4)
#: KL weight per kind: beta = 4 for beta-VAE (Higgins et al. on dSprites), 1 for the other VAEs.
KL_WEIGHT = {"beta-vae": 4.0, "spatial-vae": 1.0, "target-vae": 1.0}
#: Shape measures of aligned reconstructions count pixels at or above this fraction of the peak.
OBJECT_FRACTION = 0.25
#: Optimiser steps of the speed calibration that precedes each budgeted training run.
CALIBRATION_STEPS = 10
#: The ownership kind (:func:`catalogs.atomic.mark_owned`) of an evaluation folder: --overwrite replaces only such a folder.
EVALUATION_KIND = "evaluation"


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
    t = torch.as_tensor(images)
    t = t.float() / 255.0 if t.dtype == torch.uint8 else t.float()
    if t.shape[-1] == size and t.shape[-2] == size:
        return t.numpy()
    out = torch.nn.functional.interpolate(t, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return out.clamp(0, 1).numpy()


def _folded(angle_deg: NDArray, period: NDArray | float) -> NDArray[np.float64]:
    period = np.asarray(period, dtype=np.float64)
    return np.mod(np.mod(angle_deg, period) * (360.0 / period), 360.0)


def _com_quantities(images: NDArray) -> dict[str, NDArray[np.float64]]:
    """Centre of mass (sky removed) of each image: x, y (normalised, y down), angle (deg CCW), magnitude."""
    from pipeline.moments import com_orientation, image_moments, subtract_background

    out: dict[str, list[NDArray]] = {"com_x": [], "com_y": [], "com_angle": [], "com_mag": []}
    for a in range(0, len(images), 256):
        t = torch.as_tensor(images[a:a + 256])
        t = t.float() / 255.0 if t.dtype == torch.uint8 else t.float()
        signal = subtract_background(t)
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
        from pipeline.data.shapes import make_xyrcs

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
        from pipeline.data.shapes import make_dsprites

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
        named[c] = _folded(cols[c], periods.get(c, 360.0))
    return EvalData(name=name, images=images, factors=factors, factor_names=tuple(cols), circular=circular,
                    period_deg=periods, named=named, named_circular=circular, shapes=shapes,
                    reconstruction=recon, orientation_prior="moments", learn_centroid=True,
                    orientation_orders=SHAPE_ORIENTATION_ORDERS)


def model_config_for(kind: str, data: EvalData, *, latent_dim: int | None = None,
                     base: ModelConfig | None = None) -> ModelConfig:
    """The model configuration used for ``kind`` on ``data``.

    Content latents: the number of non-pose factors for models with pose and the number of all
    factors for beta-VAE and DAE, so that every model has a code of the same size (the paper's
    choice: 2 and 5 on dSprites); ``latent_dim`` (the content size) overrides, and is 4 without
    ground truth (the paper's size for diffraction).
    """
    base = base or ModelConfig()
    if latent_dim is None:
        latent_dim = len(data.factor_names) - len(POSE_FACTORS) if data.factors is not None else 4
    if kind in NO_POSE_KINDS:
        latent_dim += 3 if data.learn_centroid else 1
    changes = {"kind": kind, "image_size": data.size, "channels": data.channels, "latent_dim": max(1, latent_dim),
               "learn_centroid": data.learn_centroid, "kl_weight": KL_WEIGHT.get(kind, base.kl_weight)}
    return replace(base, **changes)


# ----------------------------------------------------------------------------- codes


@dataclass(frozen=True)
class ModelCodes:
    """Per-image outputs of one model on the evaluation images (numpy, float64).

    ``x``, ``y``: normalised, y down; ``theta_deg``: degrees CCW as displayed in [0, 360); ``z`` (N, D).
    """

    x: NDArray[np.float64]
    y: NDArray[np.float64]
    theta_deg: NDArray[np.float64]
    z: NDArray[np.float64]


@torch.no_grad()
def encode(model: torch.nn.Module, images: NDArray, *, batch_size: int = 128,
           device: torch.device | str = "cpu") -> ModelCodes:
    """Run ``model`` in eval mode over ``images`` (N, C, S, S) and collect its pose and content codes."""
    model.eval()
    xs, ys, ts, zs = [], [], [], []
    for a in range(0, len(images), batch_size):
        t = torch.as_tensor(images[a:a + batch_size])
        t = (t.float() / 255.0 if t.dtype == torch.uint8 else t.float()).to(device)
        out = model(t)
        xs.append(out.x.cpu().double().numpy())
        ys.append(out.y.cpu().double().numpy())
        ts.append(np.mod(np.rad2deg(out.theta.cpu().double().numpy()), 360.0))
        zs.append(out.z.cpu().double().numpy())
    return ModelCodes(np.concatenate(xs), np.concatenate(ys), np.concatenate(ts), np.concatenate(zs))


def codes_for_metrics(codes: ModelCodes, *, has_pose: bool, learn_centroid: bool) -> tuple[NDArray, list[str], int]:
    """The code matrix (N, D') the metrics see, its column names and how many leading columns are pose."""
    z_names = [f"z_{j}" for j in range(codes.z.shape[1])]
    if not has_pose:
        return codes.z, z_names, 0
    pose_cols = [codes.x, codes.y, codes.theta_deg] if learn_centroid else [codes.theta_deg]
    pose_names = ["x", "y", "theta_deg"] if learn_centroid else ["theta_deg"]
    return np.column_stack([*pose_cols, codes.z]), pose_names + z_names, len(pose_cols)


def _pearson_codes(codes: ModelCodes, *, has_pose: bool, learn_centroid: bool) -> tuple[NDArray, list[str]]:
    """Codes for the Pearson table: like the metrics' but the angle code as its (cos, sin) pair,
    because Pearson's r (and Mardia's circular-linear r) needs a linear latent."""
    z_names = [f"z_{j}" for j in range(codes.z.shape[1])]
    if not has_pose:
        return codes.z, z_names
    rad = np.deg2rad(codes.theta_deg)
    pose = ([codes.x, codes.y] if learn_centroid else []) + [np.cos(rad), np.sin(rad)]
    names = (["x", "y"] if learn_centroid else []) + ["theta_cos", "theta_sin"]
    return np.column_stack([*pose, codes.z]), names + z_names


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


# ----------------------------------------------------------------------------- training


def _train_within_budget(config: RunConfig, dataset: ArrayDataset, run_dir: Path, *, budget_minutes: float,
                         progress: bool) -> tuple[Path, int, float]:
    """Train into ``run_dir`` so that the run (and CODAE's beta schedule) fits ``budget_minutes``.

    The trainer plans its moment-loss decay on the planned number of steps, so a bare wall-clock
    stop would leave beta high.  A ``CALIBRATION_STEPS``-step calibration run (on top of the
    budget) measures the speed from its steps 3 to the last (the first steps carry one-off
    costs; two steps, as before, under-estimated the speed by a fifth and left a quarter of the
    budget unused); the real run then plans ``0.92 x budget x rate`` steps, with
    ``max_minutes = budget`` as the hard stop.
    Returns (checkpoint, steps, minutes of the real run).
    """
    from pipeline.checkpoint import load_checkpoint
    from pipeline.train import train

    per_epoch = max(1, len(dataset) // config.train.batch_size)
    calib_dir = run_dir.with_name(run_dir.name + ".calibration")
    if calib_dir.exists():
        shutil.rmtree(calib_dir)
    calib = train(config.replace(train={"max_steps": None, "max_epochs": 100_000, "max_minutes": None,
                                        "log_every": 1}), dataset, calib_dir, progress=False,
                  stop_after_steps=CALIBRATION_STEPS)
    rows = load_checkpoint(calib_dir / "checkpoint.pt")["metrics_rows"]
    shutil.rmtree(calib_dir, ignore_errors=True)
    if len(rows) >= CALIBRATION_STEPS and rows[-1]["elapsed_s"] > rows[1]["elapsed_s"]:
        rate = (len(rows) - 2) * config.train.batch_size / (rows[-1]["elapsed_s"] - rows[1]["elapsed_s"])
    else:
        rate = max(calib.images_per_s, 1e-3)
    steps = max(1, int(0.92 * budget_minutes * 60.0 * rate / config.train.batch_size))
    cfg = config.replace(train={"max_steps": steps, "max_epochs": steps // per_epoch + 1,
                                "max_minutes": budget_minutes})
    t0 = time.monotonic()
    res = train(cfg, dataset, run_dir, progress=progress)
    return res.checkpoint, res.steps, (time.monotonic() - t0) / 60.0


# ----------------------------------------------------------------------------- the whole evaluation


@dataclass
class EvaluationResult:
    """What :func:`evaluate` wrote and the tables it holds in memory."""

    out: Path
    runs: pd.DataFrame  # one row per (model, seed, setting)
    summary: pd.DataFrame  # best and mean/std per (model, setting)
    alignment: pd.DataFrame
    pearson: dict[str, pd.DataFrame] = field(default_factory=dict)


def _parse_checkpoints(spec: dict[str, Path] | None, kinds: Sequence[str]) -> dict[str, Path]:
    spec = dict(spec or {})
    unknown = sorted(set(spec) - set(kinds))
    if unknown:
        raise ConfigError(f"--checkpoints names models {unknown} that are not in --models {list(kinds)}")
    return spec


def _atomic_text(path: Path, text: str) -> None:
    atomic.write_text(path, text)


def _atomic_csv(frame: pd.DataFrame, path: Path, **kwargs) -> None:
    with atomic.atomic_path(path) as tmp:
        frame.to_csv(tmp, **kwargs)


def _markdown(df: pd.DataFrame, floatfmt: str = ".3f") -> str:
    cols = list(df.columns)
    lines = ["| " + " | ".join(str(c) for c in cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for _, row in df.iterrows():
        cells = [format(v, floatfmt) if isinstance(v, float) else str(v) for v in row.tolist()]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _score(data: EvalData, codes: ModelCodes, has_pose: bool, idx: NDArray[np.int64], seed: int) -> list[dict]:
    """Metrics with and without the pose factors; ``codes`` are those of the images ``data.images[idx]``."""
    f = data.factors[idx]
    names = list(data.factor_names)
    periods = {k: (np.asarray(v)[idx] if np.ndim(v) else v) for k, v in data.period_deg.items()}
    full, _, n_pose = codes_for_metrics(codes, has_pose=has_pose, learn_centroid=data.learn_centroid)
    rows = [{"setting": "with_pose", **compute_all(f, full, factor_names=names, circular=data.circular,
                                                    period_deg=periods, seed=seed)}]
    pose_idx = [names.index(p) for p in POSE_FACTORS]
    keep = [k for k in range(len(names)) if k not in pose_idx]
    kept_names = [names[k] for k in keep]
    if has_pose:
        content = full[:, n_pose:]
        f_content = f[:, keep]
        removed = "explicit pose"
    else:
        circ_idx = [names.index(c) for c in data.circular]
        per_idx = {names.index(k): v for k, v in periods.items()}
        rem = remove_pose_latents(full, f, pose_idx, circular=circ_idx, period_deg=per_idx)
        content, f_content = rem.codes, rem.factors
        removed = "latents " + ",".join(str(j) for group in rem.removed_latents for j in group)
    rows.append({"setting": "without_pose",
                 **compute_all(f_content, content, factor_names=kept_names,
                               circular=[c for c in data.circular if c in kept_names],
                               period_deg={k: v for k, v in periods.items() if k in kept_names}, seed=seed),
                 "pose_removed": removed})
    rows[0]["pose_removed"] = ""
    return rows


def _summarise(runs: pd.DataFrame) -> pd.DataFrame:
    metric_cols = [*EIGHT_METRICS, "mean"]
    rows = []
    for (model, setting), grp in runs.groupby(["model", "setting"], sort=False):
        with_pose = runs[(runs.model == model) & (runs.setting == "with_pose")]
        best_seed = with_pose.loc[with_pose["mean"].idxmax(), "seed"]  # the paper's choice of seed
        best = grp[grp.seed == best_seed].iloc[0]
        row = {"model": model, "setting": setting, "n_seeds": len(grp), "best_seed": int(best_seed)}
        for m in metric_cols:
            row[f"{m}_best"] = float(best[m])
            row[f"{m}_mean"] = float(grp[m].mean())
            row[f"{m}_std"] = float(grp[m].std(ddof=0))
        rows.append(row)
    return pd.DataFrame(rows)


def _summary_markdown(summary: pd.DataFrame, title: str) -> str:
    parts = [f"# Disentanglement metrics: {title}", "",
             "Best seed (highest mean of the eight metrics with pose factors) and mean +- std over seeds.", ""]
    for setting in ("with_pose", "without_pose"):
        sub = summary[summary.setting == setting]
        if sub.empty:
            continue
        best = pd.DataFrame({"model": sub.model, **{m: sub[f"{m}_best"] for m in [*EIGHT_METRICS, "mean"]}})
        spread = pd.DataFrame({"model": sub.model, "seeds": sub.n_seeds,
                               **{m: [f"{a:.3f} ± {b:.3f}" for a, b in zip(sub[f"{m}_mean"], sub[f"{m}_std"])]
                                  for m in [*EIGHT_METRICS, "mean"]}})
        label = "with position and orientation factors" if setting == "with_pose" else \
            "without position and orientation factors"
        parts += [f"## {label}: best seed", "", _markdown(best), "", f"## {label}: mean ± std over seeds", "",
                  _markdown(spread), ""]
    return "\n".join(parts)


def evaluate(data: EvalData, kinds: Sequence[str], out: str | Path, *, seeds: int = 1, first_seed: int = 0,
             budget_minutes: float = 5.0,
             n_eval: int = 2000, checkpoints: dict[str, Path] | None = None, latent_dim: int | None = None,
             base_model: ModelConfig | None = None, base_train: TrainConfig | None = None,
             overwrite: bool = False, progress: bool = True) -> EvaluationResult:
    """Train (or load) every model of ``kinds`` for ``seeds`` seeds (``first_seed``, ``first_seed + 1``,
    ...; a later study can add seeds without repeating the first ones) and write the tables and figures.

    ``budget_minutes`` is each training run's ``TrainConfig.max_minutes`` (per model and seed; a
    3-step speed calibration comes on top).  ``checkpoints`` maps a kind to
    a checkpoint that replaces training for that kind (scored as one seed).  ``base_model`` and
    ``base_train`` give the architecture and optimisation defaults (sizes, batch size, lr).
    Refuses an ``out`` that already holds results unless ``overwrite``.
    """
    from pipeline.checkpoint import load_model
    from pipeline.figures import latent_traversals, reconstruction_grid
    from pipeline.model import MODEL_KINDS

    out = Path(out)
    unknown = [k for k in kinds if k not in MODEL_KINDS]
    if unknown or not kinds:
        raise ConfigError(f"unknown models {unknown or '(none given)'}; choose from {', '.join(MODEL_KINDS)}")
    if seeds < 1 or first_seed < 0 or budget_minutes <= 0:
        raise ConfigError("--seeds must be >= 1, --first-seed >= 0 and --budget-minutes > 0")
    ckpts = _parse_checkpoints(checkpoints, kinds)
    if (out / "metrics_runs.csv").exists() or (out / "pearson.md").exists():
        if not overwrite:
            raise BadInputError(f"{out} already holds evaluation results; choose another --out or pass --overwrite")
        atomic.remove_owned(out, kinds=(EVALUATION_KIND,), error=BadInputError)  # only a folder evaluate wrote
    (out / "figures").mkdir(parents=True, exist_ok=True)
    dataset = ArrayDataset(data.images)
    n = len(dataset)
    idx = np.unique(np.linspace(0, n - 1, min(n_eval, n)).astype(np.int64))
    eval_images = data.images[idx]
    loss = LossConfig(reconstruction=data.reconstruction, orientation_prior=data.orientation_prior,
                      orientation_orders=data.orientation_orders)
    train_base = base_train or TrainConfig(batch_size=32, log_every=20, checkpoint_every=1_000_000)
    run_rows: list[dict] = []
    align_rows: list[pd.DataFrame] = []
    pearson: dict[str, pd.DataFrame] = {}
    labels = data.shapes[idx] if data.shapes is not None else None
    input_shape = orientation_spread(_float(eval_images), labels).set_index("label")
    for kind in kinds:
        mcfg = model_config_for(kind, data, latent_dim=latent_dim, base=base_model)
        seed_list = [None] if kind in ckpts else list(range(first_seed, first_seed + seeds))
        best: tuple[float, torch.nn.Module | None, ModelCodes | None, int] = (-math.inf, None, None, 0)
        for s in seed_list:
            if s is None:
                ckpt, steps, minutes = Path(ckpts[kind]), -1, 0.0
            else:
                run_dir = out / "runs" / kind / f"seed{s}"
                cfg = RunConfig(model=mcfg, loss=loss, train=replace(train_base, seed=s))
                if progress:
                    print(f"evaluate: training {kind} seed {s} for up to {budget_minutes:g} min", file=sys.stderr,
                          flush=True)
                ckpt, steps, minutes = _train_within_budget(cfg, dataset, run_dir, budget_minutes=budget_minutes,
                                                            progress=progress)
            model, state = load_model(ckpt)
            if state["config"].model.kind != kind:
                raise BadInputError(f"{ckpt}: checkpoint is a {state['config'].model.kind!r} model, not {kind!r}")
            if s is None:
                s, steps = int(state["config"].train.seed), int(state["step"])
            codes = encode(model, eval_images)
            has_pose = bool(getattr(model, "has_pose", True))
            if data.factors is not None:
                rows = _score(data, codes, has_pose, idx, seed=0)
                for r in rows:
                    run_rows.append({"model": kind, "seed": s, "steps": steps, "train_minutes": round(minutes, 3),
                                     **r})
                mean = rows[0]["mean"]
            else:
                mean = 0.0
            if mean > best[0] or best[1] is None:
                best = (mean, model, codes, s)
        _, model, codes, best_seed = best
        assert model is not None and codes is not None
        grid_idx = np.linspace(0, len(eval_images) - 1, min(8, len(eval_images))).astype(int)
        grid = torch.as_tensor(eval_images[grid_idx])
        grid = grid.float() / 255.0 if grid.dtype == torch.uint8 else grid.float()
        reconstruction_grid(model, grid, out / "figures" / f"{kind}_aligned.png")
        latent_traversals(model, grid[0], out / "figures" / f"{kind}_traversals.png")
        with torch.no_grad():
            aligned = torch.cat([model(_float(eval_images[a:a + 128])).aligned for a in range(0, len(eval_images), 128)])
        spread = orientation_spread(aligned, labels)
        for col, input_col in SHAPE_MEASURES:
            spread[input_col] = spread.label.map(input_shape[col]).to_numpy()
        spread.insert(0, "model", kind)
        spread.insert(1, "seed", best_seed)
        align_rows.append(spread)
        pc, pnames = _pearson_codes(codes, has_pose=bool(getattr(model, "has_pose", True)),
                                    learn_centroid=data.learn_centroid)
        named = {k: np.asarray(v)[idx] for k, v in data.named.items()}
        table = pearson_table(pc, named, circular=data.named_circular)
        table.index = pnames
        pearson[kind] = table
        table.to_csv(out / f"pearson_{kind}.csv", index_label="latent")
    runs = pd.DataFrame(run_rows)
    summary = _summarise(runs) if not runs.empty else pd.DataFrame()
    alignment = pd.concat(align_rows, ignore_index=True)
    if not runs.empty:
        _atomic_csv(runs, out / "metrics_runs.csv", index=False)
        _atomic_csv(summary, out / "metrics_summary.csv", index=False)
        _atomic_text(out / "metrics.md", _summary_markdown(summary, data.name))
    _atomic_csv(alignment, out / "alignment.csv", index=False)
    md = [f"# Pearson correlation of latents with named quantities: {data.name}", "",
          "Labels: the quantity with the largest |r| (circular quantities: Mardia's circular-linear r); "
          "`unnamed` when below 0.5.", ""]
    for kind, table in pearson.items():
        md += [f"## {kind}", "", _markdown(table.reset_index(names="latent")), ""]
    _atomic_text(out / "pearson.md", "\n".join(md))
    _atomic_text(out / "evaluation.json", json.dumps(
        {"dataset": data.name, "models": list(kinds), "seeds": seeds, "first_seed": first_seed,
         "budget_minutes": budget_minutes,
         "n_images": n, "n_eval": int(len(idx)), "checkpoints": {k: str(v) for k, v in ckpts.items()}}, indent=2))
    atomic.mark_owned(out, EVALUATION_KIND)  # what it holds now: --overwrite may replace exactly this
    return EvaluationResult(out=out, runs=runs, summary=summary, alignment=alignment, pearson=pearson)


def _float(images: NDArray) -> torch.Tensor:
    t = torch.as_tensor(images)
    return t.float() / 255.0 if t.dtype == torch.uint8 else t.float()
