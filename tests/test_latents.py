"""Latents: the plain autoencoder baseline, the latent names in the catalogue, the benchmark's measures."""

from __future__ import annotations

import csv
import math
import re

import numpy as np
import pytest
import torch
from astropy.io import fits
from scipy import stats

from pipeline.checkpoint import load_model
from pipeline.config import ModelConfig, RunConfig
from pipeline.data.memory import ArrayDataset
from pipeline.latent_labels import (
    PROPERTIES,
    correlations,
    format_labels,
    label_latents,
    labels_from_header,
    measure_images,
)
from pipeline.model import build_model
from pipeline.train import train
from tests.conftest import fitsverify, gaussian_ellipses

SMALL_AE = ModelConfig(kind="ae", image_size=32, channels=3, widths=(2, 4, 4), kernels=(5, 3, 3), latent_dim=3,
                       hidden=32, decoder_width=8)


# ---------------------------------------------------------------- the plain autoencoder


def test_ae_has_no_pose_and_decodes_its_latent():
    torch.manual_seed(0)
    model = build_model(SMALL_AE).eval()
    images = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        out = model(images)
    assert out.z.shape == (4, 3) and out.same_view.shape == (4, 3, 32, 32)
    assert model.has_pose is False and model.uses_moment_loss is False
    assert float(out.theta.abs().max()) == 0.0 and float(out.x.abs().max()) == 0.0
    assert torch.equal(out.aligned, out.same_view)
    with torch.no_grad():
        assert torch.allclose(model.decode_aligned(out.z), out.same_view)
        other = model.decode_aligned(out.z + 3.0)
    assert float((other - out.same_view).abs().max()) > 1e-3  # the image depends on z


def test_ae_trains_through_the_shared_loop_and_round_trips(tmp_path):
    imgs, _ = gaussian_ellipses(48, size=32, seed=3, max_shift=4)
    cfg = RunConfig(model=SMALL_AE).replace(train={"batch_size": 16, "max_steps": 100, "max_epochs": 100,
                                                   "log_every": 1, "lr": 3e-3, "seed": 1})
    res = train(cfg, ArrayDataset(imgs), tmp_path / "run", progress=False, stop_after_steps=8)
    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    recon = [float(r["reconstruction"]) for r in rows]
    assert sum(recon[-2:]) < sum(recon[:2]), recon
    model, state = load_model(res.checkpoint)
    assert state["config"].model.kind == "ae"
    x = torch.as_tensor(imgs[:8]).float()
    x = x / 255.0 if x.max() > 1 else x
    with torch.no_grad():
        assert torch.allclose(model(x).z, res.model.eval()(x).z, atol=1e-6)


# ---------------------------------------------------------------- measured image properties


def _gaussian(size: int, sx: float, sy: float, amp: float = 0.6, sky: float = 0.1) -> np.ndarray:
    c = (size - 1) / 2
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    return sky + amp * np.exp(-0.5 * (((x - c) / sx) ** 2 + ((y - c) / sy) ** 2))


def test_measure_images_against_analytic_gaussians():
    round_ = _gaussian(64, 3.0, 3.0)
    flat = _gaussian(64, 4.0, 2.0)
    # channels red, green, blue with blue / red = 0.5 on a common sky of 0.1
    sky = 0.1
    img = np.stack([np.stack([sky + 1.0 * (g - sky), sky + 0.8 * (g - sky), sky + 0.5 * (g - sky)])
                    for g in (round_, flat)])
    p = measure_images(torch.from_numpy(img).float())
    assert p["size"][0] == pytest.approx(3.0 * math.sqrt(2), rel=2e-3)  # sqrt(<r^2>) = sqrt(2) sigma
    assert p["size"][1] == pytest.approx(math.sqrt(4.0**2 + 2.0**2), rel=2e-3)
    assert p["axis_ratio"][0] == pytest.approx(1.0, abs=1e-3) and p["axis_ratio"][1] == pytest.approx(0.5, rel=2e-3)
    # <r^4> / <r^2>^2 = (3 a^4 + 2 a^2 b^2 + 3 b^4) / (a^2 + b^2)^2 for axes a, b: 2 when round
    assert p["concentration"] == pytest.approx([2.0, (3 * 4**4 + 2 * 4**2 * 2**2 + 3 * 2**4) / 20**2], rel=2e-3)
    assert p["colour"] == pytest.approx([-2.5 * math.log10(0.5)] * 2, abs=1e-4)
    lum_flux = 0.6 * (1.0 + 0.8 + 0.5) / 3 * 2 * math.pi * np.array([3.0 * 3.0, 4.0 * 2.0])
    assert p["log_flux"] == pytest.approx(np.log10(lum_flux), abs=2e-3)
    grey = measure_images(torch.from_numpy(round_[None, None]).float())
    assert math.isnan(grey["colour"][0]) and grey["size"][0] == pytest.approx(p["size"][0])
    blank = measure_images(torch.full((1, 3, 32, 32), 0.2))
    assert all(math.isnan(blank[k][0]) for k in PROPERTIES)  # no signal: nothing to measure


