"""catalogs.atomic: writes that are whole or absent, and what --overwrite may replace."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from catalogs import atomic


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic.atomic_open(path, "w") as f:
            f.write("half of the new")
            raise RuntimeError("boom")
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["out.txt"]
    with atomic.atomic_path(tmp_path / "a.npy", suffix=".npy") as tmp:
        np.save(tmp, np.arange(3))  # np.save keeps a name that already ends in .npy
    assert np.load(tmp_path / "a.npy").tolist() == [0, 1, 2]
    atomic.write_json(tmp_path / "b.json", {"k": 1})
    assert json.loads((tmp_path / "b.json").read_text()) == {"k": 1}
    assert sorted(os.listdir(tmp_path)) == ["a.npy", "b.json", "out.txt"]


def test_files_written_together_are_all_renamed_or_none(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_text("old a")
    with pytest.raises(ValueError):
        with atomic.atomic_paths([a, b]) as (ta, tb):
            ta.write_text("new a")
            raise ValueError
    assert a.read_text() == "old a" and not b.exists() and os.listdir(tmp_path) == ["a"]
    with atomic.atomic_paths([a, b]) as (ta, tb):
        ta.write_text("new a")
        tb.write_text("new b")
    assert (a.read_text(), b.read_text()) == ("new a", "new b")


def test_replace_dir_swaps_a_finished_directory_into_place_only_when_allowed(tmp_path):
    new, dest = tmp_path / "new", tmp_path / "dest"
    new.mkdir()
    (new / "x").write_text("new")
    dest.mkdir()
    (dest / "x").write_text("old")
    with pytest.raises(FileExistsError, match="it exists"):
        atomic.replace_dir(new, dest)
    atomic.replace_dir(new, dest, may_replace=lambda p: None)
    assert (dest / "x").read_text() == "new" and not new.exists() and os.listdir(tmp_path) == ["dest"]


def test_overwrite_refusal_rules(tmp_path):
    assert atomic.overwrite_refusal(tmp_path / "absent") is None
    mine = tmp_path / "run"
    mine.mkdir()
    (mine / "metrics.csv").write_text("x")
    assert "did not mark" in atomic.overwrite_refusal(mine)
    atomic.mark_owned(mine, "run")
    assert atomic.owned_kind(mine) == "run" and atomic.overwrite_refusal(mine) is None
    assert atomic.overwrite_refusal(mine, kinds=("store",)) == "it is a galaxy-codae run, not a store"
    (mine / "thesis.tex").write_text("x")
    assert atomic.overwrite_refusal(mine) == "it holds 'thesis.tex', which galaxy-codae did not write"
    (mine / "thesis.tex").unlink()
    assert "holds an input" in atomic.overwrite_refusal(mine, inputs=[mine / "metrics.csv"])
    assert atomic.overwrite_refusal(mine / "metrics.csv", inputs=[mine / "metrics.csv"]) == "it is an input of this step"
    (tmp_path / "link").symlink_to(mine)
    assert atomic.overwrite_refusal(tmp_path / "link") == "it is a symbolic link"
    # a Zarr store carries the same record in its group attributes
    store = tmp_path / "s.zarr"
    store.mkdir()
    (store / "zarr.json").write_text(json.dumps({"attributes": {atomic.OWNER_KEY: atomic.owner_record("store", ["zarr.json", "images"])}}))
    assert atomic.overwrite_refusal(store, kinds=("store",)) is None


def test_output_checks_say_what_and_where_in_one_line(tmp_path):
    class Bad(Exception):
        pass

    out = tmp_path / "out.txt"
    assert atomic.check_output_file(str(out), overwrite=False, error=Bad) == out  # absent: may be written
    with pytest.raises(Bad, match=f"^directory {tmp_path / 'no'} does not exist$"):
        atomic.check_output_file(tmp_path / "no" / "out.txt", overwrite=True, error=Bad)
    with pytest.raises(Bad, match=f"^{tmp_path} is a directory, not a PNG file$"):
        atomic.check_output_file(tmp_path, overwrite=True, what="a PNG file", error=Bad)
    out.write_text("a thesis")
    for check in (atomic.check_absent, atomic.check_output, atomic.check_output_file):
        with pytest.raises(Bad, match=f"^{out} exists; pass --overwrite to replace it$"):
            check(out, overwrite=False, error=Bad)
    atomic.check_absent(out, overwrite=True, error=Bad)
    with pytest.raises(Bad, match=f"^--overwrite will not replace {out}: it is a file galaxy-codae did not write$"):
        atomic.check_output_file(out, overwrite=True, error=Bad)
    atomic.check_output_file(out, overwrite=True, may_replace=lambda p: None, error=Bad)  # the caller's own rule
    atomic.write_text(out, "written by galaxy-codae")
    atomic.check_output_file(out, overwrite=True, error=Bad)
    with pytest.raises(Bad, match="it is an input of this step$"):
        atomic.check_output_file(out, overwrite=True, inputs=[out], error=Bad)
    (tmp_path / "dangling").symlink_to(tmp_path / "gone")
    with pytest.raises(Bad, match="dangling exists; pass --overwrite"):
        atomic.check_output(tmp_path / "dangling", overwrite=False, error=Bad)
    with pytest.raises(Bad, match="dangling: it is a symbolic link$"):
        atomic.check_output(tmp_path / "dangling", overwrite=True, error=Bad)
    run = tmp_path / "run"
    run.mkdir()
    atomic.mark_owned(run, "run")
    atomic.check_output(run, overwrite=True, kinds=("run",), error=Bad)
    with pytest.raises(Bad, match=f"^--overwrite will not replace {run}: it is a galaxy-codae run, not a store$"):
        atomic.check_output(run, overwrite=True, kinds=("store",), error=Bad)


def test_files_are_ours_only_with_the_signature(tmp_path):
    from astropy.io import fits

    plain = tmp_path / "thesis.tex"
    plain.write_text("\\documentclass{article}\n")
    assert atomic.overwrite_refusal(plain) == "it is a file galaxy-codae did not write"
    ours, theirs = tmp_path / "ours.fits", tmp_path / "theirs.fits"
    hdu = fits.BinTableHDU.from_columns([fits.Column(name="a", format="E", array=np.zeros(2))])
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(theirs)
    hdu.header["CREATOR"] = "galaxy-codae 0.1.0"
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(ours)
    assert atomic.is_ours_file(ours) and not atomic.is_ours_file(theirs)
    assert atomic.overwrite_refusal(ours) is None and atomic.overwrite_refusal(theirs) is not None
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"a": [1]})
    pq.write_table(table, tmp_path / "theirs.parquet")
    pq.write_table(table.replace_schema_metadata({"galaxy_codae.header": "{}"}), tmp_path / "ours.parquet")
    assert atomic.is_ours_file(tmp_path / "ours.parquet") and not atomic.is_ours_file(tmp_path / "theirs.parquet")
    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Software", "galaxy-codae 0.1.0")
    Image.new("L", (4, 4)).save(tmp_path / "ours.png", pnginfo=info)
    Image.new("L", (4, 4)).save(tmp_path / "theirs.png")
    assert atomic.is_ours_file(tmp_path / "ours.png") and not atomic.is_ours_file(tmp_path / "theirs.png")


def test_write_catalog_overwrites_only_its_own_catalogues(tmp_path):
    from catalogs.errors import BadInputError
    from catalogs.fits_io import write_catalog

    cols = {"id": np.array(["a", "b"]), "x_pix": np.array([1.0, 2.0], np.float32)}
    cat = write_catalog(cols, tmp_path / "c.fits", latent_dim=1, partial=True)
    write_catalog(cols, cat, latent_dim=1, partial=True, overwrite=True)  # ours: replaced
    thesis = tmp_path / "thesis.fits"
    thesis.write_bytes(b"not a catalogue at all")
    with pytest.raises(BadInputError, match="will not replace .*thesis.fits: it is a file galaxy-codae did not"):
        write_catalog(cols, thesis, latent_dim=1, partial=True, overwrite=True)
    assert thesis.read_bytes() == b"not a catalogue at all"
    assert sorted(p.name for p in Path(tmp_path).iterdir()) == ["c.fits", "thesis.fits"]


def test_demo_survey_overwrite_replaces_only_a_demo_survey(tmp_path):
    from pipeline.errors import BadInputError
    from pipeline.simulate.survey import write_demo_survey

    out = write_demo_survey(tmp_path / "s", 2, seed=1, size=64, progress=False)
    write_demo_survey(out, 3, seed=1, size=64, overwrite=True, progress=False)
    assert len(list((out / "images").rglob("*.jpg"))) == 3
    keep = tmp_path / "keep"
    keep.mkdir()
    (keep / "thesis.tex").write_text("x")
    with pytest.raises(BadInputError, match="will not replace .*keep: it is a folder galaxy-codae did not mark"):
        write_demo_survey(keep, 2, seed=1, size=64, overwrite=True, progress=False)
    assert os.listdir(keep) == ["thesis.tex"]
