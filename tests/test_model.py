"""CODAE model: equivariance, outputs, checkpoint round trip, export."""

from __future__ import annotations

import math

import pytest
import torch

from pipeline.checkpoint import load_checkpoint, load_model, save_checkpoint
from pipeline.config import ModelConfig, RunConfig
from pipeline.errors import BadInputError, ConfigError
from pipeline.model import CODAE, load_model_state, model_state_dict

SMALL = ModelConfig(image_size=32, widths=(2, 4, 4), kernels=(5, 3, 3), latent_dim=4, hidden=32, decoder_width=8)


@pytest.fixture(scope="module")
def model() -> CODAE:
    torch.manual_seed(0)
    m = CODAE(ModelConfig())
    # a few training-mode passes so batch-norm statistics are not the identity
    with torch.no_grad():
        for _ in range(3):
            m(torch.rand(8, 3, 64, 64))
    return m.eval()


@pytest.mark.parametrize("k", [1, 2, 3])
def test_z_is_invariant_to_quarter_turns(model, k):
    x = torch.rand(4, 3, 64, 64)
    with torch.no_grad():
        z0 = model(x).z
        zk = model(torch.rot90(x, k, dims=(2, 3))).z
    assert (z0 - zk).abs().max().item() < 1e-4


@pytest.mark.parametrize("k", [1, 2, 3])
def test_equivariant_maps_turn_with_the_input(model, k):
    """Rotating the input by k quarter turns rotates the maps spatially and shifts each regular
    field's N channels cyclically by k N / 4 (e2cnn's regular representation of C_N)."""
    n = model.config.group_order
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        e0, _ = model.trunk(x)
        ek, _ = model.trunk(torch.rot90(x, k, dims=(2, 3)))
    b, c, h, w = e0.shape
    expected = torch.rot90(e0, k, dims=(2, 3)).view(b, c // n, n, h, w).roll(k * n // 4, dims=2).view(b, c, h, w)
    assert (ek - expected).abs().max().item() < 1e-4
    assert (ek - torch.rot90(e0, k, dims=(2, 3))).abs().max().item() > 1e-3  # the channel shift is real


def test_outputs_shapes_and_ranges(model):
    with torch.no_grad():
        out = model(torch.rand(5, 3, 64, 64))
    assert out.z.shape == (5, model.config.latent_dim)
    assert out.aligned.shape == out.same_view.shape == (5, 3, 64, 64)
    assert out.x.abs().max() <= 1 and out.y.abs().max() <= 1
    assert torch.allclose(out.direction.norm(dim=1), torch.ones(5), atol=1e-5)
    assert torch.allclose(torch.cos(out.theta), out.direction[:, 0], atol=1e-5)
    assert 0.0 <= out.aligned.min() and out.aligned.max() <= 1.0


def test_centred_data_option_fixes_the_centroid():
    m = CODAE(ModelConfig(image_size=32, widths=(2, 4, 4), kernels=(5, 3, 3), learn_centroid=False)).eval()
    with torch.no_grad():
        out = m(torch.rand(3, 3, 32, 32))
    assert out.x.abs().max() == 0 and out.y.abs().max() == 0


def test_checkpoint_round_trip_in_train_mode(tmp_path):
    torch.manual_seed(1)
    m = CODAE(SMALL).eval()
    state = model_state_dict(m)
    assert not any(k.endswith(".filter") for k in state)  # no cached eval-mode filters
    save_checkpoint({"config": RunConfig(model=SMALL).to_dict(), "model": state}, tmp_path / "c.pt")
    m2, ck = load_model(tmp_path / "c.pt")
    assert ck["config"].model == SMALL
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        a, b = m(x), m2(x)
    assert torch.allclose(a.z, b.z, atol=1e-6) and torch.allclose(a.same_view, b.same_view, atol=1e-6)
    assert not (tmp_path / ".c.pt.tmp").exists()


def test_mismatched_checkpoint_is_one_clear_error(tmp_path):
    m = CODAE(SMALL)
    other = CODAE(ModelConfig(image_size=32, widths=(2, 4, 4), kernels=(5, 3, 3), latent_dim=6, hidden=32,
                              decoder_width=8))
    with pytest.raises(BadInputError, match="does not match the model configuration"):
        load_model_state(other, model_state_dict(m))


def test_corrupt_checkpoint_is_one_clear_error(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(BadInputError, match="not a (readable )?galaxy-codae checkpoint"):
        load_checkpoint(bad)
    with pytest.raises(BadInputError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "missing.pt")
    truncated = tmp_path / "trunc.pt"
    save_checkpoint({"config": RunConfig(model=SMALL).to_dict(), "model": model_state_dict(CODAE(SMALL))}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:1000])
    with pytest.raises(BadInputError, match="not a readable"):
        load_checkpoint(truncated)


def test_exported_model_matches(model):
    exported = load_model_state(CODAE(model.config), model_state_dict(model)).export()
    e2cnn_layers = {"R2Conv", "RegularBatchNorm", "SequentialModule", "GroupPooling", "PointwiseMaxPool", "ReLU"}
    assert not any(isinstance(mod, torch.nn.Module) and type(mod).__name__ in e2cnn_layers
                   and type(mod).__module__.startswith(("e2cnn", "pipeline.model.batchnorm"))
                   for mod in exported.modules())
    x = torch.rand(3, 3, 64, 64)
    with torch.no_grad():
        a, b = model(x), exported(x)
    assert torch.allclose(a.z, b.z, atol=1e-4)
    assert torch.allclose(a.theta, b.theta, atol=1e-4)
    assert torch.allclose(a.same_view, b.same_view, atol=1e-4)


def test_config_is_strict(tmp_path):
    from pipeline.config import load_config, save_config

    cfg = RunConfig().replace(train={"max_epochs": 3})
    save_config(cfg, tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == cfg
    (tmp_path / "bad.yaml").write_text("model:\n  latent_dims: 4\n")
    with pytest.raises(ConfigError, match="unknown config key model.latent_dims"):
        load_config(tmp_path / "bad.yaml")
    (tmp_path / "bad2.yaml").write_text("train:\n  lr: fast\n")
    with pytest.raises(ConfigError, match="train.lr: expected a number"):
        load_config(tmp_path / "bad2.yaml")
    (tmp_path / "exp.yaml").write_text("train:\n  lr: 3e-4\n")  # a string to PyYAML, a number to us
    assert load_config(tmp_path / "exp.yaml").train.lr == 3e-4
    (tmp_path / "bad3.yaml").write_text("train:\n  lr: 3e-4x\n")
    with pytest.raises(ConfigError, match="train.lr: expected a number"):
        load_config(tmp_path / "bad3.yaml")
    with pytest.raises(ConfigError, match="kernels must be odd"):
        ModelConfig(kernels=(4, 5, 3, 3))
    assert math.isclose(RunConfig().loss.beta_start, 1.0)


def test_cuda_batch_norm_path_equals_the_native_one():
    """The var_mean batch norm used on CUDA gives the native kernel's outputs and running statistics."""
    from pipeline.model.batchnorm import FieldBatchNorm2d, var_mean_batch_norm

    torch.manual_seed(0)
    native = FieldBatchNorm2d(4, 8)
    native.bn.weight.data.uniform_(0.5, 1.5)
    native.bn.bias.data.normal_()
    fast = FieldBatchNorm2d(4, 8)
    fast.load_state_dict(native.state_dict())
    x = torch.randn(6, 32, 5, 5)
    y_native = native(x)
    y_fast = var_mean_batch_norm(x, fast.bn, 8, training=True)
    assert (y_native - y_fast).abs().max() < 1e-5
    assert torch.allclose(native.bn.running_mean, fast.bn.running_mean, atol=1e-6)
    assert torch.allclose(native.bn.running_var, fast.bn.running_var, atol=1e-6)
    native.eval()
    assert (native(x) - var_mean_batch_norm(x, fast.bn, 8, training=False)).abs().max() < 1e-5


@pytest.mark.parametrize("k", [1, 2, 3])
def test_learned_centroid_turns_with_the_image(model, k):
    """The learned first moment is rotation-equivariant: a quarter turn CCW (as displayed) maps
    (x, y) -> (y, -x) in the normalised y-down frame."""
    x = torch.rand(3, 3, 64, 64)
    with torch.no_grad():
        *_, first = model.trunk(x, with_stem=True)
        x0, y0 = model.centroid(x, first)
        *_, first_k = model.trunk(torch.rot90(x, k, dims=(2, 3)), with_stem=True)
        xk, yk = model.centroid(torch.rot90(x, k, dims=(2, 3)), first_k)
    ex, ey = x0, y0
    for _ in range(k):
        ex, ey = ey, -ex
    assert (xk - ex).abs().max() < 1e-4 and (yk - ey).abs().max() < 1e-4


def test_learned_centroid_starts_at_the_moment_centroid_of_an_off_centre_object():
    """An untrained model's centroid is the sky-subtracted first moment of an isolated object,
    however far it sits from the frame centre: the dark sky weighs nothing (a per-pixel softplus
    weight made the sky pull every estimate towards the centre), and the window iterated onto the
    object does not move a symmetric object's centroid."""
    from pipeline.moments import image_moments, subtract_background

    torch.manual_seed(0)
    net = CODAE(ModelConfig(image_size=64, channels=1, widths=(4, 4, 8, 8), latent_dim=2))
    images = torch.zeros(4, 1, 64, 64)
    for i, (r, c) in enumerate([(10, 12), (50, 45), (30, 55), (8, 40)]):
        images[i, 0, r - 3:r + 4, c - 2:c + 3] = 0.8
    with torch.no_grad():
        *_, first = net.trunk(images, with_stem=True)
        x0, y0 = net.centroid(images, first)
    m = image_moments(subtract_background(images))
    assert (x0 - m.x).abs().max() < 1e-4 and (y0 - m.y).abs().max() < 1e-4
    # and those are the pixel centres: column c maps to (2 c + 1) / 64 - 1
    assert abs(float(x0[1]) - ((2 * 45 + 1) / 64 - 1)) < 1e-4


def test_learned_centroid_learns_to_ignore_a_companion_the_moment_centroid_follows():
    """The learned first moment is trained, not only initialised: on galaxies with a bright
    point-like companion (which pulls the sky-subtracted moment centroid towards it), a few
    optimiser steps on the centroid and the stem it reads bring it well below the moment
    centroid's error.  A centroid that stayed the plain first moment could not."""
    from pipeline.moments import image_moments, subtract_background

    torch.manual_seed(0)
    net = CODAE(ModelConfig(image_size=32, channels=1, widths=(4, 4, 8), kernels=(5, 3, 3), latent_dim=2, hidden=16,
                            decoder_width=8, centroid_window=False)).train()  # learning alone, no window
    g = torch.Generator().manual_seed(1)
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    images, centres = [], []
    for _ in range(8):
        cx, cy = (12 + 8 * torch.rand(2, generator=g)).tolist()
        sx, sy = (4 + 24 * torch.rand(2, generator=g)).tolist()
        galaxy = 0.6 * torch.exp(-(((xx - cx) / 3.5) ** 2 + ((yy - cy) / 2.5) ** 2) / 2)
        star = torch.exp(-((xx - sx) ** 2 + (yy - sy) ** 2) / 2)
        images.append((galaxy + star).clamp(0, 1)[None])
        centres.append([(2 * cx + 1) / 32 - 1, (2 * cy + 1) / 32 - 1])  # normalised frame, y down
    images, target = torch.stack(images), torch.tensor(centres)  # (8, 1, 32, 32), (8, 2)
    m = image_moments(subtract_background(images))
    moment_err = torch.hypot(m.x - target[:, 0], m.y - target[:, 1]).mean()
    opt = torch.optim.Adam([*net.centroid.parameters(), *net.trunk.parameters()], lr=3e-2)
    for _ in range(10):
        *_, first = net.trunk(images, with_stem=True)
        x0, y0 = net.centroid(images, first)
        loss = ((x0 - target[:, 0]) ** 2 + (y0 - target[:, 1]) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        *_, first = net.trunk(images, with_stem=True)
        x0, y0 = net.centroid(images, first)
    learned_err = torch.hypot(x0 - target[:, 0], y0 - target[:, 1]).mean()
    assert moment_err * 16 > 0.4  # pixels: the companion does pull the moment centroid
    assert learned_err < 0.5 * moment_err, (float(learned_err) * 16, float(moment_err) * 16)


def test_untrained_centroid_window_ignores_a_star_the_moment_centroid_follows():
    """The window iterated onto the target (XWIN-like) keeps a bright star off the target from
    pulling the untrained model's centroid; without the window it is the plain first moment, which
    the star pulls by pixels.  The window turns with the image: a quarter turn turns the estimate."""
    from pipeline.moments import image_moments, subtract_background

    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    images, centres = [], []
    g = torch.Generator().manual_seed(3)
    for _ in range(6):
        cx, cy = (29 + 6 * torch.rand(2, generator=g)).tolist()
        ang = float(2 * math.pi * torch.rand(1, generator=g))
        sx, sy = cx + 18 * math.cos(ang), cy + 18 * math.sin(ang)
        galaxy = 0.5 * torch.exp(-(((xx - cx) / 5.0) ** 2 + ((yy - cy) / 3.0) ** 2) / 2)
        star = 0.9 * torch.exp(-((xx - sx) ** 2 + (yy - sy) ** 2) / (2 * 1.2 ** 2))
        images.append((0.05 + galaxy + star).clamp(0, 1)[None])
        centres.append([(2 * cx + 1) / 64 - 1, (2 * cy + 1) / 64 - 1])
    images, target = torch.stack(images), torch.tensor(centres)
    errs = {}
    for window in (True, False):
        torch.manual_seed(0)
        net = CODAE(ModelConfig(image_size=64, channels=1, widths=(4, 4, 8, 8), latent_dim=2, centroid_window=window))
        with torch.no_grad():
            *_, first = net.trunk(images, with_stem=True)
            x0, y0 = net.centroid(images, first)
            errs[window] = float(torch.hypot(x0 - target[:, 0], y0 - target[:, 1]).median()) * 32  # pixels
            if window:
                *_, first_t = net.trunk(torch.rot90(images, 1, dims=(2, 3)), with_stem=True)
                xt, yt = net.centroid(torch.rot90(images, 1, dims=(2, 3)), first_t)
                # rot90 (k=1) of the displayed image: (x, y) -> (y, -x) in the normalised frame, y down
                assert (xt - y0).abs().max() < 1e-4 and (yt + x0).abs().max() < 1e-4
    m = image_moments(subtract_background(images))
    plain = float(torch.hypot(m.x - target[:, 0], m.y - target[:, 1]).median()) * 32
    assert abs(errs[False] - plain) < 1e-3  # without the window: the plain first moment
    assert plain > 2.0, plain  # the star pulls the moments by pixels
    assert errs[True] < 0.1 * plain, errs
