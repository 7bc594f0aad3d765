"""Baselines: build, shapes, training through the shared loop, checkpoints, pose conventions."""

from __future__ import annotations

import csv
import math

import pytest
import torch

from pipeline.checkpoint import load_model, save_checkpoint
from pipeline.config import ModelConfig, RunConfig
from pipeline.data.memory import ArrayDataset
from pipeline.model import build_model, model_state_dict
from pipeline.model.output import ModelOutput
from pipeline.train import train
from tests.conftest import gaussian_ellipses

KINDS = ("beta-vae", "dae", "spatial-vae", "target-vae", "irl-inr")
POSE_KINDS = ("spatial-vae", "target-vae", "irl-inr")
SMALL = ModelConfig(image_size=32, channels=3, widths=(2, 4, 4), kernels=(5, 3, 3), latent_dim=3, hidden=32,
                    decoder_width=8, group_order=4, kl_weight=1.0)


def _cfg(kind: str, **model) -> ModelConfig:
    return RunConfig(model=SMALL).replace(model={"kind": kind, **model}).model


@pytest.fixture(scope="module")
def data() -> ArrayDataset:
    imgs, _ = gaussian_ellipses(48, size=32, seed=3, max_shift=4)
    return ArrayDataset(imgs)


@pytest.mark.parametrize("kind", KINDS)
def test_forward_shapes_and_flags(kind):
    torch.manual_seed(0)
    model = build_model(_cfg(kind))
    images = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        out = model(images)
    assert isinstance(out, ModelOutput)
    assert out.same_view.shape == out.aligned.shape == (4, 3, 32, 32)
    assert out.z.shape == (4, 3) and out.x.shape == out.y.shape == out.theta.shape == (4,)
    assert out.direction.shape == (4, 2)
    assert float(out.same_view.min()) >= 0.0 and float(out.same_view.max()) <= 1.0
    assert model.uses_moment_loss is False
    assert model.has_pose == (kind in POSE_KINDS)
    for name, term in out.extra_loss.items():
        assert term.dim() == 0 and torch.isfinite(term), name
    assert model.decode_aligned(out.z).shape == (4, 3, 32, 32)
    if kind not in POSE_KINDS:
        assert torch.equal(out.aligned, out.same_view) and float(out.theta.abs().max()) == 0.0
    model.eval()
    with torch.no_grad():
        a, b = model(images), model(images)
    assert torch.equal(a.z, b.z) and torch.equal(a.theta, b.theta)  # eval: means, deterministic


@pytest.mark.parametrize("kind", KINDS)
def test_trains_through_the_shared_loop_and_checkpoint_round_trips(kind, data, tmp_path):
    cfg = RunConfig(model=_cfg(kind)).replace(train={"batch_size": 16, "max_steps": 100, "max_epochs": 100,
                                                     "log_every": 1, "lr": 3e-3, "seed": 1})
    res = train(cfg, data, tmp_path / "run", progress=False, stop_after_steps=6)  # no end-of-run figures
    assert res.steps == 6
    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    recon = [float(r["reconstruction"]) for r in rows]
    assert sum(recon[-2:]) < sum(recon[:2]), recon  # the reconstruction improves
    assert all(float(r["beta"]) == 0.0 for r in rows)  # no moment loss for baselines
    if kind in ("beta-vae", "spatial-vae", "target-vae"):
        assert float(rows[-1]["regularizer"]) > 0.0  # the KL arrives through extra_loss
    model, state = load_model(tmp_path / "run" / "checkpoint.pt")
    assert state["config"].model.kind == kind
    images = torch.stack([data[i][0] for i in range(8)])
    save_checkpoint({"config": state["config"].to_dict(), "model": model_state_dict(model)}, tmp_path / "again.pt")
    again, _ = load_model(tmp_path / "again.pt")
    with torch.no_grad():
        out, out2 = model(images), again(images)
    assert torch.allclose(out.same_view, out2.same_view, atol=1e-6)
    assert torch.allclose(out.z, out2.z, atol=1e-6)


@pytest.mark.parametrize("kind", POSE_KINDS)
def test_generator_turns_the_template_ccw_as_displayed_and_moves_it(kind):
    """A rotation latent of +90 degrees draws the template turned counter-clockwise as displayed
    (torch.rot90 with k=1 on (H, W), row 0 on top); x = +0.25 moves it 4 pixels right, y = +0.25 down."""
    torch.manual_seed(0)
    model = build_model(_cfg(kind)).eval()
    z = 10 * torch.randn(2, 3)  # far from 0 so that even IRL-INR's near-flat initial INR has structure
    zero = torch.zeros(2)
    with torch.no_grad():
        template = model.draw(z, zero, zero, zero)
        turned = model.draw(z, torch.full((2,), math.pi / 2), zero, zero)
        right = model.draw(z, zero, torch.full((2,), 0.25), zero)
        down = model.draw(z, zero, zero, torch.full((2,), 0.25))
    assert torch.allclose(turned, torch.rot90(template, 1, dims=(-2, -1)), atol=1e-5)
    assert not torch.allclose(turned, torch.rot90(template, -1, dims=(-2, -1)), atol=1e-3)
    assert torch.allclose(right[..., 4:], template[..., :-4], atol=1e-5)
    assert torch.allclose(down[..., 4:, :], template[..., :-4, :], atol=1e-5)
    with torch.no_grad():
        assert torch.allclose(model.decode_aligned(z), template)


def test_target_vae_rotation_channels_follow_ccw_turns():
    """Turning the input 90 degrees CCW rolls the attention by N/4 rotation bins and turns its map,
    so the inferred theta grows by 90 degrees."""
    torch.manual_seed(0)
    model = build_model(_cfg("target-vae")).eval()
    images = torch.rand(3, 3, 32, 32)
    turned_in = torch.rot90(images, 1, dims=(-2, -1))
    with torch.no_grad():
        a, b = model.attention(images), model.attention(turned_in)
        side = model.side
        la = a["logits"].view(3, 4, side, side)
        lb = b["logits"].view(3, 4, side, side)
        assert torch.allclose(lb, torch.rot90(torch.roll(la, 1, dims=1), 1, dims=(-2, -1)), atol=1e-4)
        ta, tb = model(images).theta, model(turned_in).theta
    diff = torch.remainder(torch.rad2deg(tb - ta), 360.0)
    assert torch.allclose(diff, torch.full_like(diff, 90.0), atol=1e-2), diff


def test_centred_models_have_no_translation():
    torch.manual_seed(0)
    for kind in POSE_KINDS:
        model = build_model(_cfg(kind, learn_centroid=False)).eval()
        with torch.no_grad():
            out = model(torch.rand(2, 3, 32, 32))
        assert float(out.x.abs().max()) == 0.0 and float(out.y.abs().max()) == 0.0, kind
