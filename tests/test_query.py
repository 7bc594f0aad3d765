"""Row filters (catalogs.query) and the ``galaxy-codae query`` command."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from astropy import units as u
from astropy.io import fits

from catalogs.fits_io import read_catalog, write_catalog
from catalogs.query import (
    MAX_DEPTH,
    MAX_EXPRESSION_LENGTH,
    compile_filter,
    count,
    parse_cone,
    query_catalog,
    row_mask,
    write_selection,
)
from pipeline.cli import main
from pipeline.errors import QueryError
from tests.conftest import fitsverify
from tests.test_catalog import HEADER, LATENT_DIM, make_columns

N = 500


@pytest.fixture(scope="module")
def cols() -> dict[str, np.ndarray]:
    return make_columns(N, seed=7)


@pytest.fixture(scope="module")
def catalog(tmp_path_factory, cols):
    path = tmp_path_factory.mktemp("query") / "cat.fits"
    return write_catalog(cols, path, latent_dim=LATENT_DIM, header=HEADER)


def f64(a: np.ndarray) -> np.ndarray:
    """Filters compute in float64: widen float32 columns the same way for the reference."""
    return np.asarray(a, dtype=np.float64)


# expression -> the same selection done with numpy (nulls are never selected)
CASES = {
    "x_pix > 200": lambda c: f64(c["x_pix"]) > 200,
    "x_pix > 100.5 && y_pix <= 300": lambda c: (f64(c["x_pix"]) > 100.5) & (f64(c["y_pix"]) <= 300),
    "x_pix < 50 or y_pix > 400": lambda c: (f64(c["x_pix"]) < 50) | (f64(c["y_pix"]) > 400),
    "!(theta_deg >= 90)": lambda c: ~(f64(c["theta_deg"]) >= 90),
    "not theta_deg >= 90 and flags == 0": lambda c: (f64(c["theta_deg"]) < 90) & (c["flags"] == 0),
    "(flags & 4) == 0": lambda c: (c["flags"] & 4) == 0,
    "(flags & 1) != 0 || (flags & 2) != 0": lambda c: (c["flags"] & 3) != 0,
    "flags % 2 == 1": lambda c: c["flags"] % 2 == 1,
    "abs(z_0) < 0.5": lambda c: np.abs(f64(c["z_0"])) < 0.5,
    "sqrt(z_0**2 + z_1^2) > 1.2": lambda c: np.hypot(f64(c["z_0"]), f64(c["z_1"])) > 1.2,
    "-z_2 * 2 + 1 >= z_3 / 3": lambda c: -f64(c["z_2"]) * 2 + 1 >= f64(c["z_3"]) / 3,
    "-2**2 + 3.5 < z_0": lambda c: -0.5 < f64(c["z_0"]),  # -(2**2), not (-2)**2
    "log10(recon_mse) < -2.5": lambda c: np.log10(f64(c["recon_mse"])) < -2.5,
    "exp(z_1) > 2 && log(moment_axis_ratio) > -1": lambda c: (
        (np.exp(f64(c["z_1"])) > 2) & (np.log(f64(c["moment_axis_ratio"])) > -1)
    ),
    "sin(deg2rad(theta_deg)) > 0.5": lambda c: np.sin(np.deg2rad(f64(c["theta_deg"]))) > 0.5,
    "cos(theta_deg * 3.141592653589793 / 180) < 0": lambda c: np.cos(f64(c["theta_deg"]) * np.pi / 180) < 0,
    "max(x_pix, y_pix, 100) < 300": lambda c: np.maximum(np.maximum(f64(c["x_pix"]), f64(c["y_pix"])), 100) < 300,
    "min(x_pix, y_pix) > 150": lambda c: np.minimum(f64(c["x_pix"]), f64(c["y_pix"])) > 150,
    "dec > 0 && ra .lt. 180 .and. .not. (flags .eq. 7)": lambda c: (c["dec"] > 0) & (c["ra"] < 180) & (c["flags"] != 7),
    "pa_deg > 90": lambda c: f64(c["pa_deg"]) > 90,
    "pa_deg != 45": lambda c: ~np.isnan(c["pa_deg"]) & (f64(c["pa_deg"]) != 45),
    "!(pa_deg > 90)": lambda c: ~np.isnan(c["pa_deg"]) & ~(f64(c["pa_deg"]) > 90),
    "pa_deg > 90 || flags == 0": lambda c: (f64(c["pa_deg"]) > 90) | (c["flags"] == 0),
    "isnull(pa_deg)": lambda c: np.isnan(c["pa_deg"]),
    "defnull(pa_deg, -1) < 0": lambda c: np.isnan(c["pa_deg"]),
    "ID == 'J000003.00+030000.0' || id == \"nope\"": lambda c: c["id"] == "J000003.00+030000.0",
    "id < 'J000100'": lambda c: c["id"] < "J000100",
    "#row <= 10 && #row % 2 == 0": lambda c: (np.arange(1, N + 1) <= 10) & (np.arange(1, N + 1) % 2 == 0),
    "angsep(ra, dec, 180, 0) < 60": lambda c: (
        np.rad2deg(np.arccos(np.clip(np.cos(np.deg2rad(c["dec"])) * np.cos(np.deg2rad(c["ra"] - 180)), -1, 1))) < 60
    ),
    "circle(200, 250, 120, x_pix, y_pix)": lambda c: np.hypot(f64(c["x_pix"]) - 200, f64(c["y_pix"]) - 250) <= 120,
    "!circle(200, 250, 120, x_pix, y_pix)": lambda c: np.hypot(f64(c["x_pix"]) - 200, f64(c["y_pix"]) - 250) > 120,
    "box(200, 250, 160, 80, 0, x_pix, y_pix)": lambda c: (
        (np.abs(f64(c["x_pix"]) - 200) <= 80) & (np.abs(f64(c["y_pix"]) - 250) <= 40)
    ),
    "box(200, 250, 80, 160, 90, x_pix, y_pix)": lambda c: (  # a quarter turn swaps the sides
        (np.abs(f64(c["x_pix"]) - 200) <= 80 + 1e-9) & (np.abs(f64(c["y_pix"]) - 250) <= 40 + 1e-9)
    ),
    "ellipse(200, 250, 150, 60, 0, x_pix, y_pix)": lambda c: (
        ((f64(c["x_pix"]) - 200) / 150) ** 2 + ((f64(c["y_pix"]) - 250) / 60) ** 2 <= 1
    ),
    "near(pa_deg, 90, 20)": lambda c: np.abs(f64(c["pa_deg"]) - 90) <= 20,
    "!near(pa_deg, 90, 20)": lambda c: np.abs(f64(c["pa_deg"]) - 90) > 20,  # NaN rows are neither
    "near(ra, dec, 180, 0, 50)": lambda c: (
        np.rad2deg(np.arccos(np.clip(np.cos(np.deg2rad(c["dec"])) * np.cos(np.deg2rad(c["ra"] - 180)), -1, 1))) <= 50
    ),
    "strstr(id, '+1') > 0": lambda c: np.char.find(c["id"].astype(str), "+1") >= 0,
    "strstr(id, 'J') == 1 && strstr(id, 'nope') == 0": lambda c: np.ones(N, bool),
    "regfind(id, '^J0001[0-4]')": lambda c: np.array([i[:6] in {f"J0001{k}" for k in range(5)} for i in c["id"]]),
    "true": lambda c: np.ones(N, bool),
    "1 > 2": lambda c: np.zeros(N, bool),
}


@pytest.fixture(scope="module")
def ids_fixed(cols):
    """``cols`` with a known id for the string cases: a copy, so the shared columns (and the
    catalogue written from them) stay as made, whatever order the tests run in."""
    fixed = {name: np.array(values, copy=True) for name, values in cols.items()}
    fixed["id"][3] = "J000003.00+030000.0"
    return fixed


def test_the_string_cases_do_not_change_the_shared_columns(ids_fixed, cols, catalog):
    assert ids_fixed["id"][3] == "J000003.00+030000.0" != cols["id"][3]
    np.testing.assert_array_equal(cols["id"], make_columns(N, seed=7)["id"])
    assert list(read_catalog(catalog)["id"]) == list(cols["id"])


@pytest.mark.parametrize("expression", list(CASES))
def test_filters_match_numpy(ids_fixed, expression):
    expected = CASES[expression](ids_fixed)
    got = row_mask(ids_fixed, expression)
    assert got.dtype == bool and got.shape == (N,)
    np.testing.assert_array_equal(got, expected)
    assert 0 < got.sum() < N or expression in ("true", "1 > 2") or "'J000003" in expression or "nope" in expression


def test_query_catalog_file_matches_numpy(catalog, cols):
    t = query_catalog(catalog, "x_pix > 100.5 && (flags & 4) == 0", columns=["id", "x_pix", "flags"])
    expected = (f64(cols["x_pix"]) > 100.5) & ((cols["flags"] & 4) == 0)
    assert t.colnames == ["id", "x_pix", "flags"]
    assert list(t["id"]) == list(cols["id"][expected])
    assert t["x_pix"].unit == u.pix and t["x_pix"].dtype.isnative
    assert t["x_pix"].description and t["x_pix"].meta["ucd"] == "pos.cartesian.x;instr.pixel"
    assert count(catalog, "x_pix > 100.5 && (flags & 4) == 0") == expected.sum()
    assert count(catalog) == N and len(query_catalog(catalog, None)) == N


def test_selection_written_to_fits_keeps_units_ucds_and_descriptions(catalog, cols, tmp_path):
    out = tmp_path / "sel.fits"
    n = write_selection(catalog, out, "pa_deg > 90", columns=["id", "pa_deg", "z_1"])
    assert n == np.count_nonzero(f64(cols["pa_deg"]) > 90)
    t = read_catalog(out)
    assert len(t) == n and t.colnames == ["id", "pa_deg", "z_1"]
    assert t["pa_deg"].unit == u.deg and t["z_1"].meta["ucd"] == "src.morph.param"
    hdr = fits.getheader(out, 1)
    assert hdr["SELECT"] == "pa_deg > 90" and hdr["CKPTSHA"] == HEADER["checkpoint_sha256"]
    assert hdr["SRCROWS"] == N and hdr["TCOMM2"].startswith("position angle")
    fitsverify(out)


# ---------------------------------------------------------------- errors


DTYPES = {name: np.asarray(a).dtype for name, a in make_columns(2).items()}


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("x_pix > 3 && zz < 1", r"unknown column 'zz' at position 14 in 'x_pix > 3 && zz < 1'"),
        ("x_pxi > 3", r"unknown column 'x_pxi' \(did you mean 'x_pix'\?\) at position 1"),
        ("x_pix > ", r"expression ends too early at position 9"),
        ("(x_pix > 3", r"expected '\)' to close '\(' at position 1, found end of expression at position 11"),
        ("x_pix > 3)", r"unexpected '\)' at position 10"),
        ("x_pix = 3", r"'=' is not an operator \(use '==' to compare\) at position 7"),
        ("x_pix > 'a", r"unterminated string at position 9"),
        ("x_pix > 3 @ 2", r"unexpected character '@' at position 11"),
        ("foo(x_pix) > 1", r"unknown function 'foo'.* at position 1 in 'foo\(x_pix\) > 1'; functions: abs, .*near"),
        ("nera(ra, dec, 1, 2, 3)", r"unknown function 'nera' \(did you mean 'near'\?\) at position 1"),
        ("x_pix(3) > 1", r"unknown function 'x_pix' \('x_pix' is a column, not a function\)"),
        ("abs(x_pix, 2) > 1", r"abs takes 1 argument\(s\), got 2 at position 1"),
        ("id > 3", r"cannot compare a string with an integer using '>' at position 4"),
        ("x_pix + 1", r"must be a condition .* at position 1"),
        ("flags & 4 == 0", r"'&' needs two integers .* at position 7"),
        ("x_pix > 1 && 2", r"'&&' \(and\) needs conditions on both sides, got an integer at position 14"),
        ("1 < x_pix < 3", r"cannot compare a condition with an integer using '<' at position 11"),
        ("", r"empty expression at position 1"),
    ],
)
def test_errors_name_the_problem_and_position(expression, message):
    with pytest.raises(QueryError, match=message) as info:
        compile_filter(expression, DTYPES)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "expression",
    [
        "__import__('os').system('x')",
        "__import__('os')",
        "x_pix.__class__",
        "x_pix.__class__.__bases__[0].__subclasses__()",
        "lambda: 1",
        "(lambda x: x)(1)",
        "eval('1')",
        "exec('import os')",
        "open('/etc/passwd').read()",
        "[c for c in ()]",
        "x_pix if 1 else 0",
        "{}",
        "x_pix; import os",
        "getattr(x_pix, 'real') > 0",
        "x_pix > 1\n__import__('os')",
        "'a' * 10**10",
        "x_pix[0] > 1",
        "x_pix > 1 # comment",
        "`x_pix` > 1",
    ],
)
def test_malicious_strings_are_rejected(expression):
    with pytest.raises(QueryError):
        row_mask({"x_pix": np.arange(3.0)}, expression)


def test_huge_numbers_are_floats_not_python_integers():
    # Python would try to build 9**9**9 exactly; the filter works in float64 (inf).
    mask = row_mask({"x_pix": np.arange(3.0)}, "9" * 400 + " ** 9 ** 9 > 1 && x_pix > 0 && 9 ** 9 ** 9 > 1")
    assert mask.tolist() == [False, True, True]


def test_very_long_input_is_rejected_fast():
    expression = "x_pix > 1 && " * 100_000 + "x_pix > 1"
    with pytest.raises(QueryError, match=f"characters long; the limit is {MAX_EXPRESSION_LENGTH}"):
        compile_filter(expression, DTYPES)


@pytest.mark.parametrize(
    "expression",
    [
        "(" * (MAX_DEPTH + 5) + "x_pix > 1" + ")" * (MAX_DEPTH + 5),
        "-" * 500 + "x_pix > 1",
        "!" * 500 + "(x_pix > 1)",
        "x_pix" + " + x_pix" * 400 + " > 1",
        "abs(" * 300 + "x_pix" + ")" * 300 + " > 1",
    ],
)
def test_deep_nesting_is_rejected(expression):
    with pytest.raises(QueryError, match=r"nested too deeply .* at position \d+"):
        compile_filter(expression, DTYPES)


def test_long_or_chains_within_the_limits_work():
    ids = [f"J{i:06d}" for i in range(150)]
    expression = " || ".join(f"id == '{i}'" for i in ids[::3])
    mask = row_mask({"id": np.array(ids)}, expression)
    assert mask.sum() == 50 and mask[::3].all()


def test_quoted_strings_are_data_not_code():
    ids = np.array(["it's", 'say "hi"', "x"])
    assert row_mask({"id": ids}, "id == 'it''s'").tolist() == [True, False, False]
    assert row_mask({"id": ids}, "id == 'say \"hi\"'").tolist() == [False, True, False]


# ---------------------------------------------------------------- command line


def test_cli_prints_a_text_table(catalog, cols, capsys):
    assert main(["query", str(catalog), "--where", "x_pix > 400", "--columns", "id,x_pix"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["id", "x_pix"] and out[1].split() == ["pix"]
    assert len(out) == 3 + np.count_nonzero(f64(cols["x_pix"]) > 400)


def test_cli_count(catalog, cols, capsys):
    assert main(["query", str(catalog), "--where", "flags == 0", "--count"]) == 0
    assert capsys.readouterr().out.strip() == str(np.count_nonzero(cols["flags"] == 0))


def test_cli_empty_selection_says_so_and_exits_0(catalog, capsys):
    assert main(["query", str(catalog), "--where", "x_pix > 1e9"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and "no rows" in captured.err and "x_pix > 1e9" in captured.err


def test_cli_out_writes_a_catalogue_and_refuses_to_overwrite(catalog, tmp_path, capsys):
    out = tmp_path / "sel.fits"
    assert main(["query", str(catalog), "--where", "flags == 1", "--out", str(out)]) == 0
    assert out.exists() and len(read_catalog(out)) > 0
    assert main(["query", str(catalog), "--where", "flags == 1", "--out", str(out)]) == 2
    assert "exists" in capsys.readouterr().err
    assert main(["query", str(catalog), "--where", "flags == 2", "--out", str(out), "--overwrite"]) == 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--where", "x_pix > 3 && zz < 1"], "unknown column 'zz' at position 14"),
        (["--where", "x_pix >"], "ends too early"),
        (["--columns", "id,nope"], "unknown column 'nope' in the column list"),
    ],
)
def test_cli_bad_expression_exits_2(catalog, capsys, argv, message):
    assert main(["query", str(catalog), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_cli_subprocess_exit_codes(catalog, tmp_path):
    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "pipeline", "query", *args], capture_output=True, text=True)

    ok = run(str(catalog), "--where", "x_pix > 1e9")
    assert ok.returncode == 0 and "no rows" in ok.stderr
    missing = run(str(tmp_path / "missing.fits"), "--where", "x_pix > 1")
    assert missing.returncode == 2 and "not found" in missing.stderr
    bad = run(str(catalog), "--where", "__import__('os').system('echo pwned')")
    assert bad.returncode == 2 and "pwned" not in bad.stdout


# ---------------------------------------------------------------- regions, patterns and names


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("regfind(id, '(a+)+$')", r"repeats a group that repeats .* at position 13"),
        ("regfind(id, '[')", r"bad regular expression .* at position 13"),
        ("regfind(id, id)", r"regfind needs its regular expression as a quoted string at position 13"),
        ("regfind(id, '" + "a" * 300 + "')", r"regular expression is 300 characters long; the limit is 256"),
        ("strstr(x_pix, 'a') > 0", r"strstr needs strings, got a number at position 8"),
        ("circle(1, 2, 3, x_pix) > 0", r"circle takes 5 argument\(s\), got 4 at position 1 .*circle\(xc, yc, r, X, Y\)"),
        ("near(1, 2)", r"near takes 3 or 5 argument\(s\), got 2"),
        ("zz > 1", r"unknown column 'zz' at position 1 in 'zz > 1'; columns: id, ra, dec, x_pix, .*z_0 ... z_3"),
    ],
)
def test_function_and_name_errors_say_what_exists(expression, message):
    with pytest.raises(QueryError, match=message) as info:
        compile_filter(expression, DTYPES)
    assert "\n" not in str(info.value)


def test_regions_are_null_where_a_coordinate_is_nan():
    x = np.array([0.0, np.nan, 5.0])
    y = np.array([0.0, 0.0, 0.0])
    assert row_mask({"x": x, "y": y}, "circle(0, 0, 1, x, y)").tolist() == [True, False, False]
    assert row_mask({"x": x, "y": y}, "!circle(0, 0, 1, x, y)").tolist() == [False, False, True]
    assert row_mask({"x": x, "y": y}, "isnull(x) || circle(0, 0, 1, x, y)").tolist() == [True, True, False]


# ---------------------------------------------------------------- cone search


def _separation_deg(ra, dec, ra0, dec0):
    from astropy.coordinates import SkyCoord

    return SkyCoord(ra * u.deg, dec * u.deg).separation(SkyCoord(ra0 * u.deg, dec0 * u.deg)).deg


@pytest.mark.parametrize(
    ("ra", "dec", "radius", "expected"),
    [
        ("150.5", "-2.25", "5arcsec", (150.5, -2.25, 5 / 3600)),
        ("10h02m00s", "+02d15m00s", "1.5arcmin", (150.5, 2.25, 1.5 / 60)),
        (" 370", "0", "0.1deg", (10.0, 0.0, 0.1)),
    ],
)
def test_parse_cone_reads_units(ra, dec, radius, expected):
    cone = parse_cone(ra, dec, radius)
    np.testing.assert_allclose([cone.ra_deg, cone.dec_deg, cone.radius_deg], expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("10", "0", "5"), r"radius '5' needs a unit, e.g. 5arcsec"),
        (("10", "0", "5pix"), r"radius '5pix' is not an angle"),
        (("10", "0", "200deg"), r"radius must be in \(0, 180\] degrees"),
        (("10", "95", "1deg"), r"is not on the sky"),
        (("ten", "0", "1deg"), r"cannot read the right ascension 'ten'"),
    ],
)
def test_parse_cone_errors(args, message):
    with pytest.raises(QueryError, match=message):
        parse_cone(*args)


def test_cone_search_matches_astropy_and_combines_with_where(catalog, cols):
    ra0, dec0 = float(cols["ra"][11]), float(cols["dec"][11])
    sep = _separation_deg(cols["ra"], cols["dec"], ra0, dec0)
    radius = float(np.sort(sep)[40])  # about 40 neighbours
    cone = parse_cone(str(ra0), str(dec0), f"{radius * 3600:.6f}arcsec")
    inside = sep <= cone.radius_deg
    assert 30 < inside.sum() < 50
    t = query_catalog(catalog, None, ["id"], cone=cone)
    assert sorted(t["id"]) == sorted(cols["id"][inside])
    both = (cols["flags"] & 1) == 0
    assert count(catalog, "(flags & 1) == 0", cone=cone) == np.count_nonzero(inside & both)


def test_cli_cone(catalog, cols, capsys, tmp_path):
    ra0, dec0 = float(cols["ra"][5]), float(cols["dec"][5])
    inside = _separation_deg(cols["ra"], cols["dec"], ra0, dec0) <= 20.0
    assert main(["query", str(catalog), "--cone", str(ra0), str(dec0), "20deg", "--count"]) == 0
    assert capsys.readouterr().out.strip() == str(np.count_nonzero(inside))
    out = tmp_path / "cone.fits"
    assert main(["query", str(catalog), "--cone", str(ra0), str(dec0), "1200arcmin", "--out", str(out)]) == 0
    assert len(read_catalog(out)) == np.count_nonzero(inside)
    assert fits.getheader(out, 1)["CONE"].endswith("20deg")
    capsys.readouterr()
    assert main(["query", str(catalog), "--cone", str(ra0), str(dec0), "20", "--count"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "needs a unit" in err[0]


# ---------------------------------------------------------------- output formats and string ids


@pytest.mark.parametrize("name", ["sel.fits", "sel.parquet", "sel.ecsv", "sel.vot", "sel.xml", "sel.csv"])
def test_out_format_follows_the_extension_and_keeps_ids_as_strings(catalog, cols, tmp_path, name, capsys):
    from astropy.table import Table

    out = tmp_path / name
    assert main(["query", str(catalog), "--where", "flags == 0", "--columns", "id,x_pix,pa_deg", "--out",
                 str(out)]) == 0
    expected = cols["id"][cols["flags"] == 0]
    assert f"wrote {len(expected)} rows to {out} (" in capsys.readouterr().err
    head = out.read_bytes()[:64]
    fmt = {".fits": "fits", ".parquet": "parquet", ".ecsv": "ascii.ecsv", ".vot": "votable", ".xml": "votable",
           ".csv": "ascii.csv"}[out.suffix]
    assert head.startswith(b"SIMPLE") == (fmt == "fits") and head.startswith(b"PAR1") == (fmt == "parquet")
    t = Table.read(out, format=fmt, **({"character_as_bytes": False} if fmt == "fits" else {}))
    assert list(t["id"]) == list(expected) and t["id"].dtype.kind == "U"
    nulls = np.isnan(np.ma.filled(np.ma.asarray(t["pa_deg"], dtype=float), np.nan))  # NaN, or masked on reading
    np.testing.assert_array_equal(nulls, np.isnan(cols["pa_deg"][cols["flags"] == 0]))
    if fmt != "ascii.csv":
        assert t["x_pix"].unit == u.pix
    if fmt not in ("ascii.csv", "fits"):  # astropy does not read TCOMM; read_catalog does
        assert t["x_pix"].description.startswith("centroid x")
    if fmt in ("parquet", "ascii.ecsv", "votable"):
        assert t["x_pix"].meta.get("ucd") == "pos.cartesian.x;instr.pixel"
    if fmt in ("parquet", "ascii.ecsv"):
        assert t.meta["CKPTSHA"] == HEADER["checkpoint_sha256"] and t.meta["SELECT"] == "flags == 0"


def test_format_option_overrides_the_extension_and_bad_extensions_stop_before_any_work(catalog, tmp_path, capsys):
    out = tmp_path / "sel.dat"
    assert main(["query", str(catalog), "--where", "flags == 0", "--out", str(out), "--format", "ecsv"]) == 0
    assert out.read_text().startswith("# %ECSV")
    capsys.readouterr()
    missing = tmp_path / "missing.fits"
    for name in ("sel.txt", "sel", "sel.fits.gz"):
        assert main(["query", str(missing), "--where", "nope > 1", "--out", str(tmp_path / name)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "names no output format" in err[0] and ".ecsv" in err[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sel.dat"]


def test_overwrite_replaces_own_text_outputs_but_not_foreign_files(catalog, tmp_path, capsys):
    for name in ("own.csv", "own.ecsv", "own.vot"):
        out = tmp_path / name
        assert main(["query", str(catalog), "--where", "flags == 0", "--out", str(out)]) == 0
        assert main(["query", str(catalog), "--where", "flags == 1", "--out", str(out), "--overwrite"]) == 0
    foreign = tmp_path / "notes.csv"
    foreign.write_text("name,score\nada,3\n")
    assert main(["query", str(catalog), "--where", "flags == 0", "--out", str(foreign), "--overwrite"]) == 2
    assert "did not write" in capsys.readouterr().err
    assert foreign.read_text() == "name,score\nada,3\n"


def test_pandas_merge_with_the_input_catalogue_matches_every_row(catalog, cols):
    """The README's line: the FITS catalogue into pandas with string ids, merged on the survey's iauname."""
    import pandas as pd
    from astropy.table import Table

    rng = np.random.default_rng(0)
    survey = pd.DataFrame({"iauname": rng.permutation(cols["id"]), "petro_th50": rng.uniform(1, 9, N)})
    df = Table.read(catalog, character_as_bytes=False).to_pandas()  # the README's one-liner
    merged = df.merge(survey, left_on="id", right_on="iauname")
    assert len(merged) == N and (merged["id"] == merged["iauname"]).all()
    ours = read_catalog(catalog).to_pandas().merge(survey, left_on="id", right_on="iauname")
    assert len(ours) == N


# ---------------------------------------------------------------- nulls in a real catalogue


def test_isnull_pa_deg_selects_exactly_the_rows_of_unknown_orientation(demo_run, tmp_path):
    """pa_deg is NaN where flag bit 1 (orientation ill-defined) is set, theta_deg is kept, and the
    query language's null test agrees with the flag."""
    out = tmp_path / "cat.fits"
    assert main(["infer", "--store", str(demo_run["store"]), "--checkpoint", str(demo_run["checkpoint"]), "--out",
                 str(out), "--quiet"]) == 0
    cat = read_catalog(out)
    unknown = (np.asarray(cat["flags"]) & 1) != 0
    assert 0 < unknown.sum() < len(cat)
    np.testing.assert_array_equal(np.isnan(np.asarray(cat["pa_deg"])), unknown)
    assert np.isfinite(np.asarray(cat["theta_deg"])).all()
    assert count(out, "isnull(pa_deg)") == count(out, "(flags & 1) != 0") == unknown.sum()
    assert count(out, "!isnull(pa_deg) && pa_deg >= 0") == len(cat) - unknown.sum()
    assert read_catalog(out)["pa_deg"].description.endswith("NaN where unknown (flags bit 1)")
