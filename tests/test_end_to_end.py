"""End to end on a demo survey: ingest, a short training, infer, query, stack.

What each check can see: the position angles and centroids are compared with the simulation's
truth; the learning check compares the trained model with the same model untrained (which
already has the moment centroid, but no orientation), so it fails if training does not work.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from astropy.io import fits

from catalogs.fits_io import read_catalog
from catalogs.query import count
from catalogs.schema import FLAG_ORIENTATION_ILL_DEFINED, catalog_schema
from pipeline.checkpoint import file_sha256
from pipeline.cli import main
from pipeline.data.store import open_store
from tests.conftest import fitsverify


def _axis_error(a_deg, b_deg) -> np.ndarray:
    """|a - b| for axes (mod 180 degrees), in [0, 90]; plain numpy, independent of pipeline.conventions."""
    d = np.mod(np.asarray(a_deg, dtype=np.float64) - np.asarray(b_deg, dtype=np.float64), 180.0)
    return np.minimum(d, 180.0 - d)


@pytest.fixture(scope="module")
def catalogue(demo_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("e2e") / "cat.fits"
    rc = main(["infer", "--store", str(demo_run["store"]), "--checkpoint", str(demo_run["checkpoint"]),
               "--out", str(out), "--device", "cpu"])
    assert rc == 0
    return out


def test_one_row_per_object_keyed_by_id(catalogue, demo_run):
    cat = read_catalog(catalogue)
    store = open_store(demo_run["store"])
    assert len(cat) == len(store) == 96
    assert len(set(cat["id"])) == len(cat)
    np.testing.assert_array_equal(np.asarray(cat["id"]), np.asarray(store.ids.tolist(), dtype=str))  # store order
    np.testing.assert_array_equal(np.asarray(cat["ra"]), store.ra)
    assert not (catalogue.parent / "cat.fits.partial").exists()  # work directory removed after the merge


def test_catalogue_passes_fitsverify_and_documents_every_column(catalogue, demo_run):
    fitsverify(catalogue)
    cat = read_catalog(catalogue)
    for spec in catalog_schema(4):
        col = cat[spec.name]
        if spec.name.startswith("z_"):  # a latent's description may add the property it follows
            assert col.description.startswith(spec.description.rsplit(" ", 1)[0]), (spec.name, col.description)
        else:
            assert col.description == spec.description, spec.name
        assert (col.unit is None) == (spec.unit is None), spec.name
        assert col.meta["ucd"] == spec.ucd
    meta = cat.meta
    assert meta["CKPTSHA"] == file_sha256(demo_run["checkpoint"])
    assert meta["IMGSIZE"] == 32 and meta["CROP"] == 64 and meta["LATDIM"] == 4
    assert meta["SWVERS"] and meta["DATE"]
    assert '"exported_model": true' in meta["INFCONF"]
    with fits.open(catalogue) as hdul:
        assert hdul[1].header["TUNIT4"] == "pix"


def test_angle_convention_end_to_end(catalogue, demo_run):
    """Conventions, not learning: the moment PA (no model) against the simulated PA, pa_deg from
    theta_deg by the contract's formula, and centroids in the original cutout's pixel frame."""
    cat = read_catalog(catalogue)
    truth = demo_run["truth"].loc[list(cat["id"])]
    err = _axis_error(cat["moment_pa_deg"], truth["pa_deg"])
    elongated = truth["axis_ratio"].to_numpy() < 0.5
    # the most elongated demo galaxy: moment PA within 2 degrees of the simulated PA
    k = int(np.argmin(truth["axis_ratio"].to_numpy()))
    assert err[k] < 2.0, (cat["id"][k], cat["moment_pa_deg"][k], truth["pa_deg"].iloc[k])
    assert np.median(err[elongated]) < 1.0 and np.all(err[elongated] < 5.0)
    # pa_deg = (theta_deg - 90) mod 180 (the contract), written out here rather than through conventions
    # (null exactly where flag bit 1 says the orientation is ill-defined)
    theta = np.asarray(cat["theta_deg"], dtype=np.float64)
    assert np.all((theta >= 0) & (theta < 360))
    pa = np.asarray(cat["pa_deg"], dtype=np.float64)
    known = np.isfinite(pa)
    np.testing.assert_array_equal(~known, (np.asarray(cat["flags"]) & FLAG_ORIENTATION_ILL_DEFINED) > 0)
    assert known.sum() > len(pa) // 2 and np.all((pa[known] >= 0) & (pa[known] < 180))
    assert np.max(_axis_error(pa[known], np.mod(theta[known] - 90.0, 180.0))) < 1e-3
    # centroids in the original 128-pixel cutout frame (the store is the central 64 pixels resized to
    # 32): a wrong crop offset (32 px) or scale (x2) would miss by many pixels.  The model's centroid
    # starts at the moment centroid, so this checks the frame, not learning.
    dx = np.abs(np.asarray(cat["x_pix"]) - truth["x_pix"].to_numpy())
    dy = np.abs(np.asarray(cat["y_pix"]) - truth["y_pix"].to_numpy())
    assert np.median(dx) < 0.5 and np.median(dy) < 0.5 and max(dx.max(), dy.max()) < 4.0


def test_the_trained_model_finds_position_angles_the_untrained_model_does_not(catalogue, demo_run):
    """The model's own position angle, ``(theta_deg - 90) mod 180`` (not the moments'), on elongated
    galaxies: within a bound after the short training, and at least twice as good as the same
    network before training.

    Measured (96 demo galaxies, 33 with axis ratio < 0.5, 3 epochs): trained median error 5.5 deg
    (90th percentile 10.8); untrained 23 to 66 deg over four initialisations (23 for this seed).
    """
    from pipeline.model import build_model
    from pipeline.predict import predict_batch

    cat = read_catalog(catalogue)
    truth = demo_run["truth"].loc[list(cat["id"])]
    elongated = truth["axis_ratio"].to_numpy() < 0.5
    assert elongated.sum() >= 20
    theta = np.asarray(cat["theta_deg"], dtype=np.float64)
    trained = np.median(_axis_error(np.mod(theta - 90.0, 180.0), truth["pa_deg"])[elongated])

    config = demo_run["config"]
    torch.manual_seed(config.train.seed)  # the initialisation the training started from
    untrained_model = build_model(config.model).eval()
    store = open_store(demo_run["store"])
    images = torch.from_numpy(store.read_images(0, len(store)).astype(np.float32) / 255.0)
    with torch.no_grad():
        theta = predict_batch(untrained_model, images).theta_deg
    untrained = np.median(_axis_error(np.mod(np.asarray(theta) - 90.0, 180.0), truth["pa_deg"])[elongated])
    assert trained < 12.0, trained
    assert trained < 0.5 * untrained, (trained, untrained)
    # flag bit 1: a PA error (model or moments) above 20 degrees (the model has errors: K = 8)
    near_round = (np.asarray(cat["flags"]) & FLAG_ORIENTATION_ILL_DEFINED) > 0
    assert np.isfinite(np.asarray(cat["pa_err_deg"])).all()
    big_err = (np.asarray(cat["pa_err_deg"]) > 20.0) | (np.asarray(cat["moment_pa_err_deg"]) > 20.0)
    np.testing.assert_array_equal(near_round, big_err)


def test_query_then_stack(catalogue, demo_run, tmp_path, capsys):
    where = "moment_axis_ratio < 0.6 && (flags & 1) == 0"
    cat = read_catalog(catalogue)
    expected = int(np.count_nonzero((cat["moment_axis_ratio"] < 0.6) & ((cat["flags"] & 1) == 0)))
    assert expected > 5
    assert count(catalogue, where) == expected
    assert main(["query", str(catalogue), "--where", where, "--count"]) == 0
    assert capsys.readouterr().out.strip() == str(expected)
    out = tmp_path / "stack.fits"
    assert main(["stack", str(catalogue), "--store", str(demo_run["store"]), "--where", where, "--out", str(out),
                 "--method", "median", "--quiet"]) == 0
    fitsverify(out)
    with fits.open(out) as hdul:
        assert hdul[0].header["NSELECT"] == expected and hdul[1].header["NSTACK"] == expected
        assert hdul[0].header["CKPTSHA"] == cat.meta["CKPTSHA"]
        assert hdul[0].header["SELECT"] == where and hdul[0].header["METHOD"] == "median"
        assert hdul[1].data.shape == (3, 32, 32) and np.isfinite(hdul[1].data).all()
    assert (tmp_path / "stack.png").stat().st_size > 100
