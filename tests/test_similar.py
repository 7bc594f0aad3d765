"""Similarity search: exact neighbours (both backends), the table and batch outputs, the mosaic's turn, bad input."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from astropy.table import Table
from PIL import Image

from catalogs.fits_io import write_catalog
from catalogs.neighbours import NeighbourIndex, all_similar, embed, find_similar, latent_columns
from pipeline.cli import main
from pipeline.data.ingest import ingest_survey
from pipeline.data.store import open_store
from pipeline.errors import BadInputError
from pipeline.mosaic import read_cutouts, similarity_mosaic, turned_to

SIZE = 48
CLUSTERS = 4
PER = 8
N = CLUSTERS * PER


def _ellipse(x0: float, y0: float, theta_deg: float, q: float, sigma: float, rng) -> np.ndarray:
    """Elliptical Gaussian (SIZE x SIZE uint8 RGB, display frame), major axis at theta CCW as displayed."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    t = np.deg2rad(theta_deg)
    dx, dy = xx - x0, yy - y0
    u = dx * np.cos(t) - dy * np.sin(t)
    v = dx * np.sin(t) + dy * np.cos(t)
    img = 0.05 + 0.85 * np.exp(-0.5 * ((u / sigma) ** 2 + (v / (q * sigma)) ** 2)) + 0.01 * rng.standard_normal(xx.shape)
    return np.clip(np.round(255 * np.repeat(img[..., None], 3, axis=2)), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def clusters(tmp_path_factory):
    """A store of N ellipses at random angles and a catalogue whose latents form CLUSTERS tight groups of PER.

    One extra catalogue row (``GHOST``) is not in the store.
    """
    root = tmp_path_factory.mktemp("similar")
    rng = np.random.default_rng(11)
    theta = rng.uniform(0, 360, N)
    x0 = (SIZE - 1) / 2 + rng.uniform(-3, 3, N)
    y0 = (SIZE - 1) / 2 + rng.uniform(-3, 3, N)
    names = [f"G{i:03d}" for i in range(N)]
    (root / "images").mkdir()
    for i, name in enumerate(names):
        Image.fromarray(_ellipse(x0[i], y0[i], theta[i], 0.4, 5.0, rng)).save(root / "images" / f"{name}.png")
    pd.DataFrame({"iauname": names, "ra": 150.0 + np.arange(N) * 1e-2, "dec": np.full(N, 2.0),
                  "file_loc": [f"{n}.png" for n in names]}).to_parquet(root / "cat.parquet")
    store = root / "st.zarr"
    ingest_survey(root / "cat.parquet", root / "images", store, size=SIZE, crop=SIZE, shard_size=16)

    group = np.repeat(np.arange(CLUSTERS), PER)
    centres = np.array([[0.0, 0.0, 0.0], [3.0, 0.0, 1.0], [0.0, 3.0, -1.0], [3.0, 3.0, 2.0]])
    z = centres[group] + 0.05 * rng.standard_normal((N, 3))
    ids = np.array(names + ["GHOST"])
    z = np.vstack([z, [[1.5, 1.5, 0.5]]])
    n = N + 1
    cols = {"id": ids, "ra": np.append(150.0 + np.arange(N) * 1e-2, 151.0), "dec": np.full(n, 2.0),
            "x_pix": np.append(x0, 24.0), "y_pix": np.append(y0, 24.0), "theta_deg": np.append(theta, 0.0),
            "pa_deg": (np.append(theta, 0.0) - 90) % 180, "moment_pa_deg": np.zeros(n), "moment_axis_ratio": np.full(n, 0.4),
            "z_0": z[:, 0], "z_1": z[:, 1], "z_2": z[:, 2], "recon_mse": np.zeros(n),
            "flags": np.where(np.arange(n) % 2 == 0, 0, 1).astype(np.int16)}
    cat = write_catalog(cols, root / "cat.fits", latent_dim=3, partial=True, header={"checkpoint_sha256": "0" * 64,
                                                                        "config": {"note": "test"}})
    return {"root": root, "store": store, "cat": cat, "group": group, "theta": theta, "names": names}


# ---------------------------------------------------------------- the index


@pytest.mark.parametrize("d", [3, 16])
def test_every_backend_finds_the_exact_neighbours(d):
    import importlib.util
    rng = np.random.default_rng(d)
    points = rng.standard_normal((1500, d)).astype(np.float32)
    full = np.sqrt(((points[:, None, :].astype(np.float64) - points[None]) ** 2).sum(-1))
    np.fill_diagonal(full, np.inf)
    ref = np.argsort(full, axis=1)[:, :7]
    backends = ["numpy", "torch", "kdtree"] + (["faiss"] if importlib.util.find_spec("faiss") else [])
    for backend in backends:
        dist, idx = NeighbourIndex(points, backend=backend).all_neighbours(7, block=400)
        assert (idx == ref).mean() > 0.999, backend  # ties in float32 ranking may swap a pair
        np.testing.assert_allclose(dist, np.take_along_axis(full, idx, axis=1), rtol=1e-9)
        assert (np.diff(dist, axis=1) >= 0).all()


def test_auto_times_brute_force_and_the_tree_and_stays_exact(monkeypatch):
    import catalogs.latent_index as nb

    monkeypatch.setattr(nb, "PROBE_QUERIES", 300)
    points = np.random.default_rng(3).standard_normal((1200, 4)).astype(np.float32)
    index = NeighbourIndex(points)
    assert index.backend == "numpy"  # single searches: brute force
    dist, idx = index.all_neighbours(5, block=500)
    assert index.backend in ("faiss", "torch", "kdtree")  # torch is installed with the package
    ref_d, ref_i = NeighbourIndex(points, backend="numpy").all_neighbours(5)
    np.testing.assert_allclose(dist, ref_d, rtol=1e-9)
    assert (idx == ref_i).mean() > 0.999


def test_standardised_metric_uses_median_and_mad():
    z = np.column_stack([np.r_[np.arange(99.0), 1e6], 100 * np.arange(100.0), np.full(100, 7.0)])
    points, emb = embed(z)
    assert emb.metric == "standardised"
    np.testing.assert_allclose(emb.centre[:2], [49.5, 4950.0])
    # the outlier does not inflate the scale: MAD of 0..98 plus one far value, times 1.4826
    assert emb.scale[0] == pytest.approx(1.482602218505602 * 25.0)
    assert emb.scale[1] == pytest.approx(1.482602218505602 * 2500.0)
    assert emb.scale[2] == 1.0  # a constant column is left unscaled
    euler, e2 = embed(z, "euler")
    assert euler.shape == (100, 6) and e2.centre is None
    np.testing.assert_allclose(euler[:, 0] ** 2 + euler[:, 3] ** 2, 1.0, rtol=1e-6)


def test_latent_columns_in_index_order_and_gaps():
    assert latent_columns(["id", "z_10", "z_2", "z_0", "z_1"] + [f"z_{i}" for i in range(3, 10)])[:3] == [
        "z_0", "z_1", "z_2"]
    with pytest.raises(BadInputError, match="has no latent columns"):
        latent_columns(["id", "ra"])
    with pytest.raises(BadInputError, match="no z_1"):
        latent_columns(["z_0", "z_2"])


# ---------------------------------------------------------------- searches on a catalogue


def test_neighbours_are_the_query_cluster(clusters):
    for q in (0, 9, 27):
        res = find_similar(clusters["cat"], id=clusters["names"][q], k=PER - 1)
        assert res["id"][0] == clusters["names"][q] and res["rank"][0] == 0 and res["distance"][0] == 0
        found = {int(str(i)[1:]) for i in res["id"][1:]}
        assert q not in found
        assert {int(g) for g in clusters["group"][list(found)]} == {int(clusters["group"][q])}
        assert list(res["rank"]) == list(range(PER))
        assert (np.diff(np.asarray(res["distance"][1:])) >= 0).all()
    # --where restricts the candidates, not the query
    res = find_similar(clusters["cat"], id="G001", k=3, where="flags == 0")
    assert all(int(str(i)[1:]) % 2 == 0 for i in res["id"][1:])
    assert res.meta["NSEARCH"] == N // 2 + 1  # the even rows and the ghost (row N is even)
    # ... and the distances do not depend on it: the scaling is the whole catalogue's
    everyone = find_similar(clusters["cat"], id="G001", k=N - 1)
    d_all = dict(zip(map(str, everyone["id"]), everyone["distance"]))
    for ident, d in zip(res["id"][1:], res["distance"][1:]):
        assert d == pytest.approx(d_all[str(ident)], rel=1e-6)


def test_query_by_position(clusters):
    res = find_similar(clusters["cat"], position=(150.0 + 5e-2 + 1e-4, 2.0, 5.0 / 3600), k=2)
    assert res["id"][0] == "G005"
    with pytest.raises(BadInputError, match="no galaxy .* within 5 arcsec.*nearest, G005"):
        find_similar(clusters["cat"], position=(150.0 + 5e-2, 2.004, 5.0 / 3600), k=2)


def test_all_neighbours_table(clusters):
    table = all_similar(clusters["cat"], k=PER - 1, where="id != 'GHOST'")
    assert len(table) == N * (PER - 1) and table.colnames == ["id", "rank", "nn_id", "nn_dist"]
    group = dict(zip(clusters["names"], clusters["group"]))
    assert all(group[str(a)] == group[str(b)] for a, b in zip(table["id"], table["nn_id"]))
    assert not any(str(a) == str(b) for a, b in zip(table["id"], table["nn_id"]))


# ---------------------------------------------------------------- mosaic


def test_mosaic_turns_every_galaxy_to_the_query_orientation(clusters):
    res = find_similar(clusters["cat"], id="G003", k=PER - 1)
    st = open_store(clusters["store"])
    observed = read_cutouts(st, [str(i) for i in res["id"]])
    turned = turned_to(observed, res, st.info, float(res["theta_deg"][0]))
    target = float(res["theta_deg"][0])
    # every galaxy of the store is the same ellipse: turned to the query, each must match it drawn centred there
    centre = (SIZE - 1) / 2
    model = _ellipse(centre, centre, target, 0.4, 5.0, np.random.default_rng(0)).astype(np.float64)[..., 0] / 255

    def corr(a: np.ndarray) -> float:
        return float(np.corrcoef(a.mean(axis=0).ravel(), model.ravel())[0, 1])

    for img, obs, row in zip(turned, observed, res):
        assert corr(img) > 0.97
        off = abs((float(row["theta_deg"]) - target + 90) % 180 - 90)
        if off > 30:
            assert corr(obs) < 0.9  # as observed it does not match: the turn did the work
    assert len({round(float(t) % 180) for t in res["theta_deg"]}) == len(res)  # the turns were all different
    png = similarity_mosaic(res, clusters["store"], out=clusters["root"] / "m.png")
    im = Image.open(io.BytesIO(png))
    assert im.format == "PNG" and im.width > im.height > 100
    assert (clusters["root"] / "m.png").read_bytes() == png


# ---------------------------------------------------------------- command line


def test_cli_table_png_and_out(clusters, tmp_path, capsys):
    cat, store = str(clusters["cat"]), str(clusters["store"])
    assert main(["similar", cat, "--id", "G010", "--k", str(PER - 1)]) == 0
    out = capsys.readouterr().out
    assert "G010" in out and "distance" in out
    shown = {f"G{i:03d}" for i in range(PER, 2 * PER)}
    assert all(name in out for name in shown)
    png, table = tmp_path / "g.png", tmp_path / "g.ecsv"
    assert main(["similar", cat, "--id", "G010", "--k", "4", "--store", store, "--png", str(png),
                 "--out", str(table)]) == 0
    back = Table.read(table)
    assert list(back["rank"]) == [0, 1, 2, 3, 4] and str(back["id"][0]) == "G010"
    assert png.stat().st_size > 1000
    nn = tmp_path / "nn.fits"
    assert main(["similar", cat, "--all", "--k", "3", "--where", "id != 'GHOST'", "--out", str(nn), "--quiet"]) == 0
    assert len(Table.read(nn)) == 3 * N
    assert main(["similar", cat, "--all", "--k", "3", "--out", str(nn), "--overwrite", "--quiet"]) == 0


@pytest.mark.parametrize("argv, message", [
    (["--id", "NOPE"], "id 'NOPE' is not in"),
    (["--id", "GHOST", "--store", "{store}", "--png", "{tmp}/x.png"], "not in the store"),
    (["--id", "G001", "--k", str(N + 5)], f"--k {N + 5} is larger than the {N} galaxies"),
    (["--id", "G001", "--k", "3", "--where", "flags == 0 && ra > 150.28"], "--k 3 is larger than the 2 galaxies"),
    (["--id", "G001", "--out", "{tmp}/x.txt"], "names no output format"),
    (["--ra", "150.0"], "needs both --ra and --dec"),
])
def test_cli_bad_input_is_one_line_exit_2(clusters, tmp_path, capsys, argv, message):
    argv = [a.format(store=clusters["store"], tmp=tmp_path) for a in argv]
    assert main(["similar", str(clusters["cat"]), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err.splitlines()[0]
    assert not (tmp_path / "x.png").exists()


def test_cli_catalogue_without_latents(tmp_path, capsys):
    path = tmp_path / "plain.fits"
    Table({"id": ["A", "B"], "ra": [1.0, 2.0], "dec": [0.0, 0.0]}).write(path)
    assert main(["similar", str(path), "--id", "A"]) == 2
    assert "has no latent columns z_0" in capsys.readouterr().err.splitlines()[0]
