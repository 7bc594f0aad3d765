"""Simulated survey: layout, determinism, and the truth round trip through JPEG and moments.

The round trip pins the JPEG row order and the PA convention end to end: a galaxy drawn
at a known PA and centroid is read back with PIL and measured by pipeline.moments.
"""

from __future__ import annotations

import dataclasses
import io
import re

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from pipeline.conventions import angle_diff_180, normalized_to_pixel, theta_to_pa
from pipeline.errors import BadInputError
from pipeline.simulate.galaxies import GZ_SIZE, GalaxyTruth, petrosian_radii, render_rgb, sample_galaxies
from pipeline.simulate.survey import CATALOG_COLUMNS, JPEG_QUALITY, iau_names, write_demo_survey

IAU = re.compile(r"^J\d{6}\.\d{2}[+-]\d{6}\.\d$")


def _measure(rgb: np.ndarray) -> tuple[float, float, float]:
    """(x_pix, y_pix, pa_deg) of an (H, W, 3) uint8 display-frame image from background-subtracted moments."""
    h, w = rgb.shape[:2]
    m = pipeline_moments(torch.from_numpy(np.array(rgb)).permute(2, 0, 1)[None].float())
    x = float(normalized_to_pixel(m.x.item(), w))
    y = float(normalized_to_pixel(m.y.item(), h))
    return x, y, float(theta_to_pa(np.degrees(m.theta.item())))


def pipeline_moments(images: torch.Tensor):
    from pipeline.moments import image_moments, subtract_background

    return image_moments(subtract_background(images))


def _jpeg_round_trip(rgb: np.ndarray) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=JPEG_QUALITY)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


@pytest.fixture(scope="module")
def base_truth() -> GalaxyTruth:
    return sample_galaxies(np.random.default_rng(3), 1)[0]


def test_components_match_plain_galsim_draw(base_truth):
    """The shared-PSF FFT split gives what GalSim's drawImage gives (after the row flip)."""
    import galsim

    from pipeline.simulate.galaxies import BULGE_TRUNC_HLR, _draw_components

    t = dataclasses.replace(base_truth, x_pix=205.3, y_pix=219.8)
    bulge, disk = _draw_components(t)
    c = (t.size - 1) / 2
    psf = galsim.Moffat(beta=3.5, fwhm=t.psf_fwhm_arcsec / t.pixscale_arcsec)
    shear = galsim.Shear(q=t.axis_ratio, beta=t.theta_deg * galsim.degrees)
    profiles = (galsim.Sersic(n=t.bulge_sersic_n, half_light_radius=t.bulge_hlr_pix,
                              trunc=BULGE_TRUNC_HLR * t.bulge_hlr_pix, flux_untruncated=True),
                galsim.Exponential(half_light_radius=t.disk_hlr_pix))
    for got, prof in zip((bulge, disk), profiles):
        ref = galsim.ImageF(t.size, t.size, scale=1.0)
        galsim.Convolve(prof.shear(shear), psf).drawImage(ref, offset=(t.x_pix - c, c - t.y_pix))
        np.testing.assert_allclose(got, ref.array[::-1], rtol=0, atol=1e-4 * float(got.max()))


@pytest.mark.parametrize(("pa", "x", "y"), [(30.0, 218.3, 204.6), (150.0, 204.2, 217.1), (95.0, 211.5, 211.5)])
def test_truth_round_trip_pa_and_centroid(base_truth, pa, x, y):
    """Known PA and an off-centre centroid come back from the JPEG (PA 30 and 150 differ)."""
    t = dataclasses.replace(base_truth, pa_deg=pa, x_pix=x, y_pix=y, axis_ratio=0.45, sky_noise=0.001)
    rgb = _jpeg_round_trip(render_rgb(t, np.random.default_rng(0)))
    assert rgb.shape == (GZ_SIZE, GZ_SIZE, 3)
    mx, my, mpa = _measure(rgb)
    assert abs(mx - x) < 1.0 and abs(my - y) < 1.0, (mx, my, x, y)
    assert angle_diff_180(mpa, pa) < 1.5, (mpa, pa)
    assert angle_diff_180(mpa, 180.0 - pa) > 5.0 or pa in (0.0, 90.0)  # a mirrored image would fail here


