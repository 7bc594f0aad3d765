"""The catalogue schema, the FITS/Parquet writer and reader (catalogs.schema, catalogs.fits_io)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pytest
from astropy import units as u
from astropy.io import fits
from astropy.io.votable.ucd import check_ucd
from astropy.table import MaskedColumn, Table

from catalogs.fits_io import CATALOG_EXTNAME, read_catalog, write_catalog
from catalogs.schema import (
    FLAG_BITS,
    FLAG_CENTROID_NEAR_EDGE,
    FLAG_NO_DIRECTION,
    FLAG_ORIENTATION_ILL_DEFINED,
    FLAG_RECON_OUTLIER,
    catalog_schema,
    column_names,
    column_spec,
    schema_markdown,
)
from pipeline.errors import BadInputError
from tests.conftest import fitsverify

LATENT_DIM = 4
SHA = "0123456789abcdef" * 4


def make_columns(n: int = 200, latent_dim: int = LATENT_DIM, seed: int = 1) -> dict[str, np.ndarray]:
    """A random catalogue (fixed seed) with every schema column."""
    rng = np.random.default_rng(seed)
    cols: dict[str, np.ndarray] = {
        "id": np.array([f"J{i:06d}.{rng.integers(100):02d}+{i % 90:02d}0000.0" for i in range(n)]),
        "ra": rng.uniform(0, 360, n),
        "dec": rng.uniform(-90, 90, n),
        "x_pix": rng.uniform(0, 423, n).astype(np.float32),
        "y_pix": rng.uniform(0, 423, n).astype(np.float32),
        "theta_deg": rng.uniform(0, 360, n).astype(np.float32),
        "moment_pa_deg": rng.uniform(0, 180, n).astype(np.float32),
        "moment_axis_ratio": rng.uniform(0.1, 1, n).astype(np.float32),
        "recon_mse": rng.exponential(0.01, n).astype(np.float32),
        "flags": rng.integers(0, 8, n).astype(np.int16),
    }
    cols["pa_deg"] = np.mod(cols["theta_deg"] - 90, 180).astype(np.float32)
    cols["pa_deg"][::17] = np.nan  # orientation unknown
    for k in range(latent_dim):
        cols[f"z_{k}"] = rng.normal(size=n).astype(np.float32)
    for name, scale in (("pa_err_deg", 2.0), ("x_err_pix", 0.5), ("y_err_pix", 0.5), ("moment_pa_err_deg", 1.0)):
        cols[name] = rng.exponential(scale, n).astype(np.float32)
    cols["direction_snr"] = rng.normal(0, 5, n).astype(np.float32)
    return cols


HEADER = {
    "checkpoint_sha256": SHA,
    "image_size": 64,
    "crop": 212,
    "config": {"batch_size": 256, "device": "cpu", "workers": 2, "note": "x" * 150, "quote": "it's"},
}


@pytest.fixture
def catalog(tmp_path):
    return write_catalog(make_columns(), tmp_path / "cat.fits", latent_dim=LATENT_DIM, header=HEADER)


# ---------------------------------------------------------------- schema


def test_schema_columns_follow_the_contract():
    names = column_names(3)
    assert names == [
        "id", "ra", "dec", "x_pix", "y_pix", "theta_deg", "pa_deg", "moment_pa_deg", "moment_axis_ratio",
        "z_0", "z_1", "z_2", "recon_mse", "pa_err_deg", "x_err_pix", "y_err_pix", "moment_pa_err_deg",
        "direction_snr", "flags",
    ]  # fmt: skip
    dtypes = {c.name: c.dtype for c in catalog_schema(3)}
    assert dtypes["id"].kind == "U"
    assert dtypes["ra"] == dtypes["dec"] == np.float64
    assert all(dtypes[n] == np.float32 for n in names if n not in ("id", "ra", "dec", "flags"))
    assert dtypes["flags"] == np.int16


def test_every_column_has_unit_ucd_and_description():
    units = {"ra": "deg", "dec": "deg", "x_pix": "pix", "y_pix": "pix", "theta_deg": "deg", "pa_deg": "deg",
             "moment_pa_deg": "deg", "pa_err_deg": "deg", "x_err_pix": "pix", "y_err_pix": "pix",
             "moment_pa_err_deg": "deg"}  # fmt: skip
    for c in catalog_schema(8):
        assert c.unit == units.get(c.name), c.name
        if c.unit:
            u.Unit(c.unit, format="fits")  # a FITS-standard unit string
        assert check_ucd(c.ucd, check_controlled_vocabulary=True), c.ucd
        assert 0 < len(c.description) <= 68, c.name  # fits one TCOMM card
        assert re.fullmatch(r"[ -~]+", c.description)
        assert c.tdisp


def test_flag_constants_are_distinct_bits():
    assert (FLAG_ORIENTATION_ILL_DEFINED, FLAG_CENTROID_NEAR_EDGE, FLAG_RECON_OUTLIER, FLAG_NO_DIRECTION) == (1, 2, 4, 8)
    assert set(FLAG_BITS) == {1, 2, 4, 8}


def test_column_spec_knows_latents_and_rejects_others():
    assert column_spec("z_17").ucd == "src.morph.param"
    assert column_spec("ra").unit == "deg"
    assert column_spec("z_01") is None and column_spec("nope") is None


def test_schema_markdown_lists_every_column():
    md = schema_markdown(8)
    for name in ("id", "ra", "dec", "x_pix", "pa_deg", "moment_axis_ratio", "recon_mse", "flags"):
        assert f"`{name}`" in md
    assert "`z_0` ... `z_7`" in md
    assert "pos.eq.ra;meta.main" in md


# ---------------------------------------------------------------- writing FITS


def test_fitsverify_has_no_errors_and_no_warnings(catalog):
    fitsverify(catalog)


def test_every_column_has_tunit_tucd_and_tcomm(catalog):
    with fits.open(catalog) as hdul:
        assert hdul[1].name == CATALOG_EXTNAME
        hdr = hdul[1].header
        assert hdr["TFIELDS"] == len(column_names(LATENT_DIM))
        for i, spec in enumerate(catalog_schema(LATENT_DIM), start=1):
            assert hdr[f"TTYPE{i}"] == spec.name
            assert hdr[f"TUCD{i}"] == spec.ucd
            assert hdr[f"TCOMM{i}"] == spec.description
            assert hdr.get(f"TUNIT{i}") == spec.unit
        assert hdr["TFORM2"] == "D" and hdr["TFORM4"] == "E" and hdr[f"TFORM{hdr['TFIELDS']}"] == "I"


def test_provenance_header(catalog):
    hdr = fits.getheader(catalog, 1)
    assert hdr["CKPTSHA"] == SHA
    assert hdr["LATDIM"] == LATENT_DIM
    assert hdr["IMGSIZE"] == 64 and hdr["CROP"] == 212
    assert hdr["SWVERS"] and hdr["CREATOR"].startswith("galaxy-codae")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", hdr["DATE"])
    assert '"batch_size": 256' in hdr["INFCONF"] and "it's" in hdr["INFCONF"]  # long string via CONTINUE
    assert hdr["LONGSTRN"] == "OGIP 1.0"


def test_read_back_native_endian_with_units(catalog):
    cols = make_columns()
    t = read_catalog(catalog)
    assert t.colnames == column_names(LATENT_DIM)
    for name in t.colnames:
        arr = np.asarray(t[name])
        if arr.dtype.kind != "U":
            assert arr.dtype.isnative, name
            assert arr.dtype == catalog_schema(LATENT_DIM)[t.colnames.index(name)].dtype
        np.testing.assert_array_equal(arr, cols[name])  # NaN == NaN here
    assert t["ra"].unit == u.deg and t["x_pix"].unit == u.pix and t["z_0"].unit is None
    assert t["x_pix"].meta["ucd"] == "pos.cartesian.x;instr.pixel"
    assert t["recon_mse"].description.startswith("mean squared error")
    assert t.meta["CKPTSHA"] == SHA
    assert np.isnan(t["pa_deg"][0])


def test_read_some_columns(catalog):
    t = read_catalog(catalog, columns=["dec", "id"])
    assert t.colnames == ["dec", "id"]
    with pytest.raises(BadInputError, match="no column 'nope'"):
        read_catalog(catalog, columns=["nope"])


def test_parquet_round_trip(tmp_path):
    cols = make_columns(50)
    path = write_catalog(cols, tmp_path / "cat.pq", latent_dim=LATENT_DIM, header=HEADER, format="parquet")
    t = read_catalog(path)
    assert t.colnames == column_names(LATENT_DIM)
    np.testing.assert_array_equal(np.asarray(t["x_pix"]), cols["x_pix"])
    assert list(t["id"]) == list(cols["id"])
    assert t["dec"].unit == u.deg and t["flags"].meta["ucd"] == "meta.code.qual"
    assert t.meta["CKPTSHA"] == SHA and t.meta["LATDIM"] == LATENT_DIM


def test_accepts_an_astropy_table_with_masked_floats(tmp_path):
    cols = make_columns(20)
    table = Table(cols)
    table["pa_deg"] = MaskedColumn(np.asarray(cols["pa_deg"]), mask=np.arange(20) < 5)
    table["ra"].unit = u.deg
    t = read_catalog(write_catalog(table, tmp_path / "t.fits", latent_dim=LATENT_DIM))
    assert np.isnan(t["pa_deg"][:5]).all()
    table["ra"].unit = u.rad
    with pytest.raises(BadInputError, match="column 'ra' has unit rad"):
        write_catalog(table, tmp_path / "u.fits", latent_dim=LATENT_DIM)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c.pop("recon_mse"), "lacks column"),
        (lambda c: c.update(extra=c["ra"]), "column 'extra' is not in the catalogue schema"),
        (lambda c: c.update(z_9=c["ra"]), "beyond latent_dim=4"),
        (lambda c: c["id"].__setitem__(3, c["id"][0]), "not unique"),
        (lambda c: c.update(flags=c["flags"].astype(float)), "must be integer"),
        (lambda c: c.update(x_pix=c["x_pix"][:-1]), "rows, expected"),
        (lambda c: c["id"].__setitem__(0, "Jé"), "non-ASCII"),
    ],
)
def test_bad_columns_are_refused(tmp_path, change, message):
    cols = make_columns(20)
    change(cols)
    with pytest.raises(BadInputError, match=message):
        write_catalog(cols, tmp_path / "c.fits", latent_dim=LATENT_DIM)
    assert list(tmp_path.iterdir()) == []


def test_bad_header_is_refused(tmp_path):
    cols = make_columns(5)
    for header, message in [
        ({"checkpoint_sha256": "abc"}, "64 lower-case hex"),
        ({"NAXIS2": 3}, "set by the writer"),
        ({"not a keyword": 1}, "not a FITS keyword"),
        ({"OBSERVER": "Zoë"}, "printable ASCII"),
    ]:
        with pytest.raises(BadInputError, match=message):
            write_catalog(cols, tmp_path / "c.fits", latent_dim=LATENT_DIM, header=header)


def test_refuses_to_overwrite_unless_asked(catalog):
    before = catalog.read_bytes()
    with pytest.raises(BadInputError, match=r"exists; pass --overwrite to replace it$"):
        write_catalog(make_columns(3), catalog, latent_dim=LATENT_DIM)
    assert catalog.read_bytes() == before
    write_catalog(make_columns(3), catalog, latent_dim=LATENT_DIM, overwrite=True)
    assert len(read_catalog(catalog)) == 3


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(fits.HDUList, "writeto", boom)
    with pytest.raises(OSError, match="disk full"):
        write_catalog(make_columns(5), tmp_path / "c.fits", latent_dim=LATENT_DIM)
    assert list(tmp_path.iterdir()) == []


def test_failed_overwrite_keeps_the_old_file(catalog, monkeypatch):
    before = catalog.read_bytes()
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError("rename failed")))
    with pytest.raises(OSError, match="rename failed"):
        write_catalog(make_columns(5), catalog, latent_dim=LATENT_DIM, overwrite=True)
    assert catalog.read_bytes() == before
    assert sorted(p.name for p in catalog.parent.iterdir()) == [catalog.name]


def test_empty_catalogue_is_valid(tmp_path):
    cols = {k: v[:0] for k, v in make_columns(5).items()}
    path = write_catalog(cols, tmp_path / "empty.fits", latent_dim=LATENT_DIM)
    assert len(read_catalog(path)) == 0
    fitsverify(path)


def test_reading_missing_or_foreign_files(tmp_path):
    with pytest.raises(BadInputError, match="not found"):
        read_catalog(tmp_path / "nope.fits")
    (tmp_path / "x.fits").write_text("hello")
    with pytest.raises(BadInputError, match="neither a FITS nor a Parquet"):
        read_catalog(tmp_path / "x.fits")


def test_catalogs_stands_on_numpy_and_astropy_alone():
    """Every catalogs module imports without pipeline, torch, prefect, e2cnn, zarr or dask."""
    import pkgutil

    import catalogs

    modules = sorted(f"catalogs.{m.name}" for m in pkgutil.iter_modules(catalogs.__path__))
    assert {"catalogs.rowfilter", "catalogs.select", "catalogs.formats", "catalogs.query"} <= set(modules)
    code = (
        f"import sys, {', '.join(modules)}\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('pipeline', 'torch', 'prefect', 'e2cnn', 'zarr', 'dask')]\n"
        "print(bad); sys.exit(1 if bad else 0)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    # the query command itself pulls in no torch, prefect, zarr or dask either
    code = ("import sys, pipeline.cli.query\n"
            "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'prefect', 'e2cnn', 'zarr', 'dask')]\n"
            "print(bad); sys.exit(1 if bad else 0)\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stdout + res.stderr


def test_pipeline_errors_are_the_catalogue_errors():
    """One hierarchy: the command line's `except BadInputError` catches a catalogue's errors (exit 2)."""
    import catalogs.errors
    import pipeline.errors

    assert pipeline.errors.BadInputError is catalogs.errors.BadInputError
    assert issubclass(pipeline.errors.QueryError, pipeline.errors.BadInputError)
    assert issubclass(pipeline.errors.ConfigError, catalogs.errors.GalaxyCodaeError)
