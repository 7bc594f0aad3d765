"""The CODAE objective's moment prior: second-moment axis (the paper's) and the shape harmonics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pipeline.config import LossConfig
from pipeline.errors import ConfigError
from pipeline.loss import aligned_term, codae_loss, moment_targets
from pipeline.model.output import ModelOutput
from pipeline.moments import harmonic_orientation, image_moments, subtract_background
from pipeline.simulate.shapes import rasterize

SHAPES_CFG = LossConfig(orientation_orders=(2, 3, 4))


def _images(shape: str, turns_deg, x: float = 30.0, y: float = 34.0) -> torch.Tensor:
    """(B, 1, 64, 64) images of one shape at the given CCW turns."""
    return torch.stack([torch.from_numpy(rasterize(shape, x, y, d, 10.0)) for d in turns_deg])[:, None].float()


def _output(images: torch.Tensor, theta: torch.Tensor) -> ModelOutput:
    """A model output that reproduces the images exactly and predicts ``theta`` (radians)."""
    b = images.shape[0]
    zero = torch.zeros(b)
    return ModelOutput(x=zero, y=zero, theta=theta, direction=torch.stack([torch.cos(theta), torch.sin(theta)], 1),
                       z=torch.zeros(b, 1), aligned=images, same_view=images)


def test_harmonic_orientation_of_order_two_is_the_moment_axis():
    imgs = _images("rectangle", [0.0, 35.0, 100.0, 170.0])
    signal = subtract_background(imgs)
    h, m = harmonic_orientation(signal, (2,)), image_moments(signal)
    assert torch.all(h.order == 2)
    d = torch.remainder(h.theta - m.theta + math.pi / 2, math.pi) - math.pi / 2
    assert d.abs().max().item() < 1e-4
    assert torch.allclose(h.strength, m.anisotropy, atol=1e-4)


@pytest.mark.parametrize("shape,order,period,offset", [("triangle", 3, 120.0, 0.0), ("square", 4, 90.0, 45.0),
                                                        ("rectangle", 2, 180.0, 0.0)])
def test_harmonic_orientation_follows_the_turn_of_each_shape(shape, order, period, offset):
    """The strongest order names the shape's symmetry, and its angle turns with the shape,
    modulo that symmetry.  At turn 0 the shapes have a vertex / a side's normal / the long axis
    on +x; the order-4 phase of a square points at a corner (the farthest pixels), 45 degrees."""
    turns = np.array([0.0, 17.0, 50.0, 133.0, 250.0])
    h = harmonic_orientation(subtract_background(_images(shape, turns)), (2, 3, 4))
    assert torch.all(h.order == order)
    assert torch.all(h.strength > 0.3)
    err = np.angle(np.exp(1j * order * (h.theta.numpy() - np.deg2rad(turns + offset))), deg=True) / order
    assert np.abs(err).max() < 1.0  # degrees
    assert np.all(h.theta.numpy() < np.deg2rad(period) + 1e-6)


def test_default_prior_is_the_papers_doubled_angle_axis():
    """orientation_orders (2,): the target is the moment axis, a half-turn costs nothing, a
    quarter-turn costs twice the anisotropy."""
    cfg = LossConfig()
    imgs = _images("rectangle", [40.0, 40.0, 40.0])
    t = moment_targets(imgs, cfg)
    assert torch.all(t.order == 2)
    theta = t.theta + torch.tensor([0.0, math.pi, math.pi / 2])
    terms = [codae_loss(_output(imgs[i:i + 1], theta[i:i + 1]), imgs[i:i + 1], moment_targets(imgs[i:i + 1], cfg),
                        1.0, cfg).orientation.item() for i in range(3)]
    assert terms[0] < 1e-6 and terms[1] < 1e-6
    assert terms[2] == pytest.approx(2.0 * t.weight[2].item(), rel=1e-4)


def test_triangles_are_anchored_modulo_a_third_turn():
    """Second moments of a triangle are round (no anchor); order 3 anchors it mod 120 degrees."""
    imgs = _images("triangle", [25.0])
    assert moment_targets(imgs, LossConfig()).weight.item() < 0.05  # the paper's prior cannot see it
    t = moment_targets(imgs, SHAPES_CFG)
    assert t.order.item() == 3 and t.weight.item() > 0.5
    assert math.degrees(t.theta.item()) == pytest.approx(25.0, abs=1.0)

    def term(offset_deg: float) -> float:
        theta = t.theta + math.radians(offset_deg)
        return codae_loss(_output(imgs, theta), imgs, t, 1.0, SHAPES_CFG).orientation.item()

    assert term(0.0) < 1e-6 and term(120.0) < 1e-6 and term(240.0) < 1e-6
    assert term(60.0) == pytest.approx(2.0 * t.weight.item(), rel=1e-4)
    assert term(180.0) > 1.0  # a half-turn is not a symmetry of a triangle


def test_aligned_term_wants_the_strongest_harmonic_at_phase_zero():
    """A triangle with a vertex on +x is aligned; turned by 60 degrees it is as far off as can be.
    With the default orders the term is the moment-axis one, blind to triangles."""
    on_axis, off_axis = _images("triangle", [0.0], 32.0, 32.0), _images("triangle", [60.0], 32.0, 32.0)
    a0, a60 = aligned_term(on_axis, SHAPES_CFG).item(), aligned_term(off_axis, SHAPES_CFG).item()
    assert a0 < 0.01 and a60 > 0.5
    assert abs(aligned_term(on_axis, LossConfig()).item() - aligned_term(off_axis, LossConfig()).item()) < 0.01
    rect = _images("rectangle", [30.0], 32.0, 32.0)
    signal = subtract_background(rect)
    m = image_moments(signal)
    expected = (m.x ** 2 + m.y ** 2 + m.anisotropy * (1.0 - torch.cos(2.0 * m.theta))).item()
    assert aligned_term(rect, SHAPES_CFG).item() == pytest.approx(expected, rel=1e-3)
    assert aligned_term(rect, LossConfig()).item() == pytest.approx(expected, rel=1e-5)


def test_aligned_term_has_gradients_for_a_triangle():
    img = _images("triangle", [60.0], 32.0, 32.0).requires_grad_(True)
    aligned_term(img, SHAPES_CFG).backward()
    assert torch.isfinite(img.grad).all() and img.grad.abs().sum() > 0


@pytest.mark.parametrize("orders", [(), (1,), (2, 9)])
def test_orientation_orders_are_checked(orders):
    with pytest.raises(ConfigError, match="orientation_orders"):
        LossConfig(orientation_orders=orders)
