"""The one pose transform and the image moments, against analytic truth."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pipeline.conventions import (
    angle_diff_180,
    cutout_to_store_pixels,
    fits_to_display,
    normalized_to_pixel,
    pa_to_theta,
    pixel_to_normalized,
    store_to_cutout_pixels,
    theta_to_pa,
)
from pipeline.geometry import align_to_pose, warp_to_view
from pipeline.moments import com_orientation, image_moments, subtract_background
from tests.conftest import gaussian_ellipses


def test_pa_formula_and_inverse():
    assert theta_to_pa(90.0) == pytest.approx(0.0)  # major axis pointing up (north)
    assert theta_to_pa(180.0) == pytest.approx(90.0)  # pointing left (east for east-left cutouts)
    assert theta_to_pa(0.0) == pytest.approx(90.0)
    assert theta_to_pa(135.0) == pytest.approx(45.0)  # up-left: north-east
    t = np.linspace(0, 359, 50)
    assert np.all(angle_diff_180(pa_to_theta(theta_to_pa(t)), t) < 1e-9)


def test_pixel_frames_round_trip():
    p = np.array([0.0, 31.5, 63.0])
    assert np.allclose(normalized_to_pixel(pixel_to_normalized(p, 64), 64), p)
    assert pixel_to_normalized(31.5, 64) == pytest.approx(0.0)  # centre of an even image
    q = store_to_cutout_pixels(p, crop_start=106, crop_size=212, size=64)
    assert np.allclose(cutout_to_store_pixels(q, crop_start=106, crop_size=212, size=64), p)
    # the store's centre maps to the cutout's centre
    assert store_to_cutout_pixels(31.5, crop_start=106, crop_size=212, size=64) == pytest.approx(211.5)


def test_fits_rows_flip_to_display_order():
    a = np.arange(12).reshape(3, 4)
    assert fits_to_display(a)[0].tolist() == a[-1].tolist()


def _moments_of(imgs: np.ndarray):
    t = torch.from_numpy(imgs).float() / 255.0
    return image_moments(subtract_background(t))


def test_moments_recover_centroid_and_angle_of_ellipses():
    imgs, truth = gaussian_ellipses(40, seed=5, sky=0.1)
    m = _moments_of(imgs)
    x = normalized_to_pixel(m.x.numpy(), 64)
    y = normalized_to_pixel(m.y.numpy(), 64)
    assert np.max(np.hypot(x - truth["x_pix"], y - truth["y_pix"])) < 0.1
    err = angle_diff_180(np.rad2deg(m.theta.numpy()), truth["theta_deg"])
    assert np.all(truth["axis_ratio"] <= 0.7)
    assert np.max(err) < 0.5
    assert np.allclose(m.axis_ratio.numpy(), truth["axis_ratio"], atol=0.05)
    assert np.all(m.anisotropy.numpy() > 0.3)


def test_moment_angle_is_counter_clockwise_as_displayed():
    # a bar from bottom-left to top-right as displayed: 45 degrees CCW, not 135
    img = np.zeros((1, 1, 64, 64), dtype=np.uint8)
    for k in range(-20, 21):
        img[0, 0, 32 - k, 32 + k] = 255
    m = _moments_of(img)
    assert math.degrees(m.theta.item()) == pytest.approx(45.0, abs=0.5)


def test_com_orientation_of_shifted_blob():
    yy, xx = np.mgrid[0:64, 0:64]
    blob = np.exp(-((xx - 42.5) ** 2 + (yy - 20.5) ** 2) / 20.0)  # right and up of centre (31.5, 31.5)
    angle, mag = com_orientation(torch.from_numpy(blob)[None].float())
    assert math.degrees(angle.item()) == pytest.approx(45.0, abs=0.5)
    assert mag.item() == pytest.approx(math.hypot(11, 11) * 2 / 64, rel=0.02)


def test_warp_direction_matches_contract():
    # aligned bar along +x; warping by theta = 90 degrees must point it up as displayed
    aligned = torch.zeros(1, 1, 64, 64)
    aligned[0, 0, 31:33, 32:60] = 1.0  # right half only: a direction, not just an axis
    up = warp_to_view(aligned, torch.tensor([math.pi / 2]), torch.zeros(1), torch.zeros(1), padding_mode="zeros")
    rows, cols = torch.nonzero(up[0, 0] > 0.5, as_tuple=True)
    assert rows.float().mean() < 25 and abs(cols.float().mean().item() - 31.5) < 2


def test_warp_then_align_returns_image_interior():
    imgs, _ = gaussian_ellipses(4, seed=2, max_shift=2)
    t = torch.from_numpy(imgs).float() / 255.0
    theta = torch.tensor([0.3, 1.0, 2.5, -1.2])
    x = torch.tensor([0.05, -0.1, 0.0, 0.08])
    y = torch.tensor([-0.04, 0.02, 0.1, 0.0])
    back = align_to_pose(warp_to_view(t, theta, x, y), theta, x, y)
    interior = (slice(None), slice(None), slice(16, 48), slice(16, 48))
    assert (back - t)[interior].abs().max() < 0.05
    assert (back - t)[interior].abs().mean() < 0.005


def test_moments_of_warped_image_follow_the_pose():
    aligned = torch.from_numpy(gaussian_ellipses(1, seed=0, max_shift=0)[0]).float() / 255.0
    m0 = image_moments(subtract_background(aligned))
    theta = torch.tensor([0.7])
    x, y = torch.tensor([0.1]), torch.tensor([-0.2])
    view = warp_to_view(aligned, theta - m0.theta, x, y)
    m = image_moments(subtract_background(view))
    assert m.x.item() == pytest.approx(0.1 + m0.x.item(), abs=0.01)
    assert m.y.item() == pytest.approx(-0.2 + m0.y.item(), abs=0.01)
    assert angle_diff_180(math.degrees(m.theta.item()), math.degrees(0.7)) < 0.5


def test_rotational_harmonics_name_the_shape_whatever_its_pose():
    """Order 2 is the moment anisotropy; a triangle has a strong order 3 and a square a strong
    order 4 at any turn and position; a disc has none."""
    from pipeline.moments import rotational_harmonics
    from pipeline.simulate.shapes import rasterize

    def harm(shape, x, y, deg):
        img = torch.from_numpy(rasterize(shape, x, y, deg, 10.0)).float()[None]
        return rotational_harmonics(subtract_background(img))[0].numpy()

    tri = [harm("triangle", x, y, d) for x, y, d in [(31.5, 31.5, 0.0), (20.0, 40.0, 37.0), (44.0, 25.0, 200.0)]]
    assert all(t[1] > 0.5 and t[0] < 0.05 and t[2] < 0.05 for t in tri)
    assert np.ptp([t[1] for t in tri]) < 0.03  # pose-free
    sq = harm("square", 30.0, 33.0, 25.0)
    assert sq[2] > 0.3 and sq[0] < 0.05 and sq[1] < 0.05
    assert np.all(harm("circle", 25.0, 35.0, 0.0) < 0.03)
    img = torch.from_numpy(rasterize("rectangle", 28.0, 36.0, 60.0, 10.0)).float()[None]
    signal = subtract_background(img)
    assert rotational_harmonics(signal, (2,))[0, 0].item() == pytest.approx(image_moments(signal).anisotropy.item(),
                                                                             abs=1e-5)
