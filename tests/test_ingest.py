"""Survey ingest: bad inputs, resume after kill -9, Dask workers, command line."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pipeline.cli import main as cli_main
from pipeline.data.ingest import IngestPlan, decode_block, ingest_survey, plan_ingest
from pipeline.data.store import open_store, rejects_path_for

REPO = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- test surveys


def galaxy_image(rng: np.random.Generator, side: int, *, grey: bool = False) -> np.ndarray:
    """A Galaxy Zoo-like cutout: an elliptical Gaussian blob near the centre on a noisy floor, (H, W[, 3]) uint8."""
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float64)
    c = side / 2 - 0.5 + rng.normal(0, side / 80, 2)
    a, b, t = side / 10 * rng.uniform(0.6, 1.4), side / 25 * rng.uniform(0.6, 1.4), rng.uniform(0, np.pi)
    u = (xx - c[0]) * np.cos(t) + (yy - c[1]) * np.sin(t)
    v = -(xx - c[0]) * np.sin(t) + (yy - c[1]) * np.cos(t)
    img = 200 * np.exp(-0.5 * ((u / a) ** 2 + (v / b) ** 2)) + rng.normal(12, 3, (side, side))
    if grey:
        return np.clip(img, 0, 255).astype(np.uint8)
    return np.clip(np.stack([img, 0.8 * img, 0.6 * img], -1), 0, 255).astype(np.uint8)


def make_survey(root: Path, n: int, *, side: int = 128, seed: int = 0, fmt: str = "JPEG", grey: bool = False) -> Path:
    """Galaxy Zoo DECaLS layout: ROOT/images/<first 4 chars>/<iauname>.jpg and ROOT/catalog.parquet."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        ra, dec = 10.0 + 0.01 * i, -5.0 + 0.003 * i
        name = f"J{i // 60:02d}{i % 60:02d}{i:05.2f}+{i % 90:02d}0000.0"
        ext = "jpg" if fmt == "JPEG" else "png"
        rel = f"{name[:4]}/{name}.{ext}"
        (root / "images" / name[:4]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(galaxy_image(rng, side, grey=grey)).save(root / "images" / rel, format=fmt, quality=90)
        rows.append(
            {"iauname": name, "ra": ra, "dec": dec, "file_loc": rel, "petro_th50": 2.0 + 0.1 * i, "note": f"n{i}"}
        )
    pd.DataFrame(rows).to_parquet(root / "catalog.parquet")
    return root


def store_arrays(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    s = open_store(path, accept_failed=True)  # to compare what two ingests wrote, passed or not
    return s.read_images(0, len(s)), s.ids, s.ra


# ----------------------------------------------------------------------------- bad inputs


def test_every_bad_input_is_rejected_with_its_reason_and_the_store_holds_exactly_the_good(tmp_path):
    root = make_survey(tmp_path / "survey", 40)
    cat = pd.read_parquet(root / "catalog.parquet")
    img = root / "images"
    planted = {}
    (img / cat.file_loc[1]).unlink()
    planted[1] = "missing_file"
    (img / cat.file_loc[3]).write_bytes(b"")
    planted[3] = "empty_file"
    data = (img / cat.file_loc[5]).read_bytes()
    (img / cat.file_loc[5]).write_bytes(data[: len(data) // 2])
    planted[5] = "corrupt_image"  # truncated
    (img / cat.file_loc[7]).write_bytes(b"this is not an image at all" * 10)
    planted[7] = "corrupt_image"
    Image.fromarray(np.zeros((100, 128, 3), np.uint8)).save(img / cat.file_loc[9], format="JPEG")
    planted[9] = "wrong_dimensions"
    Image.fromarray(np.zeros((128, 128), np.uint8)).save(img / cat.file_loc[11], format="JPEG")
    planted[11] = "wrong_dimensions"  # grey in an RGB survey
    cat = cat.astype({"ra": object, "dec": object})
    cat.loc[13, "iauname"] = cat.loc[12, "iauname"]
    planted[13] = "duplicate_id"
    cat.loc[15, "ra"] = "not-a-number"
    planted[15] = "bad_coordinates"
    cat.loc[17, "dec"] = 95.0
    planted[17] = "bad_coordinates"
    cat.loc[19, "ra"] = 360.5
    planted[19] = "bad_coordinates"
    cat.loc[21, "iauname"] = ""
    planted[21] = "missing_id"
    cat.loc[23, "file_loc"] = "J999/nowhere.jpg"
    planted[23] = "missing_file"
    cat.to_csv(tmp_path / "catalog.csv", index=False)  # CSV catalogue: "not-a-number" must survive

    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        summary = ingest_survey(
            tmp_path / "catalog.csv", img, tmp_path / "st.zarr", scheduler=cluster.scheduler_address, shard_size=16
        )
    rej = pd.read_csv(summary.rejects_table, keep_default_na=False)
    assert summary.rejects_table == rejects_path_for(tmp_path / "st.zarr")
    assert dict(zip(rej["row"], rej["reason"])) == planted
    assert list(rej.columns[:4]) == ["row", "id", "path", "reason"]
    assert summary.n_input == 40 and summary.n_rejected == len(planted) and summary.n_stored == 40 - len(planted)
    assert summary.rejected_by_reason["corrupt_image"] == 2 and summary.too_many_rejects
    store = open_store(tmp_path / "st.zarr", accept_failed=True)
    good = [i for i in range(40) if i not in planted]
    assert list(store.ids) == list(cat.iauname[good]) and len(set(store.ids)) == len(good)
    np.testing.assert_allclose(store.ra, cat.ra[good].astype(float))
    assert list(store.column("row")) == good
    assert list(store.column("note")) == [f"n{i}" for i in good]
    assert store.info.attrs["counts"]["rejected_by_reason"]["bad_coordinates"] == 3
    assert store.read_images(0, len(store)).reshape(len(store), -1).max(axis=1).min() > 100  # no blank slots


def test_fits_survey_is_flipped_to_display_order_and_nan_pixels_are_rejected(tmp_path):
    from astropy.io import fits

    root, rows = tmp_path / "fits", []
    (root / "img").mkdir(parents=True)
    disp = np.zeros((2, 48, 48), np.float32)  # (bands, H, W) as displayed: a bright block top-left
    disp[:, 4:14, 4:20] = 100.0
    disp[1, 30:40, 30:40] = 50.0
    for i in range(6):
        data = disp[:, ::-1, :].copy()  # FITS row 0 = bottom
        if i == 2:
            data[0, 10, 10] = np.nan
        fits.PrimaryHDU(data).writeto(root / "img" / f"g{i}.fits")
        rows.append({"objid": f"g{i}", "path": f"g{i}.fits", "ra": 1.0 + i, "dec": 2.0})
    from astropy.table import Table

    Table(rows=[tuple(r.values()) for r in rows], names=list(rows[0])).write(root / "cat.fits")
    summary = ingest_survey(
        root / "cat.fits",
        root / "img",
        tmp_path / "f.zarr",
        size=24,
        crop=48,
        id_column="objid",
        path_column="path",
        max_reject_fraction=0.5,
    )
    assert summary.rejected_by_reason == {"nonfinite_pixels": 1}
    store = open_store(tmp_path / "f.zarr")
    assert store.info.flipped and store.info.dtype == "float16" and store.info.channels == 2
    assert store.info.attrs["preprocessing"]["fits_stretch"]["kind"] == "linear_percentile"
    img = store.read_images(0, 1)[0].astype(np.float32)  # (2, 24, 24)
    assert img[0, 2:7, 2:10].mean() > 0.9  # top-left block, display order
    assert img[0, 17:22, 2:10].max() < 0.05  # the bottom-left (where it sits in FITS rows) is dark
    assert img[1, 15:20, 15:20].mean() > 0.3 and img.min() >= 0.0 and img.max() <= 1.0
    assert list(store.ids) == ["g0", "g1", "g3", "g4", "g5"]


# ----------------------------------------------------------------------------- resume


_SLOW_RUN = """
import sys, time
from pathlib import Path
import pipeline.data.ingest as ing
name = sys.argv[1]
fn = getattr(ing, name)
def slow(*a, **k):
    r = fn(*a, **k)
    time.sleep(0.25)
    return r
setattr(ing, name, slow)
ing.ingest_survey(Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]), shard_size=16)
"""


def _run_and_kill(script: Path, step: str, root: Path, out: Path, markers: Path, n_done: int) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, str(script), step, str(root / "catalog.parquet"), str(root / "images"), str(out)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if markers.is_dir() and len([p for p in markers.iterdir() if not p.name.count(".tmp")]) >= n_done:
            break
        time.sleep(0.01)
    assert proc.poll() is None, f"ingest ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stderr.close()


@pytest.mark.slow
def test_kill_9_then_rerun_finishes_the_store_without_touching_done_shards(tmp_path):
    root = make_survey(tmp_path / "survey", 120)  # 8 blocks of 16 catalogue rows
    (root / "images" / pd.read_parquet(root / "catalog.parquet").file_loc[20]).write_bytes(b"")  # a reject shifts rows
    out = tmp_path / "st.zarr"
    work = tmp_path / "st.zarr.partial"
    script = tmp_path / "slow.py"
    script.write_text(textwrap.dedent(_SLOW_RUN))

    # 1. killed while decoding: the blocks marked done are not decoded again
    _run_and_kill(script, "decode_block", root, out, work / "_ingest" / "blocks", 3 * 2)
    blocks = work / "_ingest" / "blocks"
    done = sorted(p for p in blocks.glob("*.parquet"))
    assert 3 <= len(done) < 8
    before = {p: p.stat().st_mtime_ns for p in done + [p.with_suffix(".npy") for p in done]}
    plan = plan_ingest(root / "catalog.parquet", root / "images", out, shard_size=16)  # resumes the plan
    results = [decode_block(plan.work, k) for k in range(plan.n_blocks)]
    assert [r.skipped for r in results[: len(done)]] == [True] * len(done)
    assert not any(r.skipped for r in results[len(done) + 1 :])
    assert {p: p.stat().st_mtime_ns for p in before} == before

    # 2. killed while writing output shards: shards marked done keep their files and mtimes
    _run_and_kill(script, "write_store_shard", root, out, work / "_ingest" / "stored", 2)
    stored = sorted(int(p.stem) for p in (work / "_ingest" / "stored").glob("*.done"))
    assert 2 <= len(stored) < 8
    shard_files = {j: work / "images" / "c" / str(j) / "0" / "0" / "0" for j in stored}
    mtimes = {j: p.stat().st_mtime_ns for j, p in shard_files.items()}
    with pytest.raises(Exception, match="incomplete"):
        open_store(out)

    # 3. the rerun completes: every good object once, the same store as an uninterrupted run
    summary = ingest_survey(root / "catalog.parquet", root / "images", out, shard_size=16)
    assert summary.shards_resumed == len(stored) and summary.blocks_resumed == 8
    assert {j: (out / "images" / "c" / str(j) / "0" / "0" / "0").stat().st_mtime_ns for j in stored} == mtimes
    ref = ingest_survey(root / "catalog.parquet", root / "images", tmp_path / "ref.zarr", shard_size=16)
    assert ref.n_stored == summary.n_stored == 119
    (a_img, a_ids, a_ra), (b_img, b_ids, b_ra) = store_arrays(out), store_arrays(tmp_path / "ref.zarr")
    assert len(set(a_ids)) == len(a_ids) == 119
    np.testing.assert_array_equal(a_ids, b_ids)
    np.testing.assert_array_equal(a_ra, b_ra)
    np.testing.assert_array_equal(a_img, b_img)
    assert not work.exists() and not (out / "_ingest").exists()


# ----------------------------------------------------------------------------- Dask


@pytest.mark.slow
def test_two_dask_worker_processes_give_the_same_store_as_one(tmp_path):
    root = make_survey(tmp_path / "survey", 60)
    (root / "images" / pd.read_parquet(root / "catalog.parquet").file_loc[7]).write_bytes(b"\xff\xd8\xff garbage")
    one = ingest_survey(root / "catalog.parquet", root / "images", tmp_path / "one.zarr", shard_size=16)
    two = ingest_survey(root / "catalog.parquet", root / "images", tmp_path / "two.zarr", shard_size=16, workers=2)
    assert one.n_stored == two.n_stored == 59
    for a, b in zip(store_arrays(tmp_path / "one.zarr"), store_arrays(tmp_path / "two.zarr")):
        np.testing.assert_array_equal(a, b)
    assert (
        pd.read_csv(one.rejects_table)
        .drop(columns="detail")
        .equals(pd.read_csv(two.rejects_table).drop(columns="detail"))
    )


# ----------------------------------------------------------------------------- command line


def test_cli_ingest_prints_a_summary_and_refuses_to_overwrite(tmp_path, capsys):
    root = make_survey(tmp_path / "survey", 20, fmt="PNG", grey=True)
    args = ["ingest", "--catalog", str(root / "catalog.parquet"), "--images", str(root / "images")]
    args += ["--out", str(tmp_path / "st.zarr"), "--size", "32", "--crop", "96", "--shard-size", "8", "--quiet"]
    assert cli_main(args) == 0
    out = capsys.readouterr().out
    assert "stored         20" in out
    info = open_store(tmp_path / "st.zarr").info
    assert (info.channels, info.size, info.crop_size, info.crop_start_x, info.crop_start_y) == (1, 32, 96, 16, 16)
    assert cli_main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0] == f"galaxy-codae ingest: error: {tmp_path / 'st.zarr'} exists; pass --overwrite to replace it"
    assert cli_main([*args, "--overwrite"]) == 0


def test_cli_exits_2_when_too_many_rows_are_rejected_after_writing_what_it_could(tmp_path, capsys):
    root = make_survey(tmp_path / "survey", 20)
    cat = pd.read_parquet(root / "catalog.parquet")
    (root / "images" / cat.file_loc[4]).unlink()
    args = ["ingest", "--catalog", str(root / "catalog.parquet"), "--images", str(root / "images")]
    args += ["--out", str(tmp_path / "st.zarr"), "--quiet", "--max-reject-fraction", "0.04"]
    assert cli_main(args) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("galaxy-codae ingest: error: 1 of 20 rows rejected (5.00 % > 4.00 %)")
    assert len(open_store(tmp_path / "st.zarr", accept_failed=True)) == 19


@pytest.mark.parametrize(
    "change, message",
    [
        ("column", r"^galaxy-codae ingest: error: catalogue \S+ has no column 'file_loc' \(columns: "),
        ("root", r"^galaxy-codae ingest: error: image root \S+ does not exist or is not a directory$"),
        ("id-column", r"^galaxy-codae ingest: error: catalogue \S+ has no column 'objid' \(columns: "),
    ],
)
def test_missing_column_or_image_root_stops_at_once_with_one_line(tmp_path, capsys, change, message):
    root = make_survey(tmp_path / "survey", 3, side=32)
    cat = root / "catalog.parquet"
    images = root / "images"
    extra = []
    if change == "column":
        pd.read_parquet(cat).drop(columns="file_loc").to_parquet(cat)
    elif change == "root":
        images = root / "nowhere"
    else:
        extra = ["--id-column", "objid"]
    code = cli_main(
        ["ingest", "--catalog", str(cat), "--images", str(images), "--out", str(tmp_path / "o.zarr"), *extra]
    )
    assert code == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and re.match(message, err[0])
    assert not (tmp_path / "o.zarr").exists() and not (tmp_path / "o.zarr.partial").exists()


def test_a_changed_catalogue_does_not_resume_an_unfinished_run(tmp_path):
    root = make_survey(tmp_path / "survey", 10, side=32)
    plan = plan_ingest(root / "catalog.parquet", root / "images", tmp_path / "o.zarr", crop=16, size=8)
    assert isinstance(IngestPlan.load(plan.work), IngestPlan)
    assert json.loads((plan.work / "_ingest" / "plan.json").read_text())["n_rows"] == 10
    pd.read_parquet(root / "catalog.parquet").iloc[:5].to_parquet(root / "catalog.parquet")
    from pipeline.errors import BadInputError

    with pytest.raises(BadInputError, match="unfinished ingest of other inputs or options"):
        plan_ingest(root / "catalog.parquet", root / "images", tmp_path / "o.zarr", crop=16, size=8)
    again = plan_ingest(root / "catalog.parquet", root / "images", tmp_path / "o.zarr", crop=16, size=8, overwrite=True)
    assert again.n_rows == 5


# ----------------------------------------------------------------------------- hostile or careless inputs


def _ingest_cli(cat: Path, images: Path, out: Path, *extra: str) -> list[str]:
    return ["ingest", "--catalog", str(cat), "--images", str(images), "--out", str(out), "--quiet", *extra]


def test_overwrite_replaces_only_a_store_this_project_marked(tmp_path, capsys):
    root = make_survey(tmp_path / "survey", 6, side=32)
    cat, images = root / "catalog.parquet", root / "images"
    keep = tmp_path / "keep"
    keep.mkdir()
    (keep / "thesis.tex").write_text("x")
    assert cli_main(_ingest_cli(cat, images, keep, "--overwrite")) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [f"galaxy-codae ingest: error: --overwrite will not replace {keep}: it is a folder galaxy-codae "
                   "did not mark as its own (no .galaxy-codae.json)"]
    assert (keep / "thesis.tex").read_text() == "x"
    # the survey's own folder holds the inputs: never replaced, whatever it holds
    assert cli_main(_ingest_cli(cat, images, root, "--overwrite")) == 2
    assert "it holds an input of this step" in capsys.readouterr().err
    assert cat.is_file() and len(list(images.rglob("*.jpg"))) == 6
    # a store this project wrote is replaced; one someone added a file to is not
    store = tmp_path / "st.zarr"
    assert cli_main(_ingest_cli(cat, images, store)) == 0
    assert cli_main(_ingest_cli(cat, images, store, "--overwrite")) == 0
    (store / "notes.txt").write_text("mine")
    assert cli_main(_ingest_cli(cat, images, store, "--overwrite")) == 2
    assert "it holds 'notes.txt', which galaxy-codae did not write" in capsys.readouterr().err
    assert (store / "notes.txt").read_text() == "mine" and len(open_store(store)) == 6
    # an unfinished work directory that is not ours is not cleared either
    (tmp_path / "new.zarr.partial").mkdir()
    (tmp_path / "new.zarr.partial" / "data.txt").write_text("mine")
    assert cli_main(_ingest_cli(cat, images, tmp_path / "new.zarr")) == 2
    assert (tmp_path / "new.zarr.partial" / "data.txt").read_text() == "mine"


def test_paths_that_resolve_outside_the_image_root_are_rejected_and_never_opened(tmp_path, monkeypatch):
    import PIL.Image

    import pipeline.data.readers as readers

    root = make_survey(tmp_path / "deep" / "survey", 12, side=32)
    images = root / "images"
    df = pd.read_parquet(root / "catalog.parquet")
    outside = tmp_path / "outside.jpg"
    outside.write_bytes((images / df.file_loc[0]).read_bytes())
    (images / "link_out.jpg").symlink_to(outside)
    (images / "link_in.jpg").symlink_to(images / df.file_loc[0])  # a link inside the root is fine
    planted = {1: "../../outside.jpg", 2: str(outside), 3: "link_out.jpg", 4: "../../../../../../../../etc/passwd",
               5: "J000/../../../outside.jpg"}
    for i, v in planted.items():
        df.loc[i, "file_loc"] = v
    df.loc[6, "file_loc"] = "link_in.jpg"
    df.to_parquet(root / "catalog.parquet")
    opened: list[str] = []
    real_open, real_pil_open = open, PIL.Image.open
    monkeypatch.setattr(readers, "open", lambda p, *a, **k: opened.append(str(p)) or real_open(p, *a, **k),
                        raising=False)
    monkeypatch.setattr(PIL.Image, "open", lambda p, *a, **k: opened.append(str(p)) or real_pil_open(p, *a, **k))
    summary = ingest_survey(root / "catalog.parquet", images, tmp_path / "st.zarr", max_reject_fraction=1.0)
    rej = pd.read_csv(summary.rejects_table, keep_default_na=False)
    assert dict(zip(rej["row"], rej["reason"])) == dict.fromkeys(planted, "outside_root")
    assert summary.n_stored == 12 - len(planted)
    cutouts = [p for p in opened if Path(p) != root / "catalog.parquet"]
    assert cutouts and all(Path(p).resolve().is_relative_to(images.resolve()) for p in cutouts), cutouts
    assert "link_in.jpg" in list(open_store(tmp_path / "st.zarr").source_paths)


def test_a_path_that_cannot_name_a_file_is_a_rejected_row_and_the_ingest_goes_on(tmp_path, capsys):
    root = make_survey(tmp_path / "survey", 14, side=32)
    images = root / "images"
    df = pd.read_parquet(root / "catalog.parquet")
    (images / "loop_a").symlink_to(images / "loop_b")
    (images / "loop_b").symlink_to(images / "loop_a")
    os.mkfifo(images / "pipe.jpg")  # opening it would block the ingest forever
    planted = {1: (".", "not_a_file"), 2: ("J000", "not_a_file"), 3: ("a" * 300 + ".jpg", "bad_path"),
               4: ("loop_a", "bad_path"), 5: ("x\x00y.jpg", "bad_path"), 6: ("pipe.jpg", "not_a_file"),
               7: ("/".join(["d"] * 2100), "bad_path")}  # longer than PATH_MAX
    for i, (v, _) in planted.items():
        df.loc[i, "file_loc"] = v
    df.to_parquet(root / "catalog.parquet")
    out = tmp_path / "st.zarr"
    assert cli_main(_ingest_cli(root / "catalog.parquet", images, out, "--max-reject-fraction", "1")) == 0
    assert capsys.readouterr().err == ""
    rej = pd.read_csv(rejects_path_for(out), keep_default_na=False)
    assert dict(zip(rej["row"], rej["reason"])) == {i: r for i, (_, r) in planted.items()}
    assert "\x00" not in rejects_path_for(out).read_text()  # control characters are escaped in the table
    assert len(open_store(out)) == 14 - len(planted)


def test_a_failed_ingest_leaves_a_store_that_train_and_infer_refuse_with_one_line(tmp_path, capsys):
    root = make_survey(tmp_path / "survey", 10, side=32)
    df = pd.read_parquet(root / "catalog.parquet")
    (root / "images" / df.file_loc[3]).unlink()
    out = tmp_path / "st.zarr"
    assert cli_main(_ingest_cli(root / "catalog.parquet", root / "images", out, "--size", "32")) == 2
    capsys.readouterr()
    why = (f"store {out} did not pass its ingest (1 of 10 rows rejected (10.00 % > 1.00 %); see st.zarr.rejects.csv)"
           "; fix the inputs, or rerun galaxy-codae ingest --overwrite with a higher --max-reject-fraction")
    assert cli_main(["train", "--store", str(out), "--out", str(tmp_path / "run"), "--max-epochs", "1"]) == 2
    assert capsys.readouterr().err.splitlines() == [f"galaxy-codae train: error: {why}"]
    assert cli_main(["infer", "--store", str(out), "--checkpoint", str(tmp_path / "none.pt"),
                     "--out", str(tmp_path / "c.fits")]) == 2
    assert capsys.readouterr().err.splitlines() == [f"galaxy-codae infer: error: {why}"]
    assert not (tmp_path / "c.fits").exists() and not (tmp_path / "c.fits.partial").exists()
    # the same inputs within a higher limit make a store that is used
    assert cli_main(_ingest_cli(root / "catalog.parquet", root / "images", out, "--size", "32", "--overwrite",
                                "--max-reject-fraction", "0.2")) == 0
    assert len(open_store(out)) == 9


def test_ids_the_catalogue_cannot_hold_are_rejected_at_ingest_and_refused_before_inference(tmp_path, capsys):
    import zarr

    root = make_survey(tmp_path / "survey", 12, side=32)
    df = pd.read_parquet(root / "catalog.parquet")
    planted = {1: "NGC-ü", 2: "two\nlines", 3: "del\x7f", 4: "x" * 300, 5: "tab\there"}
    for i, v in planted.items():
        df.loc[i, "iauname"] = v
    df.loc[7, "iauname"] = "=HYPERLINK(\"http://x\")"  # a legal id that a spreadsheet would run
    df.loc[8, "iauname"] = "=HYPERLINK(\"http://x\")"  # ... as its duplicate: rejected, and in the CSV
    df.loc[9, "iauname"] = "@SUM(1)"
    df.loc[9, "ra"] = 400.0
    df.to_parquet(root / "catalog.parquet")
    out = tmp_path / "st.zarr"
    summary = ingest_survey(root / "catalog.parquet", root / "images", out, max_reject_fraction=1.0)
    rej = pd.read_csv(summary.rejects_table, keep_default_na=False)
    assert dict(zip(rej["row"], rej["reason"])) == {**dict.fromkeys(planted, "bad_id"), 8: "duplicate_id",
                                                    9: "bad_coordinates"}
    assert list(rej.loc[rej["row"].isin([8, 9]), "id"]) == ["'=HYPERLINK(\"http://x\")", "'@SUM(1)"]
    assert not any(line.startswith(("=", "+", "-", "@")) for row in rej.astype(str).to_numpy() for line in row)
    store = open_store(out)
    assert len(store) == 12 - len(planted) - 2 and "=HYPERLINK(\"http://x\")" in list(store.ids)
    # a store holding such an id (written by older code) is refused before any inference work
    ids = zarr.open_array(str(out / "id"), mode="r+")
    ids[0] = "bad\nid"
    assert cli_main(["infer", "--store", str(out), "--checkpoint", str(tmp_path / "none.pt"),
                     "--out", str(tmp_path / "c.fits")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "object 0 has an id the catalogue cannot hold (id holds '\\n'" in err[0]
    assert not (tmp_path / "c.fits.partial").exists()


def test_a_local_cluster_listens_on_loopback_only_and_starts_no_dashboard(tmp_path):
    import psutil

    root = make_survey(tmp_path / "survey", 24, side=32)
    listening: list[tuple[str, int]] = []

    def probe(_line: str) -> None:  # called while the cluster runs
        me = psutil.Process()
        for proc in [me, *me.children(recursive=True)]:
            listening.extend((c.laddr.ip, c.laddr.port) for c in proc.net_connections(kind="inet")
                             if c.status == psutil.CONN_LISTEN)

    ingest_survey(root / "catalog.parquet", root / "images", tmp_path / "st.zarr", workers=2, shard_size=8,
                  progress=probe)
    assert len(listening) >= 3  # the scheduler and two workers at least
    assert {ip for ip, _ in listening} == {"127.0.0.1"}, listening
    assert 8787 not in {port for _, port in listening}
