"""Every error's first stderr line is the project's one line: no library warning before it, user
text with control characters escaped, whatever the command."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import warnings
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from pipeline.cli import main
from pipeline.errors import BadInputError, one_line

REPO = Path(__file__).resolve().parents[1]


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` grey pixels and holds none (what a decompression bomb looks like)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def test_one_line_escapes_control_characters_and_keeps_the_rest():
    assert one_line("plain text, é and ü") == "plain text, é and ü"
    assert one_line("a\nb\tc\x00d\x1b[31m\x7f") == "a\\nb\\tc\\x00d\\x1b[31m\\x7f"
    assert "\n" not in one_line("x\u2028y") and len(one_line("x\ry").splitlines()) == 1


def test_user_text_with_a_newline_is_echoed_on_one_line(tmp_path, capsys):
    bad = tmp_path / "two\nlines.parquet"
    assert main(["ingest", "--catalog", str(bad), "--images", str(tmp_path), "--out", str(tmp_path / "o.zarr")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("galaxy-codae ingest: error: catalogue ")
    assert "two\\nlines.parquet" in err


def test_a_library_warning_comes_after_the_error_line(monkeypatch, capsys):
    import pipeline.cli.ingest as ingest_cli

    def noisy(args):
        warnings.warn("a library's advice, several words long", UserWarning, stacklevel=1)
        raise BadInputError("the step's own one-line reason")

    monkeypatch.setattr(ingest_cli, "run", noisy)
    with warnings.catch_warnings():
        warnings.simplefilter("default")  # as outside pytest, where warnings are printed, not raised
        assert main(["ingest", "--catalog", "c", "--images", "i", "--out", "o"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "galaxy-codae ingest: error: the step's own one-line reason"
    assert err[1:] == ["galaxy-codae ingest: warning: UserWarning: a library's advice, several words long"]


def test_an_oversized_cutout_is_a_rejected_row_and_no_pil_warning_is_printed(tmp_path):
    """A run in a fresh interpreter, with Python's default warning filters (not pytest's)."""
    (tmp_path / "img").mkdir()
    rng = np.random.default_rng(0)
    rows = []
    for i in range(8):
        Image.fromarray(rng.integers(0, 255, (32, 32), dtype=np.uint8)).save(tmp_path / "img" / f"g{i}.png")
        rows.append({"iauname": f"g{i}", "ra": 1.0 + i, "dec": 2.0, "file_loc": f"g{i}.png"})
    (tmp_path / "img" / "g3.png").write_bytes(_png_header_only(9000, 9000))  # 81 M pixels
    pd.DataFrame(rows).to_parquet(tmp_path / "cat.parquet")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    proc = subprocess.run([sys.executable, "-m", "pipeline", "ingest", "--catalog", str(tmp_path / "cat.parquet"),
                           "--images", str(tmp_path / "img"), "--out", str(tmp_path / "st.zarr"), "--quiet"],
                          capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr.splitlines()
    assert err[0].startswith("galaxy-codae ingest: error: 1 of 8 rows rejected"), err
    assert "DecompressionBomb" not in proc.stderr and len(err) == 1, err
    rej = pd.read_csv(tmp_path / "st.zarr.rejects.csv")
    assert list(rej["reason"]) == ["wrong_dimensions"] and "9000x9000 pixels" in rej["detail"][0]


def test_a_where_expression_with_control_characters_is_echoed_on_one_line(tmp_path, capsys):
    from catalogs.fits_io import write_catalog

    cat = write_catalog({"id": np.array(["a", "b"]), "x_pix": np.array([1.0, 2.0], np.float32)},
                        tmp_path / "c.fits", latent_dim=1, partial=True)
    for where in ("x_pix >\n zz", "x_pix > 1 &&\r\n\x1b[2J zz"):
        assert main(["query", str(cat), "--where", where, "--count"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "\x1b" not in err and "\r" not in err, repr(err)
        assert err.startswith("galaxy-codae query: error: ")
