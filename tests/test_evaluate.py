"""The evaluation driver and command: stacks, codes, alignment spread, end-to-end runs."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
import yaml

from pipeline.cli import main
from pipeline.data.memory import ArrayDataset
from pipeline.errors import BadInputError
from pipeline.evaluate.alignment import orientation_spread, shapes_drawn
from pipeline.evaluate.datasets import make_eval_data
from pipeline.evaluate.scientific import load_scientific, load_stack, normalise_stack, write_store
from pipeline.evaluate.scoring import ModelCodes, codes_for_metrics
from pipeline.simulate.shapes import rasterize

# scikit-learn warns when a factor has as many classes (20 bins) as a handful of test samples hold;
# expected with the 48-image evaluations below, irrelevant to what they check.
pytestmark = pytest.mark.filterwarnings("ignore:The number of unique classes is greater than 50%:UserWarning")

TINY = {"model": {"widths": [2, 4, 4], "kernels": [5, 3, 3], "hidden": 32, "decoder_width": 8, "group_order": 4},
        "train": {"batch_size": 16, "log_every": 1, "lr": 3e-3}}


def _stack(n: int = 5, size: int = 16) -> np.ndarray:
    rng = np.random.default_rng(0)
    a = rng.uniform(0, 10, (n, size, size)).astype(np.float32)
    a[:, 0, :] = 100.0  # a bright top row as displayed
    return a


# ----------------------------------------------------------------------------- stacks


def test_npy_and_npz_stacks(tmp_path):
    a = _stack()
    np.save(tmp_path / "s.npy", a)
    got = load_stack(tmp_path / "s.npy")
    assert got.shape == (5, 1, 16, 16) and np.array_equal(got[:, 0], a)
    np.save(tmp_path / "rgb.npy", np.repeat(a[..., None], 3, axis=-1))  # channels last
    assert load_stack(tmp_path / "rgb.npy").shape == (5, 3, 16, 16)
    np.savez(tmp_path / "one.npz", a)
    assert load_stack(tmp_path / "one.npz").shape == (5, 1, 16, 16)
    np.savez(tmp_path / "two.npz", images=a, other=a[:2])
    assert load_stack(tmp_path / "two.npz").shape[0] == 5
    assert load_stack(tmp_path / "two.npz", key="other").shape[0] == 2
    np.savez(tmp_path / "amb.npz", a=a, b=a)
    with pytest.raises(BadInputError, match=r"name the array to use"):
        load_stack(tmp_path / "amb.npz")


def test_fits_cube_is_flipped_into_display_order_and_made_native(tmp_path):
    from astropy.io import fits

    a = _stack()
    fits.PrimaryHDU(a[:, ::-1, :].astype(">f4")).writeto(tmp_path / "cube.fits")  # FITS row 1 = bottom
    got = load_stack(tmp_path / "cube.fits")
    assert got.dtype == np.float32 and got.dtype.byteorder in ("=", "|", "<")
    assert np.array_equal(got[:, 0], a)
    assert np.all(got[:, 0, 0, :] == 100.0)  # bright row on top as displayed


def test_mrcs_stack(tmp_path):
    import mrcfile

    a = _stack()
    with mrcfile.new(tmp_path / "p.mrcs") as mrc:
        mrc.set_data(a[:, ::-1, :].copy())  # MRC origin lower-left
    got = load_stack(tmp_path / "p.mrcs")
    assert got.shape == (5, 1, 16, 16) and np.array_equal(got[:, 0], a)


def test_bad_stacks_are_refused(tmp_path):
    (tmp_path / "x.tif").write_bytes(b"nope")
    with pytest.raises(BadInputError, match="unknown stack format"):
        load_stack(tmp_path / "x.tif")
    np.save(tmp_path / "flat.npy", np.zeros((4, 8)))
    with pytest.raises(BadInputError, match="expected a stack"):
        load_stack(tmp_path / "flat.npy")
    with pytest.raises(BadInputError, match="not found"):
        load_stack(tmp_path / "missing.npy")


def test_normalise_resize_and_store_round_trip(tmp_path):
    from pipeline.data.store import open_store

    a = _stack(6, 16)
    n = normalise_stack(a[:, None], mode="image")
    assert n.min() >= 0 and n.max() <= 1 and np.allclose(n.max(axis=(1, 2, 3)), 1.0)
    np.save(tmp_path / "s.npy", a)
    imgs = load_scientific(tmp_path / "s.npy", size=32)
    assert imgs.shape == (6, 1, 32, 32) and imgs.dtype == np.float32
    store = write_store(imgs, tmp_path / "s.zarr", source="s.npy")
    st = open_store(store)
    assert len(st) == 6 and st.info.size == 32
    assert np.allclose(st.read_images(0, 6).astype(np.float32), imgs, atol=1e-3)
    with pytest.raises(BadInputError, match="exists"):
        write_store(imgs, store)


# ----------------------------------------------------------------------------- codes and spread


def test_codes_for_metrics_put_pose_first_with_one_angle_column():
    c = ModelCodes(x=np.zeros(4), y=np.ones(4), theta_deg=np.full(4, 30.0), z=np.ones((4, 2)))
    m, names, n_pose = codes_for_metrics(c, has_pose=True, learn_centroid=True)
    assert names == ["x", "y", "theta_deg", "z_0", "z_1"] and n_pose == 3 and m.shape == (4, 5)
    m, names, n_pose = codes_for_metrics(c, has_pose=True, learn_centroid=False)
    assert names == ["theta_deg", "z_0", "z_1"] and n_pose == 1
    m, names, n_pose = codes_for_metrics(c, has_pose=False, learn_centroid=True)
    assert names == ["z_0", "z_1"] and n_pose == 0


def test_orientation_spread_is_zero_for_aligned_shapes_and_large_for_random_ones():
    rng = np.random.default_rng(0)
    aligned = np.stack([rasterize("rectangle", 31.5, 31.5, 0.0, 12.0)[None] for _ in range(6)])
    turned = np.stack([rasterize("rectangle", 31.5, 31.5, float(a), 12.0)[None] for a in rng.uniform(0, 180, 12)])
    circles = np.stack([rasterize("circle", 31.5, 31.5, 0.0, 10.0)[None] for _ in range(3)])
    table = orientation_spread(np.concatenate([aligned, circles]), np.array(["rectangle"] * 6 + ["circle"] * 3))
    rect = table.set_index("label").loc["rectangle"]
    assert rect.spread_deg < 0.5 and rect.n_used == 6
    assert table.set_index("label").loc["circle"].n_used == 0  # no moment axis
    assert orientation_spread(turned).spread_deg.iloc[0] > 20.0
    flat = 0.5 + 0.001 * rng.standard_normal((4, 1, 64, 64))  # no object drawn: no spread claimed
    assert orientation_spread(flat).n_used.iloc[0] == 0


def test_orientation_spread_of_triangles_uses_their_third_order():
    """Triangles have no moment axis; their turn (mod 120 degrees) is measured by order 3."""
    rng = np.random.default_rng(3)
    aligned = np.stack([rasterize("triangle", *rng.uniform(28, 36, 2), 0.0, 10.0)[None] for _ in range(6)])
    turned = np.stack([rasterize("triangle", 31.5, 31.5, float(a), 10.0)[None] for a in rng.uniform(0, 120, 12)])
    row = orientation_spread(aligned).iloc[0]
    assert row.spread_order == 3 and row.n_used == 6 and row.spread_deg < 0.5
    assert orientation_spread(turned).spread_deg.iloc[0] > 15.0
    third_turn = np.stack([rasterize("triangle", 31.5, 31.5, a, 10.0)[None] for a in (0.0, 120.0, 240.0)])
    assert orientation_spread(third_turn).spread_deg.iloc[0] < 0.5  # the same triangle


def test_faint_background_texture_is_not_measured_as_shape():
    """A decoder's faint background (here stripes at 6% of the peak near the frame's edges) has
    more r^k weight than the object; the shape measures see the drawn object only."""
    tri = rasterize("triangle", 31.5, 31.5, 0.0, 10.0)[None]
    textured = tri.copy()
    textured[0, 8:56, 6:8] += 0.06
    textured[0, 8:56, 56:58] += 0.06
    textured[0] += 0.01 * np.random.default_rng(0).random((64, 64)).astype(np.float32)
    clean, noisy = orientation_spread(tri[None]).iloc[0], orientation_spread(textured[None]).iloc[0]
    for col in ("mean_anisotropy", "mean_harmonic_3", "mean_harmonic_4"):
        assert abs(clean[col] - noisy[col]) < 0.02, col
    from pipeline.moments import rotational_harmonics, subtract_background

    raw = rotational_harmonics(subtract_background(torch.from_numpy(textured[None]))).numpy()[0]
    assert raw[2] > clean.mean_harmonic_4 + 0.1  # without the object mask the stripes would count


def test_one_blob_for_every_shape_is_not_counted_as_aligned_shapes():
    """A common axis is not enough: the aligned images must draw each shape as the inputs show it,
    and a triangle drawn as a round blob (its turn not learned) is not a triangle drawn."""
    from pipeline.evaluate.alignment import SHAPE_MEASURES

    rng = np.random.default_rng(1)
    labels = np.array(["rectangle"] * 6 + ["circle"] * 6 + ["triangle"] * 6)
    inputs = np.stack([rasterize(lab, *rng.uniform(24, 40, 2), float(rng.uniform(0, 360)), 10.0)[None]
                       for lab in labels])
    drawn = np.stack([rasterize(lab, 31.5, 31.5, 0.0, 10.0)[None] for lab in labels])
    yy, xx = np.mgrid[0:64, 0:64]
    blob = np.exp(-((xx - 31.5) ** 2 / 60.0 + (yy - 31.5) ** 2 / 30.0))[None]  # one elongated blob for all
    blobs = np.stack([blob] * len(labels))
    disc = rasterize("circle", 31.5, 31.5, 0.0, 8.0)[None]
    round_triangles = np.concatenate([drawn[:12], np.stack([disc] * 6)])  # right but for the triangles

    def table(aligned):
        t = orientation_spread(aligned, labels)
        ref = orientation_spread(inputs, labels).set_index("label")
        for col, input_col in SHAPE_MEASURES:
            t[input_col] = t.label.map(ref[col])
        return t

    good, bad, no_triangles = table(drawn), table(blobs), table(round_triangles)
    assert good.spread_deg.iloc[0] < 0.5 and bad.spread_deg.iloc[0] < 0.5  # both share one axis
    assert shapes_drawn(good) and not shapes_drawn(bad)
    tri = no_triangles.set_index("label").loc["triangle"]
    assert tri.input_harmonic_3 > 0.5 > 0.1 > tri.mean_harmonic_3  # the inputs' third order, lost
    assert abs(tri.mean_anisotropy - tri.input_anisotropy) < 0.1  # which the anisotropy alone cannot see
    assert not shapes_drawn(no_triangles)
    assert not shapes_drawn(good.assign(input_anisotropy=np.nan))  # nothing to compare: no claim


def test_xyrcs_factors_fold_the_rotation_by_symmetry():
    data = make_eval_data("xyrcs", n=30, size=32)
    assert data.images.shape == (30, 3, 32, 32)
    assert data.factor_names == ("x_pix", "y_pix", "rotation_deg", "hue_deg", "brightness", "shape_id")
    assert set(data.circular) == {"rotation_deg", "hue_deg"}
    assert np.all(data.named["rotation_deg"] < 360.0)


@pytest.mark.parametrize("name, full", [("xyrcs", 0.4), ("dsprites", 1.0)])
def test_synthetic_sets_reach_full_scale_as_the_models_see_them(name, full):
    """The trainer's view (uint8 / 255) of every synthetic set spans [0, 1]: binary dSprites are
    exactly {0, 1}, and XYRCS objects are at least as bright as their lowest brightness factor."""
    data = make_eval_data(name, n=12, size=64)
    seen = torch.stack([ArrayDataset(data.images)[i][0] for i in range(12)])
    assert seen.min() == 0.0 and seen.amax(dim=(1, 2, 3)).min() >= full - 0.01
    if name == "dsprites":
        assert set(torch.unique(seen).tolist()) == {0.0, 1.0}


# ----------------------------------------------------------------------------- the command


@pytest.mark.slow
def test_evaluate_command_end_to_end_on_tiny_xyrcs(tmp_path, capsys):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    out = tmp_path / "eval"
    args = ["evaluate", "--dataset", "xyrcs", "--models", "codae,dae", "--out", str(out), "--budget-minutes", "0.04",
            "--n", "48", "--n-eval", "40", "--image-size", "32", "--config", str(config), "--quiet", "--first-seed", "2"]
    assert main(args) == 0
    assert "mean of eight metrics" in capsys.readouterr().out
    rows = list(csv.DictReader(open(out / "metrics_runs.csv")))
    assert {(r["model"], r["setting"]) for r in rows} == {(m, s) for m in ("codae", "dae")
                                                           for s in ("with_pose", "without_pose")}
    assert all(0.0 <= float(r["mean"]) <= 1.0 for r in rows)
    assert {r["seed"] for r in rows} == {"2"} and (out / "runs" / "codae" / "seed2" / "checkpoint.pt").exists()
    dae_without = next(r for r in rows if r["model"] == "dae" and r["setting"] == "without_pose")
    assert dae_without["pose_removed"].startswith("latents ")  # remove_pose_latents for a model without pose
    md = (out / "metrics.md").read_text()
    assert "| codae |" in md and "±" in md and "without position and orientation" in md
    summary = list(csv.DictReader(open(out / "metrics_summary.csv")))
    assert {"mean_best", "mean_mean", "mean_std", "best_seed"} <= set(summary[0])
    for kind in ("codae", "dae"):
        for fig in ("aligned", "traversals"):
            assert (out / "figures" / f"{kind}_{fig}.png").stat().st_size > 1000
        table = list(csv.DictReader(open(out / f"pearson_{kind}.csv")))
        assert all(r["label"] == "unnamed" or r["label"] in TINY_FACTORS for r in table)
    codae_latents = [r["latent"] for r in csv.DictReader(open(out / "pearson_codae.csv"))]
    assert codae_latents[:4] == ["x", "y", "theta_cos", "theta_sin"]
    align = {r["label"]: r for r in csv.DictReader(open(out / "alignment.csv")) if r["model"] == "codae"}
    assert float(align["rectangle"]["input_anisotropy"]) > 0.5 > float(align["circle"]["input_anisotropy"])
    assert all(r["spread_order"] in {"2", "3", "4"} for r in align.values())
    cfg = yaml.safe_load((out / "runs" / "codae" / "seed2" / "config.yaml").read_text())
    assert cfg["loss"]["orientation_orders"] == [2, 3, 4]  # shape sets anchor triangles and squares too
    assert main(args) == 2  # results are not overwritten


TINY_FACTORS = {"x_pix", "y_pix", "rotation_deg", "hue_deg", "brightness", "shape_id"}


@pytest.mark.slow
def test_evaluate_command_on_a_centred_stack(tmp_path):
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:32, 0:32] - 15.5
    stack = []
    for a in rng.uniform(0, 2 * np.pi, 40):  # a centred disc plus an off-centre spot: a COM direction
        img = np.exp(-(xx**2 + yy**2) / 40.0) + 0.8 * np.exp(-((xx - 6 * np.cos(a)) ** 2 + (yy + 6 * np.sin(a)) ** 2) / 6.0)
        stack.append(img)
    np.save(tmp_path / "cbed.npy", np.asarray(stack, dtype=np.float32))
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    out = tmp_path / "eval"
    rc = main(["evaluate", "--dataset", str(tmp_path / "cbed.npy"), "--models", "codae", "--out", str(out),
               "--budget-minutes", "0.03", "--n-eval", "40", "--image-size", "32", "--centred", "--config",
               str(config), "--store", str(tmp_path / "cbed.zarr"), "--quiet"])
    assert rc == 0
    assert not (out / "metrics_runs.csv").exists()  # no ground truth, no metric tables
    assert (tmp_path / "cbed.zarr" / "zarr.json").is_file()
    table = list(csv.DictReader(open(out / "pearson_codae.csv")))
    assert [r["latent"] for r in table][:2] == ["theta_cos", "theta_sin"]  # no x, y for centred data
    assert {"com_x", "com_y", "com_angle", "com_mag"} <= set(table[0])
    cfg = yaml.safe_load((out / "runs" / "codae" / "seed0" / "config.yaml").read_text())
    assert cfg["loss"]["orientation_prior"] == "com" and cfg["model"]["learn_centroid"] is False
    assert cfg["loss"]["orientation_orders"] == [2]
