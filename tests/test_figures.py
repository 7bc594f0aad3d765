"""Training figures people can read: markers whatever the length, titles, labelled traversals."""

from __future__ import annotations

import math

import matplotlib.image
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from pipeline.figures import loss_curves, loss_figure, traversal_figure


def _row(step: int) -> dict:
    return {"step": step, "beta": 1.0 / step, "loss": 0.1 / step, "reconstruction": 0.05 / step, "centroid": 1e-3,
            "orientation": 2e-3, "aligned": 0.0}


def test_loss_curves_of_one_row_show_the_point_with_titles_and_labels(tmp_path):
    fig = loss_figure([_row(20)])
    try:
        left, right = fig.axes
        assert left.get_title() and right.get_title() and fig._suptitle.get_text().startswith("Training: 1 logged")
        assert left.get_xlabel() == "optimiser step" and left.get_ylabel() and right.get_ylabel() == "beta"
        lines = [ln for ln in left.get_lines() if len(ln.get_xdata())]
        assert {ln.get_label() for ln in lines} == {"total", "reconstruction", "centroid", "orientation"}
        assert all(ln.get_marker() == "o" for ln in lines)  # a single point is drawn, not an empty line
        lo, hi = left.get_xlim()
        assert lo < 20 < hi
    finally:
        plt.close(fig)
    one, none = tmp_path / "one.png", tmp_path / "none.png"
    loss_curves([_row(20)], one)
    loss_curves([], none)
    coloured = [int((np.ptp(matplotlib.image.imread(p)[..., :3], axis=-1) > 0.3).sum()) for p in (one, none)]
    assert coloured[0] > coloured[1] + 20  # the markers are on the page


def test_long_runs_keep_lines_without_crowded_markers():
    fig = loss_figure([_row(s) for s in range(1, 200)])
    try:
        assert all(ln.get_marker() in ("None", None, "") for ln in fig.axes[0].get_lines())
    finally:
        plt.close(fig)


@pytest.fixture(scope="module")
def small_model():
    from pipeline.config import ModelConfig
    from pipeline.model import build_model

    torch.manual_seed(0)
    cfg = ModelConfig(image_size=32, widths=(2, 4, 4), kernels=(5, 3, 3), latent_dim=2, hidden=16, decoder_width=8)
    return build_model(cfg).eval()


def test_traversals_label_each_row_and_each_value(small_model):
    image = torch.rand(3, 32, 32)
    fig = traversal_figure(small_model, image, steps=5)
    try:
        grid = np.array(fig.axes).reshape(-1, 5)
        names = [row[0].get_ylabel() for row in grid]
        assert names == ["z_0", "z_1", "x", "y", "theta"]
        with torch.no_grad():
            z0 = small_model(image[None]).z[0]
        values = [float(t.get_text()) for t in (ax.title for ax in grid[0])]
        np.testing.assert_allclose(values, float(z0[0]) + np.linspace(-math.pi, math.pi, 5), atol=0.006)
        assert [ax.get_title() for ax in grid[4]][:2] == ["0 deg", "72 deg"]
        assert fig._suptitle.get_text().startswith("Latent traversals")
    finally:
        plt.close(fig)