def test_petrosian_radii_of_pure_profiles():
    hlr, p50, p90 = petrosian_radii(np.array([4.0, 4.0]), np.array([1.0, 1.0]), np.array([1.0, 1.0]),
                                    np.array([0.0, 1.0]))
    assert hlr == pytest.approx([1.0, 1.0], rel=1e-3)
    assert p50[0] == pytest.approx(1.0, rel=0.03)  # Petrosian flux ~ all of an exponential
    assert 0.6 < p50[1] < 0.9  # de Vaucouleurs: the Petrosian aperture misses the wings
    assert p90[0] / p50[0] == pytest.approx(2.3, rel=0.05)


def test_iau_names_format():
    ra = (7 + 30 / 60 + 13.60 / 3600) * 15
    dec = 24 + 29 / 60 + 30.0 / 3600
    assert iau_names([ra, 10.0], [dec, -0.5]) == ["J073013.60+242930.0", "J004000.00-003000.0"]


def test_demo_survey_layout_determinism_and_round_trip(tmp_path):
    out = write_demo_survey(tmp_path / "a", 3, seed=11, sky_noise=0.001, progress=False)
    cat = pd.read_parquet(out / "catalog.parquet")
    truth = pd.read_parquet(out / "truth.parquet")
    assert tuple(cat.columns) == CATALOG_COLUMNS
    for col in ("iauname", "x_pix", "y_pix", "pa_deg", "theta_deg", "axis_ratio", "hlr_pix", "hlr_arcsec",
                "bulge_sersic_n", "bulge_fraction", "flux_r", "g_r", "r_z", "sky_noise", "pixscale_arcsec"):
        assert col in truth.columns
    assert list(truth.iauname) == list(cat.iauname) and cat.iauname.is_unique
    assert ((cat.dec > -20) & (cat.dec < 34) & (cat.ra >= 0) & (cat.ra < 360)).all()
    assert iau_names(cat.ra, cat.dec) == list(cat.iauname)
    for name, loc, row in zip(cat.iauname, cat.file_loc, truth.itertuples()):
        assert IAU.match(name) and loc == f"{name[:4]}/{name}.jpg"
        with Image.open(out / "images" / loc) as im:
            assert im.format == "JPEG" and im.mode == "RGB" and im.size == (GZ_SIZE, GZ_SIZE)
            rgb = np.asarray(im)
        assert rgb[:8].mean() > 5  # a positive sky floor, as survey JPEGs have
        mx, my, mpa = _measure(rgb)
        assert abs(mx - row.x_pix) < 1.5 and abs(my - row.y_pix) < 1.5
        if row.axis_ratio <= 0.6:
            assert angle_diff_180(mpa, row.pa_deg) < 2.0
    assert 1.0 < np.hypot(truth.x_pix - 211.5, truth.y_pix - 211.5).max() <= 15.0

    # Same seed, other worker count: the same bytes.
    again = write_demo_survey(tmp_path / "b", 3, seed=11, sky_noise=0.001, workers=2, progress=False)
    for loc in cat.file_loc:
        assert (again / "images" / loc).read_bytes() == (out / "images" / loc).read_bytes()
    pd.testing.assert_frame_equal(pd.read_parquet(again / "truth.parquet"), truth)
    other = write_demo_survey(tmp_path / "c", 3, seed=12, sky_noise=0.001, progress=False)
    assert list(pd.read_parquet(other / "catalog.parquet").iauname) != list(cat.iauname)

    with pytest.raises(BadInputError, match="already exists"):
        write_demo_survey(out, 2, seed=1, progress=False)
    write_demo_survey(out, 2, seed=1, overwrite=True, progress=False)
    assert len(pd.read_parquet(out / "catalog.parquet")) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "c"]  # no temporary leftovers


def test_demo_survey_cli(tmp_path, capsys):
    from pipeline.cli import main

    out = tmp_path / "survey"
    assert main(["demo-survey", str(out), "--n", "1", "--seed", "3", "--quiet"]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert main(["demo-survey", str(out), "--n", "1"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "already exists" in err[0]
    assert main(["demo-survey", str(tmp_path / "x"), "--n", "0"]) == 2
