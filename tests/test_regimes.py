"""Survey regimes: each scene draws what its truth says, checked by measuring the image.

The measurements are plain numpy on noise-free renders (first moments, peaks, pixel
statistics), never the simulator's own bookkeeping: a neighbour at the stated place and
flux, a star that is the PSF, a knot or a lopsided disk on the stated side, DECaLS-depth
noise of the stated size, and a truth centroid that stays on the target.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from pipeline.conventions import angle_diff_180, wrap_360
from pipeline.errors import BadInputError
from pipeline.simulate.galaxies import render_bands
from pipeline.simulate.regimes import (
    REGIMES,
    decals_sky_sigma,
    parse_regimes,
    render_scene_bands,
    sample_scenes,
)
from pipeline.simulate.survey import write_demo_survey

SIZE = 128  # small cutouts: every rule scales with the size


def _centroid(img: np.ndarray) -> tuple[float, float]:
    """(x, y) light centroid of a non-negative (H, W) image, display frame."""
    yy, xx = np.mgrid[0:img.shape[0], 0:img.shape[1]]
    return float((img * xx).sum() / img.sum()), float((img * yy).sum() / img.sum())


def _scenes(regime: str, n: int = 6, seed: int = 0):
    return sample_scenes(np.random.default_rng(seed), n, regime, size=SIZE)


def test_neighbour_is_drawn_where_and_as_bright_as_the_truth_says():
    for s in _scenes("neighbour"):
        rec = s.record()
        added = render_scene_bands(s)[1] - render_bands(s.target)[1]  # r band, the neighbour alone
        x, y = _centroid(np.clip(added, 0, None))
        # the light outside the frame pulls the measured centroid a little: 1.5 px of a 128-px frame
        assert math.hypot(x - rec["nb_x_pix"], y - rec["nb_y_pix"]) < 1.5, (x, y, rec["nb_x_pix"], rec["nb_y_pix"])
        ratio = added.sum() / s.target.flux_r  # r band, nanomaggies (some neighbour light leaves the frame)
        assert ratio == pytest.approx(rec["nb_flux_ratio"], rel=0.1)
        assert 0.3 * 0.9 < ratio < 2.0
        # overlapping: within 4 half-light radii of the target, and inside the store's centre crop
        assert rec["nb_sep_pix"] <= 4.0 * s.target.hlr_pix + 1e-9
        assert abs(rec["nb_x_pix"] - (SIZE - 1) / 2) < 256 / 424 * SIZE / 2


def test_star_is_a_point_source_at_its_position():
    for s in _scenes("star"):
        rec = s.record()
        added = render_scene_bands(s)[1] - render_bands(s.target)[1]
        py, px = np.unravel_index(int(np.argmax(added)), added.shape)
        assert abs(px - rec["star_x_pix"]) <= 1 and abs(py - rec["star_y_pix"]) <= 1
        # its width is the PSF's: FWHM from the area above half maximum
        fwhm = 2.0 * math.sqrt((added > added.max() / 2).sum() / math.pi)
        psf = s.target.psf_fwhm_arcsec / s.target.pixscale_arcsec
        assert fwhm == pytest.approx(psf, rel=0.25, abs=1.0)
        assert added.sum() == pytest.approx(rec["star_flux_ratio"] * s.target.flux_r, rel=0.03)  # nanomaggies


@pytest.mark.parametrize("seed", [0, 1])
def test_lopsided_light_lies_on_the_stated_side_and_the_truth_centre_stays(seed):
    scenes = _scenes("lopsided", n=8, seed=seed)
    kinds = {s.extras[0].kind for s in scenes}
    sides = set()
    for s in scenes:
        rec = s.record()
        t = rec["theta_dir_deg"]
        assert 0.0 <= t < 360.0 and angle_diff_180(t, rec["theta_deg"]) < 1e-6  # along the major axis
        sides.add(round(float(wrap_360(t - rec["theta_deg"]))))
        u = np.array([math.cos(math.radians(t)), -math.sin(math.radians(t))])  # display frame, y down
        scene = render_scene_bands(s)[1]
        target = render_bands(s.target)[1]
        # the target alone is centred on the truth; the scene's light is pulled towards theta_dir
        tx, ty = _centroid(target)
        assert math.hypot(tx - rec["x_pix"], ty - rec["y_pix"]) < 0.5
        sx, sy = _centroid(scene)
        dx, dy = sx - rec["x_pix"], sy - rec["y_pix"]
        shift, across = dx * u[0] + dy * u[1], abs(dx * u[1] - dy * u[0])
        assert shift > 0.5 and across < 0.5 * shift + 0.3, (rec["asym_kind"], shift, across)
    assert kinds == {"knot", "m1"} or len(scenes) < 4
    assert sides == {0, 180}  # both sides are drawn


def test_other_regimes_have_no_direction_and_faint_is_faint():
    for regime in ("clean", "neighbour", "star", "faint"):
        for s in _scenes(regime, n=3):
            assert math.isnan(s.record()["theta_dir_deg"])
    for s in _scenes("faint", n=8):
        t = s.target
        mu50 = 22.5 - 2.5 * math.log10(t.flux_r / (2 * math.pi * t.hlr_arcsec ** 2))
        assert 24.0 <= mu50 <= 25.5
    clean, faint = (np.median([s.record()["snr"] for s in _scenes(r, n=12, seed=4)]) for r in ("clean", "faint"))
    assert faint < clean / 5


def test_noise_is_decals_depth():
    # r band, 5-sigma 23.9 mag: 0.2754 nanomaggies / 5 over sqrt(4 pi (1.3 / 2.3548)^2 / 0.262^2) pixels
    g, r, z = decals_sky_sigma(0.262, 1.3)
    assert r == pytest.approx(0.05508 / math.sqrt(55.82), rel=1e-3)
    assert g / r == pytest.approx(10 ** (-0.4 * 0.8), rel=1e-6) and z / r == pytest.approx(10 ** (0.4 * 0.9), rel=1e-6)
    assert decals_sky_sigma(0.524, 1.3)[1] == pytest.approx(4 * r)  # 4x the pixel area, 4x the flux per pixel
    s = _scenes("clean", n=1)[0]
    noisy = render_scene_bands(s, np.random.default_rng(0)) - render_scene_bands(s)
    np.testing.assert_allclose(noisy.reshape(3, -1).std(axis=1), s.sky_sigma, rtol=0.03)
    assert s.record()["sky_noise"] == pytest.approx(s.sky_sigma[1])


def test_parse_regimes():
    assert parse_regimes("star") == {"star": 1.0}
    assert parse_regimes("mix") == {r: 1 / len(REGIMES) for r in REGIMES}
    assert parse_regimes("clean:3, star:1") == {"clean": 0.75, "star": 0.25}
    with pytest.raises(BadInputError, match="unknown regime 'stars'"):
        parse_regimes("stars")
    with pytest.raises(BadInputError, match="non-negative"):
        parse_regimes("clean:0")


def test_demo_survey_with_regimes(tmp_path, capsys):
    out = write_demo_survey(tmp_path / "s", 10, seed=5, size=SIZE, regime="clean:0.4,neighbour:0.2,lopsided:0.4",
                            progress=False)
    truth = pd.read_parquet(out / "truth.parquet")
    assert truth["regime"].value_counts().to_dict() == {"clean": 4, "lopsided": 4, "neighbour": 2}
    assert truth["theta_dir_deg"].notna().to_numpy().tolist() == (truth["regime"] == "lopsided").tolist()
    assert truth.loc[truth["regime"] == "neighbour", "nb_x_pix"].notna().all()
    assert truth.loc[truth["regime"] != "neighbour", "nb_x_pix"].isna().all()
    with pytest.raises(BadInputError, match="cannot be combined"):
        write_demo_survey(tmp_path / "t", 2, regime="star", sky_noise=0.01, progress=False)

    from pipeline.cli import main

    assert main(["demo-survey", str(tmp_path / "c"), "--n", "1", "--regime", "star", "--quiet"]) == 0
    assert (pd.read_parquet(tmp_path / "c" / "truth.parquet")["regime"] == "star").all()
    assert main(["demo-survey", str(tmp_path / "d"), "--n", "1", "--regime", "galaxy"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "unknown regime 'galaxy'" in err[0]


# --- the benchmark's stronger baseline ---

def _blob(x0: float, y0: float, sigma: float, flux: float, size: int = 64) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size]
    return flux / (2 * math.pi * sigma ** 2) * np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / (2 * sigma ** 2))


def test_segmentation_moments_keep_the_central_source():
    from benchmarks.regimes import segment_moments

    rng = np.random.default_rng(0)
    galaxy = _blob(31.0, 33.0, 4.0, 60.0)
    star = _blob(44.0, 20.0, 1.2, 40.0)  # separate at the detection threshold
    neighbour = _blob(43.0, 33.0, 3.5, 60.0)  # overlapping (one region at the threshold): needs deblending
    imgs = np.stack([galaxy + star, galaxy + neighbour]) + 0.1 + 0.005 * rng.standard_normal((2, 64, 64))
    seg = segment_moments(imgs)
    for i in range(2):
        plain = _centroid(np.clip(imgs[i] - 0.1, 0, None))
        assert math.hypot(plain[0] - 31.0, plain[1] - 33.0) > 3.0  # plain moments are pulled away
        assert math.hypot(seg["x_pix"][i] - 31.0, seg["y_pix"][i] - 33.0) < 1.2, (i, seg["x_pix"][i], seg["y_pix"][i])


def test_benchmark_scores_angles_and_centroids_by_id():
    from benchmarks.regimes import score, summarise

    ids = ["a", "b", "c", "d"]
    truth = pd.DataFrame({"iauname": ids, "regime": ["lopsided", "lopsided", "star", "star"],
                          "x_pix": [200.0, 210.0, 205.0, 215.0], "y_pix": [211.0, 212.0, 213.0, 214.0],
                          "pa_deg": [10.0, 170.0, 90.0, 45.0], "axis_ratio": [0.4, 0.5, 0.3, 0.9],
                          "theta_dir_deg": [100.0, 260.0, np.nan, np.nan]})
    # catalogue rows in another order than the truth: joined by id, never by position
    cat = pd.DataFrame({"id": ["d", "c", "b", "a"], "pa_deg": [45.0, 93.0, 5.0, 12.0],
                        "theta_deg": [135.0, 183.0, 275.0, 282.0], "moment_pa_deg": [50.0, 100.0, 160.0, 30.0],
                        "x_pix": [215.0, 206.0, 210.0, 203.0], "y_pix": [214.0, 213.0, 216.0, 211.0]}).set_index("id")
    meas = pd.DataFrame({"mom_x": [200.0, 210.0, 205.0, 225.0], "mom_y": [221.0, 212.0, 213.0, 214.0],
                         "mom_theta": [120.0, 70.0, 10.0, 140.0], "mom_dir": [120.0, 250.0, 10.0, 140.0],
                         "seg_x": [200.0] * 4, "seg_y": [211.0] * 4, "seg_theta": [100.0] * 4, "seg_dir": [100.0] * 4},
                        index=pd.Index(ids, name="id"))
    e = score(cat, truth, meas)
    assert e.loc["b", "pa_model"] == pytest.approx(15.0)  # 5 against 170: 15 degrees mod 180
    assert e.loc["b", "dir_model"] == pytest.approx(15.0) and e.loc["a", "dir_model"] == pytest.approx(178.0)
    assert e.loc["a", "dir_moment"] == pytest.approx(20.0) and e.loc["b", "dir_moment"] == pytest.approx(170.0)
    assert e.loc["c", "cen_model"] == pytest.approx(1.0) and e.loc["d", "cen_moment"] == pytest.approx(10.0)
    t = summarise(e)
    assert t.loc["n elongated (q<=0.6)", "star"] == 1  # d is round
    assert t.loc["PA med err model (deg)", "star"] == pytest.approx(3.0)
    assert t.loc["PA med err moments (deg)", "star"] == pytest.approx(10.0)
    assert t.loc["dir right model", "lopsided"] == pytest.approx(0.5)
    assert t.loc["cen med err model (px)", "star"] == pytest.approx(0.5)  # c: 1 px, d: 0 px
    assert t.loc["cen med err moments (px)", "star"] == pytest.approx(5.0)
    assert t.loc["model beats moments by 30% (PA and centroid)", "star"] == "yes"
    assert t.loc["PA model / moments", "lopsided"] == pytest.approx(8.5 / 15.0)
    assert t.loc["cen model / moments (median)", "lopsided"] == pytest.approx(3.5 / 5.0)
    worse = e.copy()
    worse.loc[["c", "d"], "cen_model"] = 4.0  # PA still better, centroid only 20 % better
    assert summarise(worse).loc["model beats moments by 30% (PA and centroid)", "star"] == "no"
    assert np.isnan(t.loc["dir right model", "star"])