def test_correlations_equal_scipy_and_name_the_latents():
    rng = np.random.default_rng(0)
    n = 400
    props = {k: rng.normal(size=n) for k in PROPERTIES}
    props["colour"][:7] = np.nan  # unmeasurable rows leave that pair's sample
    z = np.stack([props["size"] + 0.3 * rng.normal(size=n), -props["colour"] + 0.5 * rng.normal(size=n),
                  rng.normal(size=n)], axis=1)
    r = correlations(z, props)
    for j in range(3):
        for p, q in enumerate(props.values()):
            ok = np.isfinite(q) & np.isfinite(z[:, j])
            assert r[j, p] == pytest.approx(stats.pearsonr(z[ok, j], q[ok]).statistic, abs=1e-12)
    labels = label_latents(r)
    assert [lab.label for lab in labels] == ["size", "colour", "unnamed"]
    assert labels[1].r < -0.5 and labels[2].named is False
    lines = format_labels(labels)
    assert lines[0].startswith("z_0 ~ size (r=+0.9") and lines[1].startswith("z_1 ~ colour (r=-0.9")
    assert lines[2].startswith("z_2 unnamed (best: ")
    assert correlations(np.ones((n, 1)), {"size": props["size"]})[0, 0] == 0.0  # a dead latent has r = 0


# ---------------------------------------------------------------- the catalogue


def _numpy_properties(images: np.ndarray, ring: int = 4) -> dict[str, np.ndarray]:
    """Independent re-implementation of the documented definitions (float64, pixel units)."""
    out = {k: [] for k in ("size", "log_flux", "colour", "concentration")}
    s = images.shape[-1]
    mask = np.ones((s, s), dtype=bool)
    mask[ring:s - ring, ring:s - ring] = False
    y, x = np.mgrid[0:s, 0:s].astype(np.float64)
    for img in images.astype(np.float64):
        lum = img.mean(axis=0)
        sig = np.clip(lum - (lum[mask].mean() + lum[mask].std(ddof=1)), 0, None)
        flux = sig.sum()
        xc, yc = (sig * x).sum() / flux, (sig * y).sum() / flux
        r2 = (x - xc) ** 2 + (y - yc) ** 2
        size = math.sqrt((sig * r2).sum() / flux)
        chan = [((c - c[mask].mean()) * (sig > 0)).sum() for c in img]
        out["size"].append(size)
        out["log_flux"].append(math.log10(flux))
        out["colour"].append(-2.5 * math.log10(chan[-1] / chan[0]))
        out["concentration"].append((sig * r2 * r2).sum() / flux / size**4)
    return {k: np.array(v) for k, v in out.items()}


@pytest.fixture(scope="module")
def named_catalogue(demo_run, tmp_path_factory):
    from pipeline.infer import infer_catalog

    out = tmp_path_factory.mktemp("named") / "cat.fits"
    infer_catalog(demo_run["store"], demo_run["checkpoint"], out, workers=1, device="cpu")
    return out


def test_catalogue_header_holds_correlations_equal_to_an_independent_recomputation(named_catalogue, demo_run):
    from pipeline.data.store import open_store

    with fits.open(named_catalogue) as hdul:
        hdr = hdul[1].header
        data = hdul[1].data
        d = int(hdr["LATDIM"])
        cat_ids = [str(v).strip() for v in data["id"]]
        z = np.stack([np.asarray(data[f"z_{j}"], dtype=np.float64) for j in range(d)], axis=1)
        axis_ratio = np.asarray(data["moment_axis_ratio"], dtype=np.float64)
        tcomm = {hdr[f"TTYPE{i}"]: hdr[f"TCOMM{i}"] for i in range(1, hdr["TFIELDS"] + 1)}
        cards = {k: hdr[k] for k in hdr if re.fullmatch(r"(R[A-Z]{3}|ZLAB)\d+", k)}
    st = open_store(demo_run["store"])
    store_ids = [str(v) for v in np.asarray(st.ids).tolist()]
    rows = [cat_ids.index(i) for i in store_ids]  # catalogue row of each store object, by id
    oracle = _numpy_properties(st.read_images(0, len(st)) / 255.0)
    oracle["axis_ratio"] = axis_ratio[rows]
    assert len(cards) == d * (len(PROPERTIES) + 1)
    for j in range(d):
        best, best_r = None, 0.0
        for prop, (code, _) in PROPERTIES.items():
            want = np.corrcoef(z[rows, j], oracle[prop])[0, 1]
            assert hdr[f"R{code}{j}"] == pytest.approx(want, abs=2e-3), (j, prop)
            if abs(want) > abs(best_r):
                best, best_r = prop, want
        label = best if abs(best_r) >= 0.5 else "unnamed"
        assert hdr[f"ZLAB{j}"] == label
        if label == "unnamed":
            assert tcomm[f"z_{j}"].startswith("pose-invariant morphology latent; unnamed")
        else:
            assert tcomm[f"z_{j}"] == f"pose-invariant morphology latent ~ {label} (r={best_r:+.2f})"


