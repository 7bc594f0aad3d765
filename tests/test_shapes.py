"""XYRCS and procedural dSprites: factor ranges, determinism, and orientation as drawn."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pipeline.conventions import angle_diff_180, normalized_to_pixel
from pipeline.errors import BadInputError
from pipeline.moments import com_orientation, image_moments
from pipeline.simulate.shapes import (
    DSPRITES_POSITIONS,
    DSPRITES_ROTATIONS_DEG,
    DSPRITES_SCALES,
    ROTATIONAL_SYMMETRY_DEG,
    load_dsprites_npz,
    make_dsprites,
    make_xyrcs,
    rasterize,
)


def _moments(img: np.ndarray):
    return image_moments(torch.from_numpy(np.asarray(img, dtype=np.float32))[None])


def test_xyrcs_factors_and_determinism():
    a = make_xyrcs(24, seed=4)
    b = make_xyrcs(24, seed=4)
    assert a.images.shape == (24, 3, 64, 64) and a.images.dtype == np.float32
    np.testing.assert_array_equal(a.images, b.images)
    f = a.factors
    assert set(f.columns) >= {"shape", "x_pix", "y_pix", "rotation_deg", "hue", "brightness", "symmetry_deg"}
    assert set(f["shape"]) <= {"circle", "triangle", "rectangle"}
    assert f.rotation_deg.between(0, 360, inclusive="left").all()
    assert f.brightness.between(0.4, 1.0).all() and 0.0 <= a.images.min() and a.images.max() <= 1.0
    assert not np.array_equal(make_xyrcs(24, seed=5).images, a.images)
    for i, row in f.iterrows():  # the centroid of every shape is where the factors say
        m = _moments(a.images[i].mean(axis=0))
        assert abs(normalized_to_pixel(m.x.item(), 64) - row.x_pix) < 0.3
        assert abs(normalized_to_pixel(m.y.item(), 64) - row.y_pix) < 0.3
    assert make_xyrcs(2, seed=0, channels=1).images.shape == (2, 1, 64, 64)


def test_dsprites_factor_grid():
    d = make_dsprites(64, seed=1)
    assert d.images.shape == (64, 1, 64, 64) and d.images.dtype == np.uint8
    assert set(np.unique(d.images)) == {0, 255}  # uint8 / 255 is [0, 1] everywhere in the pipeline
    f = d.factors
    assert np.isin(f.scale, DSPRITES_SCALES).all() and len(DSPRITES_SCALES) == 6
    assert DSPRITES_SCALES[0] == 0.5 and DSPRITES_SCALES[-1] == 1.0
    assert len(DSPRITES_ROTATIONS_DEG) == 40 and DSPRITES_ROTATIONS_DEG.max() < 360.0
    assert len(DSPRITES_POSITIONS) == 32 and DSPRITES_POSITIONS[0] == 0.0 and DSPRITES_POSITIONS[-1] == 1.0
    assert np.isin(f.rotation_deg, DSPRITES_ROTATIONS_DEG).all()
    assert set(f["shape"]) <= {"square", "ellipse", "heart"}
    assert (d.images.reshape(64, -1).sum(axis=1) > 10).all()
    assert ROTATIONAL_SYMMETRY_DEG["square"] == 90 and ROTATIONAL_SYMMETRY_DEG["heart"] == 360


@pytest.mark.parametrize("shape", ["rectangle", "ellipse"])
@pytest.mark.parametrize("rotation", [0.0, 20.0, 63.0, 117.0, 150.0, 243.0])
def test_elongated_shapes_turn_counter_clockwise_as_displayed(shape, rotation):
    half = 10.0 if shape == "rectangle" else 12.0
    img = rasterize(shape, 30.2, 33.7, rotation, half)
    m = _moments(img)
    assert angle_diff_180(math.degrees(m.theta.item()), rotation) < 1.0
    # by eye: at 45 deg (CCW as displayed) the long axis runs from lower left to upper right
    diag = rasterize(shape, 31.5, 31.5, 45.0, half)
    assert diag[26, 37] > 0.5 and diag[37, 26] > 0.5 and diag[26, 26] < 0.5


@pytest.mark.parametrize("rotation", [0.0, 45.0, 130.0, 270.0])
def test_heart_has_a_head_and_tail(rotation):
    """The heart's lobes point up (+90 deg CCW) at rotation 0 and turn with the factor over 360 deg."""
    img = rasterize("heart", 31.5, 31.5, rotation, 14.0)
    angle, length = com_orientation(torch.from_numpy(img)[None])
    assert length.item() > 0.02
    diff = (math.degrees(angle.item()) - (90.0 + rotation)) % 360.0
    assert min(diff, 360.0 - diff) < 2.0


def test_load_dsprites_npz(tmp_path):
    d = make_dsprites(5, seed=2)
    f = d.factors
    values = np.stack([np.ones(5), f.shape_id + 1, f.scale, np.deg2rad(f.rotation_deg), f.pos_x, f.pos_y], axis=1)
    classes = np.stack([np.zeros(5), f.shape_id, f.scale_class, f.rotation_class, f.pos_x_class,
                        f.pos_y_class], axis=1).astype(np.int64)
    path = tmp_path / "dsprites_ndarray_tiny.npz"
    np.savez(path, imgs=(d.images[:, 0] // 255).astype(np.uint8), latents_values=values, latents_classes=classes)
    got = load_dsprites_npz(path)
    np.testing.assert_array_equal(got.images, d.images)
    np.testing.assert_allclose(got.factors.orientation, values[:, 3])
    assert list(got.factors.shape_class) == list(f.shape_id)
    sub = load_dsprites_npz(path, indices=np.array([3, 1]))
    np.testing.assert_array_equal(sub.images, d.images[[3, 1]])
    np.savez(tmp_path / "grey.npz", imgs=d.images[:, 0], latents_values=values, latents_classes=classes)
    with pytest.raises(BadInputError, match="should be binary"):
        load_dsprites_npz(tmp_path / "grey.npz")
    np.savez(tmp_path / "bad.npz", imgs=d.images[:, 0])
    with pytest.raises(BadInputError, match="missing latents_values"):
        load_dsprites_npz(tmp_path / "bad.npz")
