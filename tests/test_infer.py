"""Inference: exported model, shard parts, kill -9 and rerun, merge refusals, Dask workers, CLI errors."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from catalogs.fits_io import read_catalog
from pipeline.cli import main
from pipeline.data.store import open_store
from pipeline.errors import BadInputError
from pipeline.infer import (
    default_work_dir,
    infer_catalog,
    infer_shard,
    load_inference_model,
    merge_parts,
    plan_inference,
    recon_outlier_threshold,
)
from pipeline.predict import predict_batch

REPO = Path(__file__).resolve().parents[1]


def _is_equivariant(module: torch.nn.Module) -> bool:
    """An e2cnn EquivariantModule (checked by class name: e2cnn is imported only in pipeline.model)."""
    return any(c.__name__ == "EquivariantModule" for c in type(module).__mro__)


def test_exported_model_matches_the_e2cnn_model(demo_run):
    store = open_store(demo_run["store"])
    images = torch.from_numpy(store.read_images(0, 48).astype(np.float32) / 255.0)
    plain, exported, _ = load_inference_model(demo_run["checkpoint"], device="cpu", export=True)
    e2cnn, not_exported, _ = load_inference_model(demo_run["checkpoint"], device="cpu", export=False)
    assert exported and not not_exported
    assert not any(_is_equivariant(m) for m in plain.modules())  # plain torch only
    assert any(_is_equivariant(m) for m in e2cnn.modules())
    a, b = predict_batch(plain, images), predict_batch(e2cnn, images)
    for name in ("x_pix", "y_pix", "recon_mse", "z"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), atol=1e-4, rtol=1e-4, err_msg=name)
    d = np.abs((a.theta_deg - b.theta_deg + 180.0) % 360.0 - 180.0)
    assert d.max() < 1e-2
    # cached per process: the second call returns the same object
    assert load_inference_model(demo_run["checkpoint"], device="cpu")[0] is plain


_SLOW_RUN = """
import sys, time
import pipeline.infer as inf
fn = inf.infer_shard
def slow(*a, **k):
    r = fn(*a, **k)
    time.sleep(1.0)
    return r