def test_named_catalogue_passes_fitsverify(named_catalogue):
    fitsverify(named_catalogue)


def test_infer_command_prints_the_latent_names(demo_run, tmp_path, capsys):
    from pipeline.cli import main

    out = tmp_path / "cat.fits"
    assert main(["infer", "--store", str(demo_run["store"]), "--checkpoint", str(demo_run["checkpoint"]),
                 "--out", str(out), "--quiet", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    hdr = fits.getheader(out, 1)
    for j in range(int(hdr["LATDIM"])):
        r = {prop: hdr[f"R{code}{j}"] for prop, (code, _) in PROPERTIES.items()}
        best = max(r, key=lambda p: abs(r[p]))
        if hdr[f"ZLAB{j}"] == "unnamed":
            assert f"z_{j} unnamed (best: {best}, r={r[best]:+.2f})" in printed
        else:
            assert f"z_{j} ~ {best} (r={r[best]:+.2f})" in printed
    from catalogs.fits_io import read_catalog

    labels = labels_from_header(read_catalog(out).meta, int(hdr["LATDIM"]))
    assert [lab.name for lab in labels] == [f"z_{j}" for j in range(int(hdr["LATDIM"]))]


# ---------------------------------------------------------------- the benchmark's measures


def test_r2_scores_find_a_signal_and_no_signal():
    from benchmarks.latents import r2_scores

    rng = np.random.default_rng(1)
    y = rng.normal(size=300)
    feats = np.stack([y + 0.1 * rng.normal(size=300), rng.normal(size=300)], axis=1)
    ridge, knn = r2_scores(feats, y, k=10, seed=0)
    assert ridge > 0.95 and knn > 0.8
    ridge0, knn0 = r2_scores(rng.normal(size=(300, 2)), y, k=10, seed=0)
    assert ridge0 < 0.05 and knn0 < 0.05


def test_invariance_ratio_separates_an_invariant_code_from_pixels():
    from benchmarks.latents import invariance_ratio, turned_views

    imgs, _ = gaussian_ellipses(40, size=32, seed=5, max_shift=3)
    images = torch.as_tensor(imgs).float()
    images = images / 255.0 if images.max() > 1 else images
    views = turned_views(images)
    assert len(views["quarter"]) == 4 and len(views["off_grid"]) == 3
    assert torch.equal(views["quarter"][0], images) and torch.equal(views["off_grid"][0], images)

    def invariant(v: torch.Tensor) -> np.ndarray:  # per-channel flux and sorted pixel quantiles
        flat = v.reshape(len(v), v.shape[1], -1)
        return torch.cat([flat.sum(-1), flat.sort(-1).values[..., -50::10].reshape(len(v), -1)], 1).numpy()

    def pixels(v: torch.Tensor) -> np.ndarray:
        return v.reshape(len(v), -1).numpy()

    assert invariance_ratio([invariant(v) for v in views["quarter"]]) < 1e-10
    assert invariance_ratio([pixels(v) for v in views["quarter"]]) > 0.3
    assert invariance_ratio([invariant(v) for v in views["off_grid"]]) < 0.1
    # known answer: codes a + e_v with the turn noise e of variance 0.01 and galaxy spread 1
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4000, 2))
    ratio = invariance_ratio([a + 0.1 * rng.normal(size=a.shape) for _ in range(3)])
    assert ratio == pytest.approx(0.01 * 2 / 3 / 1.01, rel=0.1)  # population variance of 3 draws: 2/3 of 0.01


def test_curve_snapshots_resume_to_the_unbroken_run(tmp_path):
    import pandas as pd

    from benchmarks.latents import training_curve

    imgs, _ = gaussian_ellipses(64, size=32, seed=2, max_shift=3)
    data = ArrayDataset(imgs)
    images = torch.stack([data[i][0] for i in range(len(data))])
    targets = pd.DataFrame({"flux": images.sum(dim=(1, 2, 3)).numpy().astype(np.float64)})
    cfg = RunConfig(model=SMALL_AE).replace(train={"batch_size": 16, "log_every": 1, "lr": 3e-3, "seed": 4})
    curve, model, steps, _ = training_curve(cfg, data, tmp_path / "curve", [3, 6], images, targets, k=5, seed=0)
    assert list(curve.index) == [3, 6] and steps == 6 and "flux" in curve.columns
    whole = train(cfg.replace(train={"max_steps": 6, "max_epochs": 100_000, "checkpoint_every": 100_000}), data,
                  tmp_path / "whole", progress=False)
    with torch.no_grad():
        assert torch.allclose(model(images).z, whole.model.eval()(images).z, atol=1e-5)
