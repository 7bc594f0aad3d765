"""Scoring one model: its codes on the evaluation images, the eight metrics with and without the pose
factors, and the Pearson table of its latents.

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
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from numpy.typing import NDArray

from pipeline.data.pixels import to_unit_float
from pipeline.evaluate.datasets import POSE_FACTORS, EvalData
from pipeline.evaluate.metrics import compute_all, pearson_table, remove_pose_latents

__all__ = ["ModelCodes", "encode", "codes_for_metrics", "pearson_codes", "score", "pearson"]


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
        out = model(to_unit_float(images[a:a + batch_size]).to(device))
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


def pearson_codes(codes: ModelCodes, *, has_pose: bool, learn_centroid: bool) -> tuple[NDArray, list[str]]:
    """Codes for the Pearson table: like the metrics' but the angle code as its (cos, sin) pair,
    because Pearson's r (and Mardia's circular-linear r) needs a linear latent."""
    z_names = [f"z_{j}" for j in range(codes.z.shape[1])]
    if not has_pose:
        return codes.z, z_names
    rad = np.deg2rad(codes.theta_deg)
    pose = ([codes.x, codes.y] if learn_centroid else []) + [np.cos(rad), np.sin(rad)]
    names = (["x", "y"] if learn_centroid else []) + ["theta_cos", "theta_sin"]
    return np.column_stack([*pose, codes.z]), names + z_names


def score(data: EvalData, codes: ModelCodes, has_pose: bool, idx: NDArray[np.int64], seed: int) -> list[dict]:
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


def pearson(codes: ModelCodes, data: EvalData, idx: NDArray[np.int64], *, has_pose: bool) -> pd.DataFrame:
    """Pearson r of each latent with ``data.named`` at the images ``idx`` (rows: the latents' names)."""
    pc, names = pearson_codes(codes, has_pose=has_pose, learn_centroid=data.learn_centroid)
    table = pearson_table(pc, {k: np.asarray(v)[idx] for k, v in data.named.items()}, circular=data.named_circular)
    table.index = names
    return table
