"""Derotated stacks: truth recovery, streaming combiners against in-memory references, binning, refusals."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
import torch
from astropy.io import fits
from astropy.stats import sigma_clipped_stats
from PIL import Image

from catalogs.fits_io import write_catalog
from catalogs.schema import catalog_schema
from pipeline.cli import main
from pipeline.conventions import fits_to_display
from pipeline.data.ingest import ingest_survey
from pipeline.data.store import open_store
from pipeline.errors import BadInputError
from pipeline.geometry import align_to_pose
from pipeline.moments import image_moments, subtract_background
from pipeline.stack import HIST_BINS, stack_catalog
from pipeline.stack.combiners import STACK_METHODS, make_combiner
from tests.conftest import fitsverify

SIZE = 48
Q = 0.45  # axis ratio of every rendered galaxy
N = 64
#: the catalogue's other float columns (errors, ...), unknown (NaN): stacking does not read them.
_NO_ERRORS = {c.name: np.full(N, np.nan) for c in catalog_schema(1) if c.dtype.kind == "f" and c.name not in
              ("ra", "dec", "x_pix", "y_pix", "theta_deg", "pa_deg", "moment_pa_deg", "moment_axis_ratio", "z_0",
               "recon_mse")}


def ellipse(x0: float, y0: float, theta_deg: float, q: float, sigma: float, rng: np.random.Generator,
            noise: float = 0.01) -> np.ndarray:
    """Elliptical Gaussian (SIZE x SIZE, uint8 RGB, display frame) with its major axis at theta (CCW as displayed)."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    t = np.deg2rad(theta_deg)
    dx, dy = xx - x0, yy - y0
    u = dx * np.cos(t) - dy * np.sin(t)  # along (cos t, -sin t): CCW as displayed, y down
    v = dx * np.sin(t) + dy * np.cos(t)
    img = 0.05 + 0.85 * np.exp(-0.5 * ((u / sigma) ** 2 + (v / (q * sigma)) ** 2))
    img = img + noise * rng.standard_normal(img.shape)
    return np.clip(np.round(255 * np.repeat(img[..., None], 3, axis=2)), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def known(tmp_path_factory):
    """A store of N ellipses (axis ratio Q, random angles and shifts) and catalogues with true and random angles."""
    root = tmp_path_factory.mktemp("stack")
    rng = np.random.default_rng(5)
    theta = rng.uniform(0, 360, N)
    x0 = (SIZE - 1) / 2 + rng.uniform(-4, 4, N)
    y0 = (SIZE - 1) / 2 + rng.uniform(-4, 4, N)
    rows = []
    (root / "images").mkdir()
    for i in range(N):
        name = f"G{i:04d}"
        Image.fromarray(ellipse(x0[i], y0[i], theta[i], Q, 5.0, rng)).save(root / "images" / f"{name}.png")
        rows.append({"iauname": name, "ra": 10.0 + i * 1e-3, "dec": -5.0, "file_loc": f"{name}.png",
                     "pixscale": 0.2 + 0.001 * i})  # carried into the store: a per-galaxy pixel scale
    pd.DataFrame(rows).to_parquet(root / "cat.parquet")
    store = root / "st.zarr"
    ingest_survey(root / "cat.parquet", root / "images", store, size=SIZE, crop=SIZE, shard_size=16)

    def catalogue(name: str, angles: np.ndarray, header: dict | None = None, **extra) -> os.PathLike:
        cols = {"id": np.array([r["iauname"] for r in rows]), "ra": np.full(N, 10.0), "dec": np.full(N, -5.0),
                "x_pix": x0, "y_pix": y0, "theta_deg": angles, "pa_deg": (angles - 90) % 180,
                "moment_pa_deg": np.zeros(N), "moment_axis_ratio": np.full(N, Q), "z_0": np.arange(N, dtype=float),
                "recon_mse": np.zeros(N), "flags": np.zeros(N, dtype=np.int16), **_NO_ERRORS}
        cols.update(extra)
        return write_catalog(cols, root / name, latent_dim=1, header={"checkpoint_sha256": "0" * 64,
                                                                      "config": {"note": "test"}, **(header or {})})

    return {"root": root, "store": store, "true": catalogue("true.fits", theta), "catalogue": catalogue,
            "random": catalogue("random.fits", rng.uniform(0, 360, N)), "theta": theta, "x0": x0, "y0": y0}


def _axis_ratio_and_theta(image: np.ndarray) -> tuple[float, float]:
    m = image_moments(subtract_background(torch.from_numpy(image[None]).float()))
    return float(m.axis_ratio[0]), float(np.rad2deg(float(m.theta[0])))


def test_true_angles_give_the_galaxies_axis_ratio_random_angles_a_round_stack(known, tmp_path):
    true = stack_catalog(known["true"], known["store"], tmp_path / "true.fits")[0]
    assert true.n == N and true.image.shape == (3, SIZE, SIZE)
    q, theta = _axis_ratio_and_theta(true.image)
    assert q == pytest.approx(Q, abs=0.05)
    assert min(theta, 180 - theta) < 2.0  # major axis along +x
    # the same galaxy, noiseless, centred and unrotated: the reference moment axis ratio
    q_one, _ = _axis_ratio_and_theta(np.moveaxis(ellipse((SIZE - 1) / 2, (SIZE - 1) / 2, 0.0, Q, 5.0,
                                                         np.random.default_rng(0), noise=0.0), 2, 0) / 255.0)
    assert q == pytest.approx(q_one, abs=0.03)
    rnd = stack_catalog(known["random"], known["store"], tmp_path / "random.fits")[0]
    assert _axis_ratio_and_theta(rnd.image)[0] > 0.85


def _aligned_in_memory(known) -> np.ndarray:
    st = open_store(known["store"])
    imgs = torch.from_numpy(st.read_images(0, len(st)).astype(np.float32) / 255.0)
    xn = (2 * known["x0"] + 1) / SIZE - 1
    yn = (2 * known["y0"] + 1) / SIZE - 1
    t = torch.from_numpy(np.deg2rad(known["theta"])).float()
    return align_to_pose(imgs, t, torch.from_numpy(xn).float(), torch.from_numpy(yn).float()).numpy()


def test_streaming_combiners_match_in_memory_references(known, tmp_path):
    ref = _aligned_in_memory(known)  # (N, C, H, W)
    mean = stack_catalog(known["true"], known["store"], tmp_path / "m.fits", batch_size=5)[0].image
    np.testing.assert_allclose(mean, ref.mean(axis=0), atol=1e-5)
    med = stack_catalog(known["true"], known["store"], tmp_path / "d.fits", method="median", batch_size=7)[0].image
    assert np.max(np.abs(med - np.median(ref, axis=0))) <= 1.0 / HIST_BINS + 1e-6  # exact to one bin
    clip = stack_catalog(known["true"], known["store"], tmp_path / "c.fits", method="clipped", batch_size=9)[0].image
    astropy_mean, _, _ = sigma_clipped_stats(ref, axis=0, sigma=3.0, maxiters=5)
    diff = np.abs(clip - astropy_mean)
    assert np.median(diff) < 1e-4 and diff.max() < 5e-3
    # one batch or many: the same stack
    big = stack_catalog(known["true"], known["store"], tmp_path / "d2.fits", method="median")[0].image
    np.testing.assert_array_equal(med, big)


def test_bins_write_one_hdu_and_preview_each(known, tmp_path):
    out = tmp_path / "bins.fits"
    res = stack_catalog(known["true"], known["store"], out, where="z_0 >= 4", method="clipped", bin_by="z_0",
                        bins=3)
    assert [r.extname for r in res] == ["BIN1", "BIN2", "BIN3"] and sum(r.n for r in res) == N - 4
    assert res[0].bin_lo == 4.0 and res[-1].bin_hi == N - 1
    with fits.open(out) as hdul:
        assert [h.name for h in hdul[1:]] == ["BIN1", "BIN2", "BIN3"]
        assert hdul[0].header["SELECT"] == "z_0 >= 4" and hdul[0].header["METHOD"] == "clipped"
        assert hdul[0].header["CKPTSHA"] == "0" * 64 and hdul[0].header["BINCOL"] == "z_0"
        assert [h.header["NSTACK"] for h in hdul[1:]] == [r.n for r in res]
        np.testing.assert_array_equal(fits_to_display(hdul[2].data), res[1].image)  # FITS row order on disk
    for k in (1, 2, 3):
        assert (tmp_path / f"bins_bin{k}.png").stat().st_size > 100
    fitsverify(out)


def test_empty_selection_or_missing_ids_write_nothing(known, tmp_path, capsys):
    out = tmp_path / "s.fits"
    with pytest.raises(BadInputError, match="no rows of .* match 'z_0 > 1000'; nothing to stack"):
        stack_catalog(known["true"], known["store"], out, where="z_0 > 1000")
    ids = np.array([f"G{i:04d}" for i in range(N)], dtype="U16")
    ids[3] = "NOT_IN_STORE"
    cat = write_catalog({"id": ids, "ra": np.zeros(N), "dec": np.zeros(N), "x_pix": np.zeros(N),
                         "y_pix": np.zeros(N), "theta_deg": np.zeros(N), "pa_deg": np.zeros(N),
                         "moment_pa_deg": np.zeros(N), "moment_axis_ratio": np.zeros(N), "z_0": np.zeros(N),
                         "recon_mse": np.zeros(N), "flags": np.zeros(N, dtype=np.int16), **_NO_ERRORS},
                        tmp_path / "other.fits", latent_dim=1)
    with pytest.raises(BadInputError, match=r"1 selected id\(s\) are not in the store .* 'NOT_IN_STORE'"):
        stack_catalog(cat, known["store"], out, method="median")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.fits"]
    rc = main(["stack", str(known["true"]), "--store", str(known["store"]), "--out", str(out),
               "--where", "z_0 > 1000"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "nothing written" in err[0]
    assert main(["stack", str(known["true"]), "--store", str(known["store"]), "--out", str(out), "--quiet"]) == 0
    assert main(["stack", str(known["true"]), "--store", str(known["store"]), "--out", str(out), "--quiet"]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err


# ---------------------------------------------------------------- combiners, pixel scale, bands, previews


def test_every_combiner_follows_the_protocol():
    rng = np.random.default_rng(0)
    batches = [rng.uniform(0, 1, (b, 2, 5, 5)).astype(np.float32) for b in (3, 4, 6)]
    stacked = np.concatenate(batches)
    for method in STACK_METHODS:
        comb = make_combiner(method, (2, 5, 5))
        passes = 0
        image = None
        while image is None:  # as the stacking step drives it
            passes += 1
            for b in batches:
                comb.add(b)
            image = comb.finish()
        assert passes == (2 if comb.needs_second_pass else 1) and comb.n == len(stacked)
        assert image.shape == (2, 5, 5) and image.dtype == np.float32
        reference = {"mean": stacked.mean(0), "median": np.median(stacked, 0), "clipped": stacked.mean(0)}[method]
        assert np.max(np.abs(image - reference)) <= 1.0 / HIST_BINS + 1e-6  # nothing clipped from uniform values
    assert make_combiner("clipped", (1, 2, 2)).needs_second_pass and not make_combiner("median", (1, 2, 2)).needs_second_pass


def test_pixel_scale_bands_and_value_scale_in_the_header(known, tmp_path):
    from astropy.wcs import WCS

    out = tmp_path / "scaled.fits"
    res = stack_catalog(known["true"], known["store"], out, pixel_scale=0.262, bands="decals")
    assert res[0].arcsec_per_pixel == pytest.approx(0.262)  # crop = store size here: one cutout pixel per pixel
    with fits.open(out) as hdul:
        h = hdul["STACK"].header
        assert (h["CTYPE1"], h["CUNIT1"], h["CDELT1"], h["CDELT2"]) == ("XOFFSET", "arcsec", 0.262, 0.262)
        assert h["CRPIX1"] == h["CRPIX2"] == (SIZE + 1) / 2 and h["PIXSCALE"] == 0.262
        assert [h["BAND1"], h["BAND2"], h["BAND3"]] == ["z", "r", "g"]
        assert h["VALSCALE"] == "uint8/255" and "BUNIT" in h and "not flux" in h.comments["BUNIT"]
        w = WCS(h)  # astropy reads the axes without a warning (warnings are errors here)
        np.testing.assert_allclose(w.pixel_to_world_values((SIZE - 1) / 2 + 10, (SIZE - 1) / 2, 0)[:2], [2.62, 0.0])
    fitsverify(out)


def test_pixel_scale_from_a_store_column_or_the_catalogue_header(known, tmp_path):
    res = stack_catalog(known["true"], known["store"], tmp_path / "col.fits", pixel_scale="pixscale", previews=False)
    scales = 0.2 + 0.001 * np.arange(N)
    assert res[0].arcsec_per_pixel == pytest.approx(np.median(scales))
    with fits.open(tmp_path / "col.fits") as hdul:
        h = hdul["STACK"].header
        assert h["PIXSCMIN"] == pytest.approx(0.2) and h["PIXSCMAX"] == pytest.approx(scales[-1])
        assert "store column pixscale" in h["PIXSCSRC"]
        assert [h["BAND1"], h["BAND2"], h["BAND3"]] == ["R", "G", "B"]  # display colours unless told
    cat = known["catalogue"]("scaled.fits", known["theta"], header={"PIXSCALE": (0.5, "[arcsec] per cutout pixel")})
    res = stack_catalog(cat, known["store"], tmp_path / "hdr.fits", previews=False)
    assert res[0].arcsec_per_pixel == pytest.approx(0.5)
    res = stack_catalog(known["true"], known["store"], tmp_path / "none.fits", previews=False)
    assert res[0].arcsec_per_pixel is None
    with fits.open(tmp_path / "none.fits") as hdul:
        assert "CDELT1" not in hdul["STACK"].header
    with pytest.raises(BadInputError, match=r"neither a number nor a column .*carried columns: pixscale"):
        stack_catalog(known["true"], known["store"], tmp_path / "bad.fits", pixel_scale="nope")
    with pytest.raises(Exception, match="--bands: 2 name"):
        stack_catalog(known["true"], known["store"], tmp_path / "bad.fits", bands="g,r")


def test_previews_are_large_signed_and_carry_a_scale_bar(known, tmp_path):
    import matplotlib.image

    from catalogs.atomic import is_ours_file

    stack_catalog(known["true"], known["store"], tmp_path / "a.fits", pixel_scale=0.262)
    stack_catalog(known["true"], known["store"], tmp_path / "b.fits")
    with_bar, without = (matplotlib.image.imread(tmp_path / f"{k}.png") for k in "ab")
    assert with_bar.shape[1] >= 360 and with_bar.shape[:2] == without.shape[:2]
    assert is_ours_file(tmp_path / "a.png")
    h, w = with_bar.shape[:2]
    corner = (slice(h // 2, h), slice(0, w // 2))  # the bar sits in the lower left
    white = [int((np.asarray(img)[corner][..., :3] > 0.99).all(axis=-1).sum()) for img in (with_bar, without)]
    assert white[0] > white[1] + 50


def test_overwrite_replaces_own_outputs_only(known, tmp_path, capsys):
    out = tmp_path / "s.fits"
    assert main(["stack", "--catalog", str(known["true"]), "--store", str(known["store"]), "--out", str(out),
                 "--quiet"]) == 0
    assert main(["stack", str(known["true"]), "--store", str(known["store"]), "--out", str(out), "--quiet",
                 "--overwrite"]) == 0
    (tmp_path / "s.png").write_bytes(b"someone's picture")
    assert main(["stack", str(known["true"]), "--store", str(known["store"]), "--out", str(out), "--quiet",
                 "--overwrite"]) == 2
    assert "did not write" in capsys.readouterr().err
    assert (tmp_path / "s.png").read_bytes() == b"someone's picture"


def test_match_ids_finds_rows_by_id_not_position():
    from pipeline.ids import as_str_ids, match_ids

    reference = np.array(["b", "a", "d", "c"], dtype=object)
    np.testing.assert_array_equal(match_ids(["c", "a", "x", "b"], reference), [3, 1, -1, 0])
    assert as_str_ids(np.array([b"J1", b"J22"])).tolist() == ["J1", "J22"]
    assert match_ids([], reference).size == 0 and (match_ids(["a"], np.array([], dtype=str)) == -1).all()
