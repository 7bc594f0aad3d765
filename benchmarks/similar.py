"""Similarity search: speed of exact neighbour search, and the quality of CODAE's neighbours on a survey with truth.

Run::

    python benchmarks/similar.py speed   [--n 314000] [--dims 8,16] [--sample 4096] [--full auto]
    python benchmarks/similar.py quality [--survey DIR --store STORE] [--checkpoint CKPT | --minutes 4]

**speed**: synthetic latents, ``n`` rows of ``d`` columns, two kinds: ``gaussian`` (independent
normal columns: every dimension used, the worst case for a tree) and ``manifold`` (a 5-dimensional
latent factor mapped non-linearly into ``d`` columns plus 2 % noise, as trained latents tend to
be); with ``--catalog CAT``, also ``catalogue``: rows drawn like CAT's latents (:func:`like_catalogue`).
Each exact backend is timed on (1) one query against the loaded index (median of 25) and (2) every
row's 10 neighbours.  Brute force costs the same per query whatever the data, so (2) is
timed on ``--sample`` queries against all rows and scaled to ``n`` (marked ``~``); ``--full``
runs (2) over all rows for the named backends.  Wall and CPU seconds and the load average are
printed: on a shared machine the wall time is what a user waited, the CPU time what the work cost.

**quality**: a demo survey with truth (made with ``--n`` galaxies when ``--survey`` is not given),
its store, and a checkpoint (``--checkpoint``, or ``--minutes`` of CPU training of the default
model).  Latents come from :func:`pipeline.predict.predict_batch` on the store images.  Printed:

- per intrinsic property of the truth table, the median |difference| between a galaxy and its 10
  nearest neighbours, for random galaxies, for neighbours in a pixel PCA of the same size as z
  (the PCA components standardised like z), and for CODAE's latents (standardised and Euler);
- pose invariance: for ``--queries`` galaxies, the overlap of the 10 neighbours of the galaxy and
  of the same galaxy turned, searched in the unturned index.  Two ways to turn: the 64-pixel store
  image (90 degrees exact, ``np.rot90``; 37 degrees bilinear, :func:`pipeline.geometry.align_to_pose`
  about the centre, whose blur at the store's scale moves the latents as well as the turn), and the
  full-resolution survey cutout turned and then read as ingest reads it (:func:`_turn_cutouts`: the
  same sky turned; 0 degrees re-reads it, the control for the read path).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from catalogs.neighbours import NeighbourIndex, embed  # noqa: E402

K = 10


def _load() -> str:
    return "load average " + " ".join(f"{x:.1f}" for x in os.getloadavg())


# ---------------------------------------------------------------- speed


def like_catalogue(catalog: Path, n: int, seed: int = 0, components: int = 32) -> np.ndarray:
    """``n`` rows drawn like a trained catalogue's latents: a Gaussian mixture (``components``, full
    covariances; scikit-learn) fitted to its ``z_*`` columns, standardised as the search embeds them,
    keeps the correlations that make trained latents fill few dimensions."""
    from sklearn.mixture import GaussianMixture

    from catalogs.neighbours import latent_columns
    from catalogs.reader import open_catalog

    with open_catalog(catalog) as cat:
        cols = latent_columns(cat.names, where=str(catalog))
        arrays = cat.read_arrays(cols)
    z = np.stack([np.asarray(arrays[c], dtype=np.float64) for c in cols], axis=1)
    points, _ = embed(z, "standardised")
    gmm = GaussianMixture(components, covariance_type="full", reg_covar=1e-4, random_state=seed).fit(points)
    with warnings.catch_warnings():  # numpy's check of each fitted covariance trips on rounding
        warnings.simplefilter("ignore", RuntimeWarning)
        rows = gmm.sample(n)[0]
    return rows[np.random.default_rng(seed).permutation(n)].astype(np.float32)


def synthetic(kind: str, n: int, d: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "gaussian":
        return rng.standard_normal((n, d)).astype(np.float32)
    f = rng.standard_normal((n, 5))
    w1, w2 = rng.standard_normal((5, d)), rng.standard_normal((5, d))
    z = np.tanh(f @ w1 / np.sqrt(5)) + 0.3 * np.sin(f @ w2)
    return (z + 0.02 * rng.standard_normal((n, d))).astype(np.float32)


class _Sklearn:
    def __init__(self, points: np.ndarray, algorithm: str) -> None:
        from sklearn.neighbors import NearestNeighbors

        self.nn = NearestNeighbors(n_neighbors=K + 1, algorithm=algorithm, n_jobs=-1).fit(points)

    def search(self, q: np.ndarray, k: int) -> np.ndarray:
        return self.nn.kneighbors(q, n_neighbors=k, return_distance=False)


def _backends(points: np.ndarray, names: list[str]) -> dict[str, tuple[object, float]]:
    """name -> (object with .search(q, k) -> indices, build seconds)."""
    out = {}
    for name in names:
        t = time.perf_counter()
        if name in ("faiss", "numpy", "torch", "kdtree", "auto"):
            index = NeighbourIndex(points, backend="auto" if name == "auto" else name)
            if name != "auto":
                index._structure(name)  # build now, so the query time is the query's
            obj = index
        else:
            obj = _Sklearn(points, name.split("-", 1)[1])
        out[name] = (obj, time.perf_counter() - t)
    return out


def speed(args: argparse.Namespace) -> None:
    names = args.backends.split(",")
    print(f"# exact {K}-nearest-neighbour search, {args.n} rows; {os.cpu_count()} CPUs; {_load()}")
    print(f"{'data':10} {'d':>3} {'backend':15} {'build s':>8} {'1 query ms':>11} {'all rows wall s':>16} "
          f"{'all rows CPU s':>15}")
    cases = [(kind, lambda d=int(d), kind=kind: synthetic(kind, args.n, d))
             for d in args.dims.split(",") for kind in args.kinds.split(",")]
    if args.catalog is not None:
        cases.append(("catalogue", lambda: like_catalogue(args.catalog, args.n)))
    for kind, make in cases:
        points = make()
        d = points.shape[1]
        rng = np.random.default_rng(1)
        for name, (obj, build) in _backends(points, names).items():
            singles = []
            for i in rng.integers(0, args.n, 25):
                t = time.perf_counter()
                obj.search(points[i:i + 1], K + 1)
                singles.append(1000 * (time.perf_counter() - t))
            full = name in args.full.split(",")
            rows = np.arange(args.n) if full else rng.choice(args.n, min(args.sample, args.n), replace=False)
            t, c = time.perf_counter(), time.process_time()
            if full and isinstance(obj, NeighbourIndex):
                obj.all_neighbours(K)
            else:
                for a in range(0, len(rows), 8192):
                    obj.search(points[rows[a:a + 8192]], K + 1)
            wall, cpu = time.perf_counter() - t, time.process_time() - c
            scale = args.n / len(rows)
            mark = " " if full else "~"
            shown = f"{name} ({obj.backend})" if name == "auto" and full else name
            print(f"{kind:10} {d:3d} {shown:15} {build:8.2f} {statistics.median(singles):11.2f} "
                  f"{mark}{wall * scale:15.1f} {mark}{cpu * scale:14.1f}", flush=True)
    print(f"# ~: timed on a sample of queries against all rows, scaled to {args.n} queries; {_load()}")


# ---------------------------------------------------------------- quality


PROPERTIES = ("axis_ratio", "hlr_arcsec", "bulge_fraction", "bulge_sersic_n", "mag_r", "g_r")


def _survey(args: argparse.Namespace, root: Path) -> tuple[Path, Path]:
    from pipeline.data.ingest import ingest_survey
    from pipeline.simulate.survey import write_demo_survey

    survey = args.survey or root / "survey"
    if not (survey / "truth.parquet").is_file():
        print(f"# writing a demo survey of {args.n} galaxies to {survey}", flush=True)
        write_demo_survey(survey, args.n, seed=args.seed, workers=2, progress=False)
    store = args.store or root / "store.zarr"
    if not (store / "zarr.json").is_file():
        ingest_survey(survey / "catalog.parquet", survey / "images", store, size=64)
    return survey, store


def _checkpoint(args: argparse.Namespace, root: Path, store: Path) -> Path:
    if args.checkpoint is not None:
        return args.checkpoint
    from pipeline.config import RunConfig
    from pipeline.train import train

    print(f"# training the default model for {args.minutes} CPU minutes", flush=True)
    cfg = RunConfig().replace(train={"max_minutes": args.minutes, "device": "cpu"})
    train(cfg, store, root / "run", progress=False)
    return root / "run" / "checkpoint.pt"


def _latents(model, images: np.ndarray, batch: int = 256) -> np.ndarray:
    import torch

    from pipeline.predict import predict_batch

    out = []
    with torch.inference_mode():
        for a in range(0, len(images), batch):
            out.append(predict_batch(model, torch.from_numpy(images[a:a + batch])).z)
    return np.concatenate(out)


def _turn(images: np.ndarray, degrees: float) -> np.ndarray:
    """Cutouts turned counter-clockwise as displayed about the image centre."""
    if degrees % 90 == 0:
        return np.ascontiguousarray(np.rot90(images, k=int(degrees // 90) % 4, axes=(2, 3)))
    import torch

    from pipeline.geometry import align_to_pose

    t = torch.from_numpy(images)
    n = len(t)
    # align_to_pose samples the input at M(theta) q: theta = -degrees turns the content by +degrees
    angle = torch.full((n,), -np.deg2rad(degrees), dtype=torch.float32)
    zero = torch.zeros(n)
    return align_to_pose(t, angle, zero, zero).numpy()


def _turn_cutouts(paths: list[Path], info, degrees: float) -> np.ndarray:
    """The survey cutouts at ``paths`` turned by ``degrees`` counter-clockwise as displayed, then
    read as ingest reads them: as the same sky turned would reach the store.

    Each full-resolution cutout is turned about its centre by PIL (bilinear; the 424-pixel frame's
    corners lie outside the store's centre crop, so no fill enters it), written losslessly (PNG)
    and read by :func:`pipeline.data.readers.read_cutout` with the store's crop and size: the
    resampling happens at the cutout's scale, and the crop's area average to the store's 64 pixels
    leaves almost none of its blur, unlike a turn of the 64-pixel store image.
    """
    from PIL import Image

    from pipeline.data.readers import CropSpec, read_cutout

    crop = CropSpec(info.crop_start_x, info.crop_start_y, info.crop_size, info.size)
    out = np.empty((len(paths), info.channels, info.size, info.size), np.float32)
    with tempfile.TemporaryDirectory(prefix="turned_") as tmp:
        for i, source in enumerate(paths):
            with Image.open(source) as im:
                turned = im.convert("RGB").rotate(degrees, resample=Image.Resampling.BILINEAR)
            path = Path(tmp) / f"{i}.png"
            turned.save(path)
            out[i] = read_cutout(path, crop).astype(np.float32) / 255.0
    return out


def _pca_basis(centred: np.ndarray, d: int, rng: np.random.Generator, power: int = 4) -> np.ndarray:
    """The ``d`` leading principal axes (pixels, d) by randomised SVD (Halko et al. 2011: a random
    range of d + 10 columns refined by ``power`` power iterations), far cheaper than a full SVD."""
    x = centred.astype(np.float64)
    q, _ = np.linalg.qr(x @ rng.standard_normal((x.shape[1], d + 10)))
    for _ in range(power):
        q, _ = np.linalg.qr(x.T @ q)
        q, _ = np.linalg.qr(x @ q)
    _, _, vt = np.linalg.svd(q.T @ x, full_matrices=False)
    return vt[:d].T.astype(np.float32)


def quality(args: argparse.Namespace) -> None:
    import pandas as pd

    from pipeline.checkpoint import load_model
    from pipeline.data.store import open_store

    root = args.dir or Path(tempfile.mkdtemp(prefix="bench_similar_"))
    survey, store = _survey(args, root)
    ckpt = _checkpoint(args, root, store)
    st = open_store(store)
    n_used = min(len(st), args.limit or len(st))
    images = st.read_images(0, n_used).astype(np.float32) / 255.0
    ids = np.asarray(np.asarray(st.ids[:n_used]).tolist(), dtype=np.str_)
    truth = pd.read_parquet(survey / "truth.parquet").set_index("iauname").loc[ids]
    model, state = load_model(ckpt)
    d = int(state["config"].model.latent_dim)
    print(f"# {len(ids)} galaxies of {len(st)} from {survey}; checkpoint {ckpt} (step {state.get('step')}, d = {d}); {_load()}")

    t = time.perf_counter()
    z = _latents(model, images)
    print(f"# latents of {len(z)} cutouts in {time.perf_counter() - t:.1f} s", flush=True)
    flat = images.reshape(len(images), -1)
    mean = flat.mean(axis=0)
    basis = _pca_basis(flat - mean, d, np.random.default_rng(args.seed))  # (pixels, d)

    def pca(imgs: np.ndarray) -> np.ndarray:
        return (imgs.reshape(len(imgs), -1) - mean) @ basis

    spaces = {"pixel PCA": (pca(images), "standardised", pca),
              "CODAE z standardised": (z, "standardised", None),
              "CODAE z euler": (z, "euler", None)}
    rng = np.random.default_rng(args.seed)
    n = len(ids)
    neighbours = {}
    for name, (vectors, metric, _) in spaces.items():
        points, _ = embed(vectors, metric)
        _, idx = NeighbourIndex(points).all_neighbours(K)
        neighbours[name] = idx
    neighbours = {"random": np.stack([rng.choice(np.delete(np.arange(n), i), K, replace=False) for i in range(n)]),
                  **neighbours}

    print(f"\n## median |property difference| between a galaxy and its {K} neighbours (lower is better)")
    print(f"{'property':16}" + "".join(f"{name:>22}" for name in neighbours))
    for prop in PROPERTIES:
        v = truth[prop].to_numpy(dtype=np.float64)
        cells = [float(np.median(np.abs(v[idx] - v[:, None]))) for idx in neighbours.values()]
        print(f"{prop:16}" + "".join(f"{c:22.4g}" for c in cells))

    queries = rng.choice(n, min(args.queries, n), replace=False)
    print(f"\n## pose invariance: mean overlap of the {K} neighbours of {len(queries)} galaxies and of the same "
          "cutouts turned (1 = the same neighbours)")
    print(f"{'turn (degrees, how)':>28}" + "".join(f"{name:>22}" for name in spaces))
    files = pd.read_parquet(survey / "catalog.parquet").set_index("iauname")["file_loc"]
    cutouts = [survey / "images" / files[name] for name in ids[queries]]
    turns = {"90 (store, exact)": _turn(images[queries], 90.0),
             "37 (store, 64-px bilinear)": _turn(images[queries], 37.0),
             "0 (cutout, re-read)": _turn_cutouts(cutouts, st.info, 0.0),
             "37 (cutout, then ingest)": _turn_cutouts(cutouts, st.info, 37.0),
             "90 (cutout, then ingest)": _turn_cutouts(cutouts, st.info, 90.0)}
    for label, turned in turns.items():
        z_turned = _latents(model, turned)
        cells = []
        for vectors, metric, project in spaces.values():
            points, embedding = embed(vectors, metric)
            index = NeighbourIndex(points)
            _, before = index.search(points[queries], K, exclude=queries)
            moved = project(turned) if project is not None else z_turned
            _, after = index.search(embedding(moved), K, exclude=queries)
            cells.append(np.mean([len(set(a) & set(b)) / K for a, b in zip(before, after)]))
        print(f"{label:>28}" + "".join(f"{c:22.3f}" for c in cells), flush=True)
    print(f"# {_load()}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="what", required=True)
    s = sub.add_parser("speed")
    s.add_argument("--n", type=int, default=314_000)
    s.add_argument("--dims", default="8,16")
    s.add_argument("--kinds", default="gaussian,manifold")
    s.add_argument("--backends", default="numpy,faiss,torch,kdtree,sklearn-kd_tree,sklearn-brute")
    s.add_argument("--sample", type=int, default=4096, help="queries timed for the all-rows estimate")
    s.add_argument("--full", default="", help="backends whose all-rows search runs in full (e.g. auto,kdtree)")
    s.add_argument("--catalog", type=Path, default=None,
                   help="also rows drawn like this catalogue's latents (a Gaussian mixture fitted to its z)")
    q = sub.add_parser("quality")
    q.add_argument("--survey", type=Path, default=None, help="demo survey with truth.parquet (made when absent)")
    q.add_argument("--store", type=Path, default=None, help="its store (ingested at 64 pixels when absent)")
    q.add_argument("--checkpoint", type=Path, default=None, help="trained model (else trained for --minutes)")
    q.add_argument("--minutes", type=float, default=4.0)
    q.add_argument("--n", type=int, default=2000)
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--queries", type=int, default=500, help="galaxies turned for the pose-invariance overlap")
    q.add_argument("--limit", type=int, default=None, help="use only the store's first N galaxies")
    q.add_argument("--dir", type=Path, default=None)
    args = ap.parse_args()
    speed(args) if args.what == "speed" else quality(args)


if __name__ == "__main__":
    main()
