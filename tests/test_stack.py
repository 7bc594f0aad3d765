"""Derotated stacks: truth recovery, streaming combiners against in-memory references, binning, refusals."""

from __future__ import annotations

import os
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
import torch
from astropy.io import fits
from astropy.stats import sigma_clipped_stats
from PIL import Image

from catalogs.fits_io import write_catalog
from pipeline.cli import main
from pipeline.conventions import fits_to_display
from pipeline.data.ingest import ingest_survey
from pipeline.data.store import open_store
from pipeline.errors import BadInputError
from pipeline.geometry import align_to_pose
from pipeline.moments import image_moments, subtract_background
from pipeline.stack import HIST_BINS, stack_catalog

SIZE = 48
Q = 0.45  # axis ratio of every rendered galaxy
N = 64


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
        rows.append({"iauname": name, "ra": 10.0 + i * 1e-3, "dec": -5.0, "file_loc": f"{name}.png"})
    pd.DataFrame(rows).to_parquet(root / "cat.parquet")
    store = root / "st.zarr"
    ingest_survey(root / "cat.parquet", root / "images", store, size=SIZE, crop=SIZE, shard_size=16)

    def catalogue(name: str, angles: np.ndarray, **extra) -> os.PathLike:
        cols = {"id": np.array([r["iauname"] for r in rows]), "ra": np.full(N, 10.0), "dec": np.full(N, -5.0),
                "x_pix": x0, "y_pix": y0, "theta_deg": angles, "pa_deg": (angles - 90) % 180,
                "moment_pa_deg": np.zeros(N), "moment_axis_ratio": np.full(N, Q), "z_0": np.arange(N, dtype=float),
                "recon_mse": np.zeros(N), "flags": np.zeros(N, dtype=np.int16)}
        cols.update(extra)
        return write_catalog(cols, root / name, latent_dim=1, header={"checkpoint_sha256": "0" * 64,
                                                                      "config": {"note": "test"}})

    return {"root": root, "store": store, "true": catalogue("true.fits", theta),
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
    if shutil.which("fitsverify"):
        text = subprocess.run(["fitsverify", str(out)], capture_output=True, text=True, check=False).stdout
        assert "0 warning(s) and 0 error(s)" in text, text


def test_empty_selection_or_missing_ids_write_nothing(known, tmp_path, capsys):
    out = tmp_path / "s.fits"
    with pytest.raises(BadInputError, match="no rows of .* match 'z_0 > 1000'; nothing to stack"):
        stack_catalog(known["true"], known["store"], out, where="z_0 > 1000")
    ids = np.array([f"G{i:04d}" for i in range(N)], dtype="U16")
    ids[3] = "NOT_IN_STORE"
    cat = write_catalog({"id": ids, "ra": np.zeros(N), "dec": np.zeros(N), "x_pix": np.zeros(N),
                         "y_pix": np.zeros(N), "theta_deg": np.zeros(N), "pa_deg": np.zeros(N),
                         "moment_pa_deg": np.zeros(N), "moment_axis_ratio": np.zeros(N), "z_0": np.zeros(N),
                         "recon_mse": np.zeros(N), "flags": np.zeros(N, dtype=np.int16)},
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
