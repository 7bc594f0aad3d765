"""Per-object pose errors: moment propagation against Monte Carlo, the model's ensemble, calibration, catalogue."""

from __future__ import annotations

import json
import math
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from astropy.io import fits

from catalogs.fits_io import read_catalog
from pipeline.cli import main
from pipeline.infer import infer_catalog, orientation_ill_defined
from pipeline.moments import image_moments, moment_errors, sky_level, sky_noise, subtract_background
from pipeline.predict import (
    CALIBRATION_FILE,
    DEFAULT_CALIBRATION,
    ErrorCalibration,
    _turn_back,
    calibration_for,
    coverage,
    fit_error_calibration,
    pose_spread,
    predict_batch,
    read_calibration,
    write_calibration,
)
from tests.conftest import fitsverify

SIZE = 64


def galaxy(theta_deg: float, q: float, *, amp: float = 0.5, sigma: float = 6.0, x0: float = 33.2, y0: float = 30.7,
           sky: float = 0.1) -> np.ndarray:
    """A noiseless elliptical Gaussian on a sky floor, (SIZE, SIZE), display frame, theta CCW as displayed."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    t = np.deg2rad(theta_deg)
    dx, dy = xx - x0, yy - y0
    u = dx * np.cos(t) - dy * np.sin(t)
    v = dx * np.sin(t) + dy * np.cos(t)
    return sky + amp * np.exp(-0.5 * ((u / sigma) ** 2 + (v / (q * sigma)) ** 2))


def axis_spread_deg(theta_rad: np.ndarray) -> float:
    """Circular standard deviation of axes (mod pi), degrees."""
    r = np.abs(np.mean(np.exp(2j * theta_rad)))
    return math.degrees(0.5 * math.sqrt(-2.0 * math.log(r)))


class MomentModel(torch.nn.Module):
    """Background-subtracted moments as a 'model': exactly equivariant under quarter turns."""

    has_pose = True

    def forward(self, images: torch.Tensor):
        m = image_moments(subtract_background(images))
        return SimpleNamespace(x=m.x, y=m.y, theta=m.theta)


class FixedAngleModel(MomentModel):
    """Moments for the centroid, a fixed theta whatever the image: not equivariant."""

    def forward(self, images: torch.Tensor):
        out = super().forward(images)
        out.theta = torch.full_like(out.x, 0.3)
        return out


# ---------------------------------------------------------------- moments: propagation against Monte Carlo


@pytest.mark.parametrize("q, amp, noise", [(0.5, 0.5, 0.02), (0.8, 0.5, 0.01)])
def test_moment_errors_match_the_spread_of_noise_redraws(q, amp, noise):
    rng = np.random.default_rng(0)
    clean = galaxy(30.0, q, amp=amp)
    n = 400
    images = torch.from_numpy(clean[None] + noise * rng.standard_normal((n, SIZE, SIZE))).float()
    m = image_moments(subtract_background(images))
    e = moment_errors(images, moments=m)
    stated_theta = math.degrees(float(e.theta.median()))
    measured_theta = axis_spread_deg(m.theta.numpy())
    assert 1.0 < measured_theta < 15.0  # a regime where a linear error applies
    assert stated_theta == pytest.approx(measured_theta, rel=0.2)
    for stated, values in ((e.x, m.x), (e.y, m.y)):
        assert float(stated.median()) == pytest.approx(float(values.std()), rel=0.2)


def test_sky_noise_is_the_noise_not_the_light_in_the_ring():
    rng = np.random.default_rng(6)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    wings = 0.1 + 0.3 * np.exp(-np.hypot(xx - 20.0, yy - 28.0) / 15.0)  # a big galaxy's light reaches the ring
    images = torch.from_numpy(wings[None] + 0.01 * rng.standard_normal((8, SIZE, SIZE))).float()
    _, ring_std = sky_level(images)
    assert float(ring_std.min()) > 0.02  # the ring's spread is mostly light
    np.testing.assert_allclose(sky_noise(images).numpy(), 0.01, rtol=0.1)


def test_moment_axis_error_grows_as_the_shape_turns_round_and_is_capped():
    imgs = torch.from_numpy(np.stack([galaxy(10.0, q, amp=0.15 / q) for q in (0.3, 0.6, 0.9)]))  # same flux
    rng = np.random.default_rng(1)
    imgs = (imgs + 0.02 * torch.from_numpy(rng.standard_normal(imgs.shape))).float()
    theta = moment_errors(imgs).theta.numpy()
    assert theta[0] < theta[1] < theta[2]
    round_ = torch.from_numpy(galaxy(0.0, 1.0) + 0.05 * rng.standard_normal((SIZE, SIZE)))[None].float()
    assert math.degrees(float(moment_errors(round_).theta[0])) <= 52.0
    empty = torch.full((1, SIZE, SIZE), 0.1)  # sky only, no signal
    assert torch.isnan(moment_errors(empty).theta).all()


# ---------------------------------------------------------------- the model's ensemble


def test_turn_back_undoes_a_quarter_turn():
    img = torch.from_numpy(galaxy(25.0, 0.4, x0=40.0, y0=22.0))[None, None].float()
    ref = image_moments(subtract_background(img))
    for k in range(4):
        m = image_moments(subtract_background(torch.rot90(img, k, dims=(-2, -1))))
        x, y, theta = _turn_back(m.x, m.y, m.theta, k)
        assert float(x) == pytest.approx(float(ref.x), abs=1e-5)
        assert float(y) == pytest.approx(float(ref.y), abs=1e-5)
        d = (float(theta) - float(ref.theta)) % math.pi
        assert min(d, math.pi - d) < 1e-4


def test_ensemble_spread_of_an_equivariant_model_is_the_noise_propagation():
    rng = np.random.default_rng(2)
    clean = np.stack([galaxy(t, 0.5) for t in (0.0, 40.0, 100.0, 150.0)])[:, None].repeat(3, axis=1)
    images = torch.from_numpy(clean + 0.02 * rng.standard_normal(clean.shape)).float()
    sx, sy, st = pose_spread(MomentModel(), images, 64, seeds=np.arange(4))
    e = moment_errors(images)
    # the ensemble adds the image's own noise level again: its spread is the propagated error
    np.testing.assert_allclose(st.numpy(), e.theta.numpy(), rtol=0.3)
    np.testing.assert_allclose(sx.numpy(), e.x.numpy(), rtol=0.3)
    np.testing.assert_allclose(sy.numpy(), e.y.numpy(), rtol=0.3)


def test_quarter_turns_expose_a_read_out_that_does_not_turn():
    clean = torch.from_numpy(np.stack([galaxy(40.0, 0.4)] * 2)[:, None].repeat(3, axis=1)).float()
    _, _, with_turns = pose_spread(FixedAngleModel(), clean, 4, seeds=np.arange(2))
    _, _, without = pose_spread(FixedAngleModel(), clean, 4, seeds=np.arange(2), quarter_turns=False)
    assert float(without.max()) < 1e-3  # the same fixed answer every draw
    assert float(with_turns.min()) > math.radians(40.0)  # 0, 90, 180, 270 turned back: half the axes off by 90


def test_predict_batch_errors_nan_without_ensemble_and_reproducible_with_seeds():
    rng = np.random.default_rng(3)
    clean = np.stack([galaxy(t, 0.5) for t in (10.0, 70.0)])[:, None].repeat(3, axis=1)
    images = torch.from_numpy(clean + 0.02 * rng.standard_normal(clean.shape)).float()
    none = predict_batch(_Wrapped(), images)
    assert np.isnan(none.theta_spread_deg).all() and np.isnan(none.x_spread_pix).all()
    assert np.isfinite(none.moment_theta_err_deg).all() and (none.moment_theta_err_deg > 0).all()
    a = predict_batch(_Wrapped(), images, error_samples=4, error_seeds=np.array([5, 6]))
    b = predict_batch(_Wrapped(), images[1:], error_samples=4, error_seeds=np.array([6]))
    assert a.theta_spread_deg[1] == pytest.approx(b.theta_spread_deg[0], rel=1e-5)
    assert (a.x_spread_pix > 0).all()
    with pytest.raises(ValueError, match="error_samples"):
        predict_batch(_Wrapped(), images, error_samples=1)


class _Wrapped(MomentModel):
    """MomentModel with the outputs predict_batch reads (same-view image and latents)."""

    def forward(self, images: torch.Tensor):
        out = super().forward(images)
        out.same_view = images
        out.z = torch.zeros(images.shape[0], 2)
        return out


# ---------------------------------------------------------------- calibration


def _fit(err: np.ndarray, spread: np.ndarray, **kw) -> ErrorCalibration:
    return fit_error_calibration(pa_abs_err_deg=err, pa_spread_deg=spread, x_abs_err_pix=err, x_spread_pix=spread,
                                 y_abs_err_pix=err, y_spread_pix=spread, samples=8, source="test", **kw)


def test_fit_recovers_the_scale_and_gives_0_68_coverage():
    rng = np.random.default_rng(4)
    spread = rng.uniform(0.5, 3.0, 4000)
    err = np.abs(rng.normal(0.0, 2.5 * spread))  # the real errors are 2.5 x the spread
    cal = _fit(err, spread, floor_quantile=0.0)
    assert cal.pa_scale == pytest.approx(2.5, rel=0.05) and cal.pa_floor_deg == 0.0
    assert coverage(err, cal.pa_err_deg(spread)) == pytest.approx(0.68, abs=0.01)
    fresh = np.abs(rng.normal(0.0, 2.5 * spread))
    assert coverage(fresh, cal.x_err_pix(spread)) == pytest.approx(0.68, abs=0.03)


def test_fitted_floor_keeps_coverage_even_across_the_spreads():
    rng = np.random.default_rng(5)
    spread = np.exp(rng.uniform(np.log(0.05), np.log(5.0), 8000))
    err = np.abs(rng.normal(0.0, np.hypot(2.0 * spread, 1.0)))  # a systematic 1.0 beside the noise
    low, high = spread < np.median(spread), spread >= np.median(spread)
    scale_only = _fit(err, spread, floor_quantile=0.0)
    st = scale_only.pa_err_deg(spread)
    assert coverage(err[low], st[low]) < 0.55 < 0.8 < coverage(err[high], st[high])  # one factor cannot do both
    cal = _fit(err, spread)
    st = cal.pa_err_deg(spread)
    assert 0.5 < cal.pa_floor_deg < 1.5 and cal.pa_scale == pytest.approx(2.0, rel=0.25)
    for part in (low, high):
        assert coverage(err[part], st[part]) == pytest.approx(0.68, abs=0.05)


def test_calibration_file_is_used_only_for_its_own_checkpoint(tmp_path):
    ckpt = tmp_path / "checkpoint.pt"
    ckpt.write_bytes(b"x")
    cal = ErrorCalibration(pa_scale=3.0, pa_floor_deg=0.5, x_scale=2.0, y_scale=2.1, xy_floor_pix=0.1, samples=8,
                           source="test", checkpoint_sha256="a" * 64)
    write_calibration(cal, tmp_path / CALIBRATION_FILE, coverage={"pa_err_deg": 0.68})
    back = read_calibration(tmp_path / CALIBRATION_FILE)
    assert back.pa_scale == 3.0 and back.y_scale == 2.1 and back.source.endswith(CALIBRATION_FILE)
    assert calibration_for(ckpt, "a" * 64).pa_scale == 3.0
    assert calibration_for(ckpt, "b" * 64) == DEFAULT_CALIBRATION
    data = json.loads((tmp_path / CALIBRATION_FILE).read_text())
    data["pa_scale"] = -1
    (tmp_path / CALIBRATION_FILE).write_text(json.dumps(data))
    with pytest.raises(Exception, match="unreadable error calibration"):
        read_calibration(tmp_path / CALIBRATION_FILE)


def test_flag_rule_uses_the_errors_and_the_axis_ratio_only_without_model_errors():
    q = np.array([0.5, 0.5, 0.5, 0.95, 0.95, 0.5, np.nan])
    moment_err = np.array([2.0, 25.0, 2.0, 2.0, 2.0, 2.0, np.nan])
    model_err = np.array([2.0, 2.0, 30.0, 5.0, np.nan, np.nan, np.nan])
    np.testing.assert_array_equal(orientation_ill_defined(q, moment_err, model_err),
                                  [False, True, True, False, True, False, True])


# ---------------------------------------------------------------- the catalogue


def test_catalogue_carries_the_errors_and_records_the_calibration(demo_run, tmp_path):
    store, ckpt = demo_run["store"], demo_run["checkpoint"]
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(ckpt, run / "checkpoint.pt")
    from pipeline.checkpoint import file_sha256

    cal = ErrorCalibration(pa_scale=2.0, pa_floor_deg=0.25, x_scale=1.5, y_scale=1.5, xy_floor_pix=0.05, samples=4,
                           source="test", checkpoint_sha256=file_sha256(run / "checkpoint.pt"))
    write_calibration(cal, run / CALIBRATION_FILE)
    out = infer_catalog(store, run / "checkpoint.pt", tmp_path / "cat.fits", device="cpu", error_samples=4)
    t = read_catalog(out)
    for name in ("pa_err_deg", "x_err_pix", "y_err_pix", "moment_pa_err_deg"):
        v = np.asarray(t[name], dtype=np.float64)
        assert np.isfinite(v).all() and (v > 0).all(), name
    assert (np.asarray(t["pa_err_deg"]) >= 0.25 - 1e-6).all()  # the floor applies
    conf = json.loads(t.meta["INFCONF"])
    assert conf["error_samples"] == 4
    assert conf["error_calibration"]["pa_scale"] == 2.0
    assert conf["error_calibration"]["source"].endswith(CALIBRATION_FILE)
    with fits.open(out) as hdul:
        hdr = hdul[1].header
        names = [hdr[f"TTYPE{i}"] for i in range(1, hdr["TFIELDS"] + 1)]
        i = names.index("pa_err_deg") + 1
        assert hdr[f"TUNIT{i}"] == "deg" and hdr[f"TUCD{i}"].startswith("stat.error")
    fitsverify(out)

    # without an ensemble the model's errors are NaN; the moments' are still there
    rc = main(["infer", "--store", str(store), "--checkpoint", str(ckpt), "--out", str(tmp_path / "k0.fits"),
               "--device", "cpu", "--quiet", "--error-samples", "0"])
    assert rc == 0
    t0 = read_catalog(tmp_path / "k0.fits")
    assert np.isnan(np.asarray(t0["pa_err_deg"], dtype=np.float64)).all()
    assert np.isfinite(np.asarray(t0["moment_pa_err_deg"], dtype=np.float64)).all()
    assert json.loads(t0.meta["INFCONF"])["error_calibration"]["source"].startswith("default")


def test_cli_refuses_one_error_sample(demo_run, tmp_path, capsys):
    rc = main(["infer", "--store", str(demo_run["store"]), "--checkpoint", str(demo_run["checkpoint"]),
               "--out", str(tmp_path / "c.fits"), "--device", "cpu", "--quiet", "--error-samples", "1"])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "error_samples" in err[0]