inf.infer_shard = slow
inf.infer_catalog(sys.argv[1], sys.argv[2], sys.argv[3], device="cpu")
"""


def test_kill_9_then_rerun_gives_one_row_per_object(demo_run, tmp_path):
    out = tmp_path / "cat.fits"
    parts = default_work_dir(out) / "parts"
    script = tmp_path / "slow.py"
    script.write_text(textwrap.dedent(_SLOW_RUN))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, str(script), str(demo_run["store"]), str(demo_run["checkpoint"]),
                             str(out)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if parts.is_dir() and any(p.suffix == ".npz" for p in parts.iterdir()):
            break
        time.sleep(0.01)
    assert proc.poll() is None, f"inference ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    assert not out.exists()
    done = sorted(parts.glob("part-*.npz"))
    assert 1 <= len(done) < 3
    mtimes = {p: p.stat().st_mtime_ns for p in done}

    plan = plan_inference(demo_run["store"], demo_run["checkpoint"], default_work_dir(out), device="cpu")
    assert [infer_shard(plan.work, k) for k in range(len(done))] == done  # reused, not recomputed
    assert {p: p.stat().st_mtime_ns for p in done} == mtimes
    lines: list[str] = []
    infer_catalog(demo_run["store"], demo_run["checkpoint"], out, device="cpu", progress=lines.append)
    assert f"({len(done)} finished part(s) reused)" in lines[-1]
    cat = read_catalog(out)
    ids = np.asarray(open_store(demo_run["store"]).ids.tolist(), dtype=str)
    assert len(cat) == len(ids) == len(set(cat["id"]))
    np.testing.assert_array_equal(np.asarray(cat["id"]), ids)


def test_merge_refuses_duplicate_or_missing_parts(demo_run, tmp_path):
    work = tmp_path / "work"
    plan = plan_inference(demo_run["store"], demo_run["checkpoint"], work, device="cpu")
    assert len(plan.shard_ranges) == 3
    paths = [infer_shard(work, k) for k in range(3)]
    shutil.copy(paths[0], tmp_path / "p0.npz")
    shutil.copy(paths[0], paths[1])  # shard 1's part now holds shard 0's ids
    with pytest.raises(BadInputError, match="more than once"):
        merge_parts(work, tmp_path / "cat.fits")
    paths[1].unlink()
    with pytest.raises(BadInputError, match=r"1 of 3 inference parts are missing \(first: shard 1\)"):
        merge_parts(work, tmp_path / "cat.fits")
    assert not (tmp_path / "cat.fits").exists()
    infer_shard(work, 1)
    path = merge_parts(work, tmp_path / "cat.fits")
    assert len(read_catalog(path)) == 96 and not work.exists()


def test_a_changed_checkpoint_makes_finished_parts_stale(demo_run, tmp_path):
    work = tmp_path / "work"
    plan_inference(demo_run["store"], demo_run["checkpoint"], work, device="cpu")
    infer_shard(work, 0)
    other = tmp_path / "other.pt"
    state = torch.load(demo_run["checkpoint"], weights_only=True)
    state["step"] = -1  # same weights, another file
    torch.save(state, other)
    plan = plan_inference(demo_run["store"], other, work, device="cpu")
    assert not any(plan.work.glob("parts/*.npz"))


def test_two_dask_workers_give_the_same_catalogue(demo_run, tmp_path):
    one = infer_catalog(demo_run["store"], demo_run["checkpoint"], tmp_path / "one.fits", device="cpu")
    two = infer_catalog(demo_run["store"], demo_run["checkpoint"], tmp_path / "two.fits", device="cpu",
                        workers=2, batch_size=7)
    a, b = read_catalog(one), read_catalog(two)
    np.testing.assert_array_equal(np.asarray(a["id"]), np.asarray(b["id"]))
    for name in a.colnames[1:]:
        np.testing.assert_allclose(np.asarray(a[name], dtype=np.float64), np.asarray(b[name], dtype=np.float64),
                                   atol=2e-3, rtol=1e-4, err_msg=name)
    assert '"workers": 2' in b.meta["INFCONF"]


def test_no_direction_flag_and_theta_agree_with_direction_snr(demo_run, tmp_path):
    """Flag bit 8 is set exactly where |direction_snr| < 3, and theta_deg is then an axis in [0, 180)."""
    from catalogs.schema import FLAG_NO_DIRECTION
    from pipeline.predict import DIRECTION_SIGNIF_MIN

    cat = read_catalog(infer_catalog(demo_run["store"], demo_run["checkpoint"], tmp_path / "c.fits", device="cpu",
                                     error_samples=0))
    snr = np.asarray(cat["direction_snr"], dtype=np.float64)
    flagged = (np.asarray(cat["flags"]) & FLAG_NO_DIRECTION) != 0
    assert np.isfinite(snr).all()
    np.testing.assert_array_equal(flagged, ~(np.abs(snr) >= DIRECTION_SIGNIF_MIN))
    theta = np.asarray(cat["theta_deg"], dtype=np.float64)
    assert (theta[flagged] < 180.0).all() and (theta >= 0).all() and (theta < 360.0).all()


def test_recon_outlier_threshold_is_median_plus_5_mad():
    v = np.r_[np.linspace(1.0, 2.0, 101), 50.0, np.nan]
    med = 1.5 + (1.0 / 100) * 0.5  # median of 102 finite values
    mad = np.median(np.abs(v[np.isfinite(v)] - med))
    assert recon_outlier_threshold(v) == pytest.approx(med + 5 * 1.4826 * mad)
    assert recon_outlier_threshold(np.array([np.nan])) == np.inf


def test_cli_errors_are_one_line_and_exit_2(demo_run, tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    args = ["infer", "--store", str(demo_run["store"]), "--out", str(tmp_path / "c.fits"), "--quiet"]
    assert main([*args, "--checkpoint", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a galaxy-codae checkpoint" in err[0].replace("readable ", "")
    assert main(["infer", "--store", str(tmp_path / "nope.zarr"), "--checkpoint", str(demo_run["checkpoint"]),
                 "--out", str(tmp_path / "c.fits")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "c.fits").write_text("x")
    assert main([*args, "--checkpoint", str(demo_run["checkpoint"])]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert not default_work_dir(tmp_path / "c.fits").exists()
