"""Ellipticity kept by derotated stacks: catalogue angles against true angles (and random angles).

Run: ``python benchmarks/stack.py [--n 300] [--size 64] [--minutes 3] [--angles model|moment]``.
Builds a demo survey with known truth, ingests it, and makes three stacks of the elongated
galaxies (true axis ratio < 0.6): derotated by the true angles (truth table), by the catalogue
angles, and by random angles.  Ellipticity is ``1 - moment axis ratio`` of the stack
(background-subtracted moments, :mod:`pipeline.moments`).  The figure of merit is
``e(catalogue) / e(true)`` (target >= 0.9); random angles should fall towards 0.

``--angles model``: a catalogue from :func:`pipeline.infer.infer_catalog` after a short CPU
training of the default CODAE (``--minutes``); ``--angles moment``: the same catalogue with
``theta_deg`` replaced by the image-moment orientation (``moment_pa_deg + 90``), no training
quality involved.  The centroid comes from the catalogue in both cases.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from catalogs.fits_io import read_catalog, write_catalog  # noqa: E402
from pipeline.config import RunConfig  # noqa: E402
from pipeline.conventions import angle_diff_180, pa_to_theta  # noqa: E402
from pipeline.data.ingest import ingest_survey  # noqa: E402
from pipeline.infer import infer_catalog  # noqa: E402
from pipeline.moments import image_moments, subtract_background  # noqa: E402
from pipeline.simulate.survey import write_demo_survey  # noqa: E402
from pipeline.stack import stack_catalog  # noqa: E402
from pipeline.train import train  # noqa: E402


def ellipticity(image: np.ndarray) -> float:
    m = image_moments(subtract_background(torch.from_numpy(image[None]).float()))
    return 1.0 - float(m.axis_ratio[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--minutes", type=float, default=3.0)
    ap.add_argument("--angles", choices=["model", "moment"], default="model")
    ap.add_argument("--method", choices=["mean", "median", "clipped"], default="mean")
    ap.add_argument("--dir", type=Path, default=None)
    args = ap.parse_args()
    root = args.dir or Path(tempfile.mkdtemp(prefix="bench_stack_"))
    if not (root / "survey").exists():
        write_demo_survey(root / "survey", args.n, seed=2, size=424, workers=2, progress=False)
    store = root / "st.zarr"
    if not store.exists():
        ingest_survey(root / "survey" / "catalog.parquet", root / "survey" / "images", store, size=args.size,
                      shard_size=128)
    ckpt = root / "run" / "checkpoint.pt"
    if not ckpt.exists():
        t = time.perf_counter()
        cfg = RunConfig().replace(model={"image_size": args.size},
                                  train={"max_minutes": args.minutes, "device": "auto", "max_epochs": 200})
        res = train(cfg, store, root / "run", progress=False)
        print(f"training: {res.steps} steps, {time.perf_counter() - t:.0f} s, loss {res.final_loss:.5f}")
    cat_path = root / "cat.fits"
    if not cat_path.exists():
        infer_catalog(store, ckpt, cat_path)
    cat = read_catalog(cat_path)
    truth = pd.read_parquet(root / "survey" / "truth.parquet").set_index("iauname").loc[list(cat["id"])]
    err = angle_diff_180(np.asarray(cat["pa_deg"]), truth["pa_deg"].to_numpy())
    merr = angle_diff_180(np.asarray(cat["moment_pa_deg"]), truth["pa_deg"].to_numpy())
    print(f"catalogue: {len(cat)} rows; median |PA error| model {np.median(err):.2f} deg, "
          f"moments {np.median(merr):.2f} deg")

    latent = int(cat.meta["LATDIM"])
    cols = {name: np.asarray(cat[name]) for name in cat.colnames}
    base = dict(cols)
    variants = {
        "true": pa_to_theta(truth["pa_deg"].to_numpy()),
        "catalogue": (np.asarray(cols["theta_deg"]) if args.angles == "model"
                      else pa_to_theta(np.asarray(cols["moment_pa_deg"]))),
        "random": np.random.default_rng(0).uniform(0, 360, len(cat)),
    }
    where = "moment_axis_ratio < 0.6"
    sel = np.asarray(cols["moment_axis_ratio"]) < 0.6
    print(f"selection {where!r}: {int(sel.sum())} galaxies; true axis ratio median "
          f"{np.median(truth['axis_ratio'].to_numpy()[sel]):.3f}; angles: {args.angles}; method {args.method}")
    e = {}
    for name, theta in variants.items():
        path = root / f"cat_{name}.fits"
        write_catalog({**base, "theta_deg": np.mod(theta, 360.0)}, path, latent_dim=latent, overwrite=True,
                      header={k: v for k, v in cat.meta.items() if k in ("CKPTSHA", "SWVERS", "IMGSIZE", "CROP")})
        t = time.perf_counter()
        res = stack_catalog(path, store, root / f"stack_{name}.fits", where=where, method=args.method,
                            overwrite=True)[0]
        e[name] = ellipticity(res.image)
        print(f"stack with {name:9s} angles: N={res.n}, ellipticity {e[name]:.4f} ({time.perf_counter() - t:.1f} s)")
    print(f"e(catalogue) / e(true) = {e['catalogue'] / e['true']:.3f} (target >= 0.9); "
          f"e(random) / e(true) = {e['random'] / e['true']:.3f}")


if __name__ == "__main__":
    main()
