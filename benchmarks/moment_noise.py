"""Find the sky noise at which per-image moments miss the position angle by > 5 degrees (median)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from pipeline.conventions import angle_diff_180, theta_to_pa
from pipeline.moments import image_moments, subtract_background
from pipeline.simulate.survey import write_demo_survey


def moment_pa_error(survey: Path) -> float:
    """Median |delta PA| (deg) of moments on the full-resolution JPEGs, axis ratio <= 0.6."""
    cat = pd.read_parquet(survey / "catalog.parquet")
    truth = pd.read_parquet(survey / "truth.parquet").set_index("iauname").loc[cat["iauname"]]
    imgs = np.stack([np.asarray(Image.open(survey / "images" / p).reduce(4)) for p in cat["file_loc"]])
    t = torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255.0
    m = image_moments(subtract_background(t))
    err = angle_diff_180(theta_to_pa(np.rad2deg(m.theta.numpy())), truth["pa_deg"].to_numpy())
    return float(np.median(err[truth["axis_ratio"].to_numpy() <= 0.6]))


def find_noisy_sky(work: Path, seed: int, n: int = 200) -> float:
    sky = 0.01
    for _ in range(12):
        err = moment_pa_error(write_demo_survey(work / f"probe-{sky:g}", n, seed=seed, sky_noise=sky, progress=False))
        print(f"probe: sky noise {sky:g} -> moment median PA error {err:.2f} deg")
        if err > 5.0:
            return sky
        sky *= 2.0
    return sky
