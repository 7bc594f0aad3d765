"""Row filters (catalogs.query) and the ``galaxy-codae query`` command."""

from __future__ import annotations

import shutil
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
    query_catalog,
    row_mask,
    write_selection,
)
from pipeline.cli import main
from pipeline.errors import QueryError
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
    "true": lambda c: np.ones(N, bool),
    "1 > 2": lambda c: np.zeros(N, bool),
}


@pytest.fixture(scope="module")
def ids_fixed(cols):
    cols["id"][3] = "J000003.00+030000.0"  # a known id for the string cases
    return cols


@pytest.mark.parametrize("expression", list(CASES))
def test_filters_match_numpy(ids_fixed, expression):
    expected = CASES[expression](ids_fixed)
    got = row_mask(ids_fixed, expression)
    assert got.dtype == bool and got.shape == (N,)
    np.testing.assert_array_equal(got, expected)
    assert 0 < got.sum() < N or expression in ("true", "1 > 2") or "'J000003" in expression


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
    if shutil.which("fitsverify"):
        res = subprocess.run(["fitsverify", str(out)], capture_output=True, text=True, check=False).stdout
        assert "0 warning(s) and 0 error(s)" in res, res


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
        ("foo(x_pix) > 1", r"unknown function 'foo' at position 1"),
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
