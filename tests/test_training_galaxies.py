"""A short training run on simulated galaxies lowers the loss and the orientation error."""

from __future__ import annotations

import csv

import numpy as np
import torch

from pipeline.checkpoint import load_model
from pipeline.conventions import angle_diff_180, theta_to_pa
from pipeline.data.store import open_store
from pipeline.model import build_model
from pipeline.predict import predict_batch
from pipeline.train import train


def _median_pa_error(model, store, truth) -> float:
    imgs = torch.from_numpy(store.read_images(0, len(store))).float() / 255.0
    p = predict_batch(model.eval(), imgs)
    t = truth.loc[list(store.ids)]
    elongated = t["axis_ratio"].to_numpy() <= 0.6
    err = angle_diff_180(theta_to_pa(p.theta_deg), t["pa_deg"].to_numpy())
    return float(np.median(err[elongated]))


def test_short_training_lowers_loss_and_orientation_error(demo_run, tmp_path):
    config = demo_run["config"].replace(train={"max_epochs": 8, "log_every": 2, "seed": 1})
    train(config, demo_run["store"], tmp_path / "run", progress=False)
    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    assert float(rows[-1]["reconstruction"]) < 0.8 * float(rows[0]["reconstruction"])  # measured 0.75
    assert float(rows[-1]["loss"]) < 0.75 * float(rows[0]["loss"])
    store = open_store(demo_run["store"])
    torch.manual_seed(1)
    untrained = build_model(config.model)
    trained, _ = load_model(tmp_path / "run" / "checkpoint.pt")
    before = _median_pa_error(untrained, store, demo_run["truth"])
    after = _median_pa_error(trained, store, demo_run["truth"])
    print(f"median PA error before {before:.1f} deg, after {after:.1f} deg")
    assert after < 0.6 * before, (before, after)
