"""Shared fixtures: small analytic images with known pose, made on the fly (no network, no files)."""

from __future__ import annotations

import os

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

import numpy as np  # noqa: E402
import pytest  # noqa: E402


def gaussian_ellipses(n: int, size: int = 64, *, seed: int = 0, channels: int = 3, sky: float = 0.05,
                      noise: float = 0.0, max_shift: float = 6.0) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Elliptical Gaussian blobs in display order with known pose.

    Returns uint8 images (N, C, size, size) and truth: x_pix, y_pix (display frame, y down),
    theta_deg (CCW as displayed, axis in [0, 180)), axis_ratio, sigma_pix (major axis).
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    x0 = (size - 1) / 2 + rng.uniform(-max_shift, max_shift, n)
    y0 = (size - 1) / 2 + rng.uniform(-max_shift, max_shift, n)
    theta = rng.uniform(0, 180, n)
    q = rng.uniform(0.3, 0.7, n)
    sig = rng.uniform(size / 14, size / 9, n)
    imgs = np.empty((n, channels, size, size), dtype=np.uint8)
    for i in range(n):
        t = np.deg2rad(theta[i])
        dx, dy = xx - x0[i], yy - y0[i]
        # major-axis direction as displayed is (cos t, -sin t) in (x, y-down)
        u = dx * np.cos(t) - dy * np.sin(t)
        v = dx * np.sin(t) + dy * np.cos(t)
        f = np.exp(-0.5 * ((u / sig[i]) ** 2 + (v / (q[i] * sig[i])) ** 2))
        img = sky + (0.9 - sky) * f + noise * rng.standard_normal(f.shape)
        for c in range(channels):
            imgs[i, c] = np.clip(np.round(255 * img * (1.0 - 0.1 * c)), 0, 255).astype(np.uint8)
    return imgs, {"x_pix": x0, "y_pix": y0, "theta_deg": theta, "axis_ratio": q, "sigma_pix": sig}


@pytest.fixture(scope="session")
def ellipses():
    return gaussian_ellipses(256, seed=1)


# ---------------------------------------------------------------- demo survey, store and a short run (infer, stack)


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """A 96-galaxy demo survey (128-pixel cutouts), its store (32 pixels, 3 shards of 32) and a short run.

    Built once per session (about 15 s on 2 busy cores).  Returns a dict: ``survey`` (root),
    ``store``, ``checkpoint``, ``truth`` (pandas DataFrame indexed by iauname), ``config``.
    """
    import pandas as pd

    from pipeline.config import ModelConfig, RunConfig
    from pipeline.data.ingest import ingest_survey
    from pipeline.data.survey import write_demo_survey
    from pipeline.train import train

    root = tmp_path_factory.mktemp("demo_run")
    survey = write_demo_survey(root / "survey", 96, seed=3, size=128, progress=False)
    store = root / "store.zarr"
    ingest_survey(survey / "catalog.parquet", survey / "images", store, size=32, crop=64, shard_size=32)
    model = ModelConfig(image_size=32, widths=(2, 4, 4), kernels=(5, 3, 3), latent_dim=4, hidden=32, decoder_width=8)
    config = RunConfig(model=model).replace(
        train={"batch_size": 16, "max_epochs": 3, "log_every": 100, "checkpoint_every": 1000, "seed": 0,
               "device": "cpu"})
    train(config, store, root / "run", progress=False)
    truth = pd.read_parquet(survey / "truth.parquet").set_index("iauname")
    return {"survey": survey, "store": store, "checkpoint": root / "run" / "checkpoint.pt", "truth": truth,
            "config": config}
