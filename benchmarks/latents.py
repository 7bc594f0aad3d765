"""What the pose-free latents z carry: truth regression, rotation invariance, aligned reconstructions.

On a simulated survey with truth (``write_demo_survey``, ingested at the model's image size) this
trains CODAE within a budget (or takes ``--checkpoint``), writes its catalogue, and prints one
table: the cross-validated R^2 with which each intrinsic property the simulator draws is
predicted from

* ``z``     CODAE's latents (the catalogue's ``z_*`` columns, matched to the truth by id);
* ``pca``   a pixel PCA of the same store images with as many components as z has dimensions;
* ``ae``    the latents of a plain convolutional autoencoder (``model.kind: ae``) of the same
            latent size, trained through the same trainer with the same budget;
* ``pose``  the pose alone: x, y, cos 2 theta, sin 2 theta from the catalogue (a leak check).

R^2 is pooled over 5 shuffled folds (out-of-fold predictions of every galaxy against the truth),
features standardised inside each fold, by ridge regression (alpha chosen by inner leave-one-out
over 1e-3 ... 1e3) and by k-nearest-neighbour regression (``--k``, default 10, uniform weights).
``best`` names the representation with the highest of its two R^2, or ``-`` when none reaches
:data:`MEASURABLE_R2` (0.05): a property no representation predicts (the bulge Sersic index and
the component colours, at this resolution and noise) has no winner, and the summary line counts
only the others.

Rotation invariance, on ``--n-turn`` galaxies: the variance of a representation across turned
copies of each galaxy over its variance across the unturned galaxies, each summed over dimensions.
Quarter turns: the four ``torch.rot90`` turns of the store image (exact, no resampling).
Off the grid: the image and its turns by 30 and 45 degrees with the project's spatial-transformer
warp (:func:`pipeline.geometry.warp_to_view`, bilinear, border padding: the sky level, the same
resampling the model's own alignment uses).  Pixel PCA and the autoencoder are the contrasts.

The figure ``OUT/aligned_reconstructions.png`` shows 16 galaxies in four rows, each row one truth
property (size, axis ratio, colour, bulge fraction) from low to high (the galaxies nearest its
3, 35, 65 and 97 % quantiles): input, CODAE's aligned reconstruction, the autoencoder's.

``--curve 100,200,400`` trains CODAE once for the largest number of steps (no time budget) and
stops at each listed step (a checkpoint; :func:`pipeline.train.train` resumes exactly from it), and
prints the R^2 of z (better of ridge and kNN) per property against steps; the table is then
made with the model of the last step and the autoencoder gets the same number of steps.

    python benchmarks/latents.py --n 2000 --minutes 10 --out /tmp/latents
    python benchmarks/latents.py --n 2000 --steps 1500 --config run.yaml --out /tmp/latents
    python benchmarks/latents.py --n 2000 --checkpoint RUN/checkpoint.pt --ae-checkpoint AE/checkpoint.pt

Budgets: ``--minutes`` and/or ``--steps`` (whichever ends first) for both models; with
``--checkpoint`` and neither, the autoencoder trains for as many steps as the checkpoint did.
The survey and store are cached under ``--cache`` (by n, seed and image size) and reused by later
runs.  Not a CI gate: it prints figures; CSVs and the PNG go to ``--out``.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from pipeline.config import RunConfig, load_config  # noqa: E402
from pipeline.errors import BadInputError, ConfigError  # noqa: E402

#: truth property -> (what it is, how it is computed from the truth table).  Frames: pixels of the
#: 424-pixel cutout; the simulator's draws (pipeline.simulate.galaxies.sample_galaxies) and their
#: direct consequences (flux from size and surface brightness, total colours from the components).
TRUTH: dict[str, tuple[str, Callable[[pd.DataFrame], np.ndarray]]] = {
    "axis_ratio": ("intrinsic minor/major axis ratio", lambda t: t["axis_ratio"]),
    "log_hlr_pix": ("log10 half-light radius, cutout pixels", lambda t: np.log10(t["hlr_pix"])),
    "log_hlr_arcsec": ("log10 half-light radius, arcsec", lambda t: np.log10(t["hlr_arcsec"])),
    "bulge_fraction": ("bulge share of the r flux", lambda t: t["bulge_fraction"]),
    "bulge_sersic_n": ("bulge Sersic index", lambda t: t["bulge_sersic_n"]),
    "log_bulge_disk_size": ("log10 bulge hlr / disk hlr", lambda t: np.log10(t["bulge_hlr_pix"] / t["disk_hlr_pix"])),
    "log_flux_r": ("log10 r flux, nanomaggies", lambda t: np.log10(t["flux_r"])),
    "mu50_r": ("r surface brightness inside hlr, mag/arcsec2",
               lambda t: 22.5 - 2.5 * np.log10(t["flux_r"] / (2 * np.pi * t["hlr_arcsec"] ** 2))),
    "g_r": ("total g - r, mag", lambda t: t["g_r"]),
    "r_z": ("total r - z, mag", lambda t: t["r_z"]),
    "bulge_g_r": ("bulge g - r, mag", lambda t: t["bulge_g_r"]),
    "bulge_r_z": ("bulge r - z, mag", lambda t: t["bulge_r_z"]),
    "disk_g_r": ("disk g - r, mag", lambda t: t["disk_g_r"]),
    "disk_r_z": ("disk r - z, mag", lambda t: t["disk_r_z"]),
    "psf_fwhm_pix": ("PSF FWHM, cutout pixels", lambda t: t["psf_fwhm_arcsec"] / t["pixscale_arcsec"]),
    "log_sky_noise": ("log10 r sky noise per pixel", lambda t: np.log10(t["sky_noise"])),
}
REPRESENTATIONS = ("z", "pca", "ae", "pose")
#: below this R^2 (better of ridge and kNN) for every representation a property has no ``best``.
MEASURABLE_R2 = 0.05
#: the figure's rows: label -> truth property that varies along the row.
FIGURE_ROWS = {"size": "log_hlr_pix", "axis ratio": "axis_ratio", "colour g-r": "g_r", "bulge fraction": "bulge_fraction"}
FIGURE_QUANTILES = (0.03, 0.35, 0.65, 0.97)
OFF_GRID_DEG = (30.0, 45.0)


# ---------------------------------------------------------------- data


def survey_store(cache: Path, n: int, seed: int, size: int) -> tuple[Path, pd.DataFrame]:
    """The cached demo survey's store and truth (made when absent)."""
    from pipeline.data.ingest import ingest_survey
    from pipeline.simulate.survey import write_demo_survey

    root = cache / f"n{n}-seed{seed}"
    survey = root / "survey"
    if not (survey / "truth.parquet").is_file():
        t0 = time.monotonic()
        write_demo_survey(survey, n, seed=seed, workers=os.cpu_count() or 1, progress=False, overwrite=survey.exists())
        print(f"survey: {n} galaxies (seed {seed}) in {time.monotonic() - t0:.0f} s -> {survey}", flush=True)
    store = root / f"store-{size}.zarr"
    if not (store / "zarr.json").is_file():
        t0 = time.monotonic()
        ingest_survey(survey / "catalog.parquet", survey / "images", store, size=size, workers=1, shard_size=512)
        print(f"ingest: {size} px store in {time.monotonic() - t0:.0f} s -> {store}", flush=True)
    return store, pd.read_parquet(survey / "truth.parquet").set_index("iauname")


def store_images(store_path: Path) -> tuple[torch.Tensor, np.ndarray]:
    """Every store image as float32 (N, C, S, S) in [0, 1], and the ids in store order."""
    from pipeline.data.store import open_store

    st = open_store(store_path)
    raw = st.read_images(0, len(st))
    scale = 1.0 / 255.0 if st.info.dtype == "uint8" else 1.0
    ids = np.asarray(np.asarray(st.ids).tolist(), dtype=str)
    return torch.from_numpy(raw.astype(np.float32) * np.float32(scale)), ids


def truth_targets(truth: pd.DataFrame, ids: np.ndarray) -> pd.DataFrame:
    """The properties of :data:`TRUTH`, one row per id, in the order of ``ids``."""
    t = truth.loc[list(ids)]
    return pd.DataFrame({name: np.asarray(f(t), dtype=np.float64) for name, (_, f) in TRUTH.items()}, index=ids)


# ---------------------------------------------------------------- models


def budget_config(cfg: RunConfig, *, minutes: float | None, steps: int | None) -> RunConfig:
    """``cfg`` with its training ended by ``minutes`` and/or ``steps`` (whichever comes first)."""
    return cfg.replace(train={"max_epochs": 100_000, "max_minutes": minutes, "max_steps": steps,
                              "checkpoint_every": 100_000})


def train_run(cfg: RunConfig, store: Path, run: Path, label: str):
    """Train a fresh run; returns (model in eval mode, steps, minutes)."""
    from pipeline.train import train

    t0 = time.monotonic()
    res = train(cfg, store, run, progress=False)
    minutes = (time.monotonic() - t0) / 60
    print(f"train {label}: {res.steps} steps in {minutes:.2f} min ({res.images_per_s:.0f} img/s) -> {res.checkpoint}",
          flush=True)
    return res.model.eval(), res.steps, minutes


def load_run(checkpoint: Path, label: str):
    """A saved run: (model in eval mode, steps, minutes or NaN when unknown, its config)."""
    from pipeline.checkpoint import load_model

    model, state = load_model(checkpoint)
    rows = state.get("metrics_rows") or []
    minutes = rows[-1]["elapsed_s"] / 60 if rows else math.nan
    print(f"load {label}: {checkpoint} ({state['config'].model.kind}, latent_dim {state['config'].model.latent_dim}, "
          f"{state['step']} steps, {minutes:.2f} min)", flush=True)
    return model, int(state["step"]), minutes, state["config"]


@torch.no_grad()
def encode(model: torch.nn.Module, images: torch.Tensor, batch: int = 256) -> np.ndarray:
    """z of every image (N, D), model in eval mode."""
    return np.concatenate([model(images[a:a + batch]).z.float().numpy() for a in range(0, len(images), batch)])


def pixel_pca(images: torch.Tensor, dim: int, seed: int):
    """A PCA of the flattened images with ``dim`` components; returns (fitted PCA, features)."""
    from sklearn.decomposition import PCA

    flat = images.reshape(len(images), -1).numpy()
    pca = PCA(n_components=dim, svd_solver="randomized", random_state=seed).fit(flat)
    return pca, pca.transform(flat)


# ---------------------------------------------------------------- measures


def r2_scores(features: np.ndarray, target: np.ndarray, *, k: int = 10, folds: int = 5, seed: int = 0
              ) -> tuple[float, float]:
    """Pooled out-of-fold R^2 of ridge and of kNN regression (features standardised per fold)."""
    from sklearn.linear_model import RidgeCV
    from sklearn.metrics import r2_score
    from sklearn.model_selection import KFold, cross_val_predict
    from sklearn.neighbors import KNeighborsRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    cv = KFold(folds, shuffle=True, random_state=seed)
    out = []
    for reg in (RidgeCV(alphas=np.logspace(-3, 3, 13)), KNeighborsRegressor(n_neighbors=k)):
        pred = cross_val_predict(make_pipeline(StandardScaler(), reg), features, target, cv=cv)
        out.append(float(r2_score(target, pred)))
    return out[0], out[1]


def r2_table(reps: dict[str, np.ndarray], targets: pd.DataFrame, *, k: int, seed: int) -> pd.DataFrame:
    """Rows: properties; columns ``<rep>_ridge``, ``<rep>_knn`` per representation, then ``best``."""
    rows = {}
    for prop in targets.columns:
        y = targets[prop].to_numpy()
        row: dict[str, float | str] = {}
        for name, feats in reps.items():
            row[f"{name}_ridge"], row[f"{name}_knn"] = r2_scores(feats, y, k=k, seed=seed)
        top = max(reps, key=lambda r: max(row[f"{r}_ridge"], row[f"{r}_knn"]))
        row["best"] = top if max(row[f"{top}_ridge"], row[f"{top}_knn"]) >= MEASURABLE_R2 else "-"
        rows[prop] = row
    return pd.DataFrame(rows).T


def format_r2_table(table: pd.DataFrame, reps: list[str]) -> str:
    """The table as fixed-width text: ridge and kNN per representation, ``*`` on each row's best."""
    width = max(len("property"), *(len(p) for p in table.index)) + 1
    head = "property".ljust(width) + "".join(f" | {r:^15}" for r in reps) + " | best"
    sub = " " * width + "".join(f" | {'ridge':>7}{'kNN':>7} " for _ in reps) + " |"
    lines = [head, sub]
    for prop, row in table.iterrows():
        cells = "".join(f" | {row[f'{r}_ridge']:>7.3f}{row[f'{r}_knn']:>7.3f}{'*' if row['best'] == r else ' '}"
                        for r in reps)
        lines.append(prop.ljust(width) + cells + f" | {row['best']}")
    return "\n".join(lines)


def best_r2(table: pd.DataFrame, rep: str) -> pd.Series:
    """Per property, the better of ridge and kNN R^2 of ``rep``."""
    return table[[f"{rep}_ridge", f"{rep}_knn"]].astype(float).max(axis=1)


def turned_views(images: torch.Tensor) -> dict[str, list[torch.Tensor]]:
    """``quarter``: the four rot90 turns (the first is the image); ``off_grid``: the image and its
    :data:`OFF_GRID_DEG` turns through :func:`pipeline.geometry.warp_to_view` (CCW as displayed)."""
    from pipeline.geometry import warp_to_view

    zero = torch.zeros(len(images))
    off = [images] + [warp_to_view(images, torch.full((len(images),), math.radians(a)), zero, zero)
                      for a in OFF_GRID_DEG]
    return {"quarter": [torch.rot90(images, k, dims=(-2, -1)) for k in range(4)], "off_grid": off}


def invariance_ratio(codes: list[np.ndarray]) -> float:
    """Codes of the same galaxies under several turns, each (M, D): mean over galaxies of the
    variance across turns, over the variance across galaxies of the first (unturned) view,
    each summed over dimensions."""
    z = np.stack(codes, axis=1).astype(np.float64)  # (M, V, D)
    within = z.var(axis=1).mean(axis=0).sum()
    between = z[:, 0].var(axis=0).sum()
    return float(within / between) if between > 0 else math.nan


# ---------------------------------------------------------------- figure


def pick_figure_galaxies(targets: pd.DataFrame) -> list[tuple[str, list[int]]]:
    """Per row of :data:`FIGURE_ROWS`, the positions of the galaxies nearest its quantiles (distinct)."""
    used: set[int] = set()
    rows = []
    for label, prop in FIGURE_ROWS.items():
        v = targets[prop].to_numpy()
        picks = []
        for q in FIGURE_QUANTILES:
            order = np.argsort(np.abs(v - np.quantile(v, q)))
            i = next(int(j) for j in order if int(j) not in used)
            used.add(i)
            picks.append(i)
        rows.append((label, picks))
    return rows


@torch.no_grad()
def reconstruction_figure(path: Path, images: torch.Tensor, targets: pd.DataFrame, codae, ae, title: str) -> Path:
    """Input, CODAE aligned reconstruction, autoencoder reconstruction of 16 chosen galaxies."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = pick_figure_galaxies(targets)
    fig, axes = plt.subplots(len(rows), 3 * len(FIGURE_QUANTILES), figsize=(15, 1.55 * len(rows) + 0.9),
                             squeeze=False)

    def show(ax, img: torch.Tensor, text: str) -> None:
        a = img.clamp(0, 1).numpy()
        ax.imshow(a[0] if a.shape[0] == 1 else np.moveaxis(a[:3], 0, -1), cmap="gray" if a.shape[0] == 1 else None,
                  vmin=0, vmax=1, origin="upper", interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(text, fontsize=7)

    for r, (label, picks) in enumerate(rows):
        batch = images[picks]
        aligned = codae.decode_aligned(codae(batch).z)
        ae_rec = ae(batch).same_view if ae is not None else None
        prop = FIGURE_ROWS[label]
        for c, i in enumerate(picks):
            show(axes[r, 3 * c], batch[c], f"input {prop}={targets[prop].iloc[i]:.2f}")
            show(axes[r, 3 * c + 1], aligned[c], "CODAE aligned")
            if ae_rec is not None:
                show(axes[r, 3 * c + 2], ae_rec[c], "plain AE")
            else:
                axes[r, 3 * c + 2].axis("off")
        axes[r, 0].set_ylabel(label, fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


# ---------------------------------------------------------------- curve


def training_curve(cfg: RunConfig, store: Path, run: Path, steps: list[int], images: torch.Tensor,
                   targets: pd.DataFrame, *, k: int, seed: int):
    """Train once to ``max(steps)``, stopping at each listed step (checkpoint, then an exact resume);
    returns (curve table: rows steps, columns properties, the better of ridge/kNN R^2 of z; final
    model; steps; minutes of training)."""
    from pipeline.train import train

    cfg = cfg.replace(train={"max_epochs": 100_000, "max_minutes": None, "max_steps": max(steps),
                             "checkpoint_every": 100_000})
    rows, minutes, model = {}, 0.0, None
    for i, s in enumerate(sorted(set(steps))):
        t0 = time.monotonic()
        res = train(cfg, store, run, resume=i > 0, progress=False,
                    stop_after_steps=None if s == max(steps) else s)
        minutes += (time.monotonic() - t0) / 60
        model = res.model.eval()
        z = encode(model, images)
        r2 = {p: max(r2_scores(z, targets[p].to_numpy(), k=k, seed=seed)) for p in targets.columns}
        rows[res.steps] = {"minutes": minutes, **r2}
        print(f"curve: step {res.steps}, {minutes:.2f} min of training", flush=True)
    return pd.DataFrame(rows).T.rename_axis("step"), model, max(steps), minutes


# ---------------------------------------------------------------- main


def _parse_steps(text: str) -> list[int]:
    try:
        steps = sorted({int(s) for s in text.split(",") if s.strip()})
    except ValueError:
        raise ConfigError(f"--curve wants comma-separated step counts, got {text!r}") from None
    if not steps or steps[0] < 1:
        raise ConfigError(f"--curve wants positive step counts, got {text!r}")
    return steps


def run(args: argparse.Namespace) -> None:
    from catalogs.fits_io import read_catalog
    from pipeline.infer import infer_catalog
    from pipeline.latent_labels import format_labels, labels_from_header

    out = args.out or Path(tempfile.mkdtemp(prefix="codae-latents-"))
    out.mkdir(parents=True, exist_ok=True)
    if (out / "codae").exists() or (out / "ae").exists():
        raise BadInputError(f"{out} already holds runs (codae/ or ae/); choose another --out")
    curve_steps = _parse_steps(args.curve) if args.curve else None
    if args.checkpoint and (args.config or curve_steps):
        raise ConfigError("--checkpoint takes its config from the checkpoint and trains nothing: "
                          "drop --config and --curve")
    torch.manual_seed(0)
    print(f"machine: {os.cpu_count()} CPU cores, torch {torch.__version__}, threads {torch.get_num_threads()}; "
          f"n {args.n}, seed {args.seed}, kNN k {args.k}, out {out}", flush=True)

    if args.checkpoint:
        codae, codae_steps, codae_min, cfg = load_run(args.checkpoint, "CODAE")
    else:
        cfg = load_config(args.config) if args.config else RunConfig()
    dim = cfg.model.latent_dim
    print(f"CODAE config: model {cfg.to_dict()['model']}; loss {cfg.to_dict()['loss']}", flush=True)
    store, truth = survey_store(args.cache, args.n, args.seed, cfg.model.image_size)
    images, ids = store_images(store)
    targets = truth_targets(truth, ids)

    minutes, steps = args.minutes, args.steps
    if minutes is None and steps is None:
        minutes, steps = (None, codae_steps) if args.checkpoint else (10.0, None)
    curve = None
    if args.checkpoint:
        pass
    elif curve_steps:
        curve, codae, codae_steps, codae_min = training_curve(cfg, store, out / "codae", curve_steps, images, targets,
                                                              k=args.k, seed=args.seed)
        minutes, steps = None, codae_steps
    else:
        codae, codae_steps, codae_min = train_run(budget_config(cfg, minutes=minutes, steps=steps), store,
                                                  out / "codae", "CODAE")
    # the catalogue before the autoencoder's training: an inference that fails does so early
    ckpt = args.checkpoint or out / "codae" / "checkpoint.pt"
    # error_samples=0: the pose-error ensemble (K model calls per object) is not measured here
    cat_path = infer_catalog(store, ckpt, out / "catalog.fits", workers=1, device="cpu", overwrite=True,
                             error_samples=0)
    cat = read_catalog(cat_path)

    ae_cfg = budget_config(cfg.replace(model={"kind": "ae"}), minutes=minutes, steps=steps)
    if args.ae_checkpoint:
        ae, ae_steps, ae_min, ae_saved = load_run(args.ae_checkpoint, "AE")
        if ae_saved.model.latent_dim != dim:
            raise BadInputError(f"{args.ae_checkpoint}: latent_dim {ae_saved.model.latent_dim}, CODAE's is {dim}")
    else:
        ae, ae_steps, ae_min = train_run(ae_cfg, store, out / "ae", "AE")

    pos = {v: i for i, v in enumerate(np.asarray(cat["id"]).tolist())}
    rows = np.array([pos[i] for i in ids])  # catalogue row of each store image, by id
    z = np.stack([np.asarray(cat[f"z_{j}"])[rows] for j in range(dim)], axis=1).astype(np.float64)
    theta = np.deg2rad(np.asarray(cat["theta_deg"], dtype=np.float64)[rows])
    pose = np.stack([np.asarray(cat["x_pix"])[rows], np.asarray(cat["y_pix"])[rows], np.cos(2 * theta),
                     np.sin(2 * theta)], axis=1).astype(np.float64)
    pca, pca_feats = pixel_pca(images, dim, args.seed)
    reps = {"z": z, "pca": pca_feats, "ae": encode(ae, images), "pose": pose}

    budget = (f"{minutes:g} min" if minutes is not None else "") + (" / " if minutes and steps else "") + \
        (f"{steps} steps" if steps is not None else "")
    print(f"\nbudget {budget}: CODAE {codae_steps} steps, {codae_min:.2f} min; "
          f"AE {ae_steps} steps, {ae_min:.2f} min; latent size {dim}; {len(ids)} galaxies", flush=True)
    table = r2_table(reps, targets, k=args.k, seed=args.seed)
    table.to_csv(out / "r2.csv")
    print(f"\nR^2 of each true property, 5-fold pooled out-of-fold; ridge | kNN (k={args.k}); * best of 4:")
    print(format_r2_table(table, list(REPRESENTATIONS)))
    measurable = table["best"] != "-"
    zb = best_r2(table, "z")[measurable]
    others = pd.concat([best_r2(table, r) for r in ("pca", "ae")], axis=1).max(axis=1)[measurable]
    print(f"z beats both pixel PCA and the plain AE on {(zb > others).sum()} of the {len(zb)} properties some "
          f"representation predicts (R^2 >= {MEASURABLE_R2:g}; better of ridge and kNN); pose alone: max R^2 "
          f"{best_r2(table, 'pose').max():.3f}")

    # The decoder reads z through its Euler encoding (cos z_i, sin z_i): the same 16 numbers, fed to the
    # probes as the decoder sees them.  Shown beside z, not counted in the comparison above.
    euler = r2_table({"z_euler": np.hstack([np.cos(z), np.sin(z)])}, targets[measurable.index[measurable]],
                     k=args.k, seed=args.seed)
    euler.to_csv(out / "r2_euler.csv")
    print("\nz read as the decoder reads it, (cos z_i, sin z_i) (better of ridge and kNN; not in the count above):")
    print(f"{'property':<21}{'z':>8}{'z euler':>9}{'best of pca, ae':>17}")
    for prop in euler.index:
        print(f"{prop:<21}{zb[prop]:>8.3f}{best_r2(euler, 'z_euler')[prop]:>9.3f}{others[prop]:>17.3f}")

    rng = np.random.default_rng(args.seed)
    pick = np.sort(rng.choice(len(images), size=min(args.n_turn, len(images)), replace=False))
    views = turned_views(images[pick])
    encoders = {"z": lambda v: encode(codae, v), "pca": lambda v: pca.transform(v.reshape(len(v), -1).numpy()),
                "ae": lambda v: encode(ae, v)}
    inv = pd.DataFrame({kind: {name: invariance_ratio([f(v) for v in vs]) for name, f in encoders.items()}
                        for kind, vs in views.items()})
    inv.to_csv(out / "invariance.csv")
    print(f"\nrotation invariance on {len(pick)} galaxies: var across turns / var across galaxies "
          f"(summed over dimensions; quarter: rot90 x4; off_grid: 0, {OFF_GRID_DEG[0]:g}, {OFF_GRID_DEG[1]:g} deg "
          f"by warp_to_view):")
    print(inv.to_string(float_format=lambda v: f"{v:.4f}"))

    if curve is not None:
        curve.to_csv(out / "curve.csv")
        print("\nR^2 of z (better of ridge and kNN) against CODAE training steps:")
        print(curve.T.to_string(float_format=lambda v: f"{v:.3f}"))

    labels = labels_from_header(cat.meta, dim)
    print("\nlatent names in the catalogue header (image properties, Pearson r):")
    for line in format_labels(labels):
        print(f"  {line}")
    fig = reconstruction_figure(out / "aligned_reconstructions.png", images, targets, codae, ae,
                                f"CODAE aligned reconstructions ({codae_steps} steps) and a plain AE ({ae_steps} "
                                f"steps), latent size {dim}; rows: one truth property, low to high")
    print(f"\nfigure: {fig}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000, help="galaxies in the simulated survey (default 2000)")
    ap.add_argument("--seed", type=int, default=2027, help="survey seed, also the folds' (default 2027)")
    ap.add_argument("--minutes", type=float, default=None, help="training budget of CODAE and of the AE, minutes "
                    "(default 10 when --steps is not given)")
    ap.add_argument("--steps", type=int, default=None, help="training budget in optimiser steps (with --minutes: "
                    "whichever ends first)")
    ap.add_argument("--config", type=Path, default=None, help="run config YAML for CODAE (model, loss, train)")
    ap.add_argument("--checkpoint", type=Path, default=None, help="a trained CODAE: skip its training")
    ap.add_argument("--ae-checkpoint", type=Path, default=None, help="a trained plain AE of the same latent size")
    ap.add_argument("--curve", default=None, metavar="STEPS", help="comma-separated steps: R^2 of z against training")
    ap.add_argument("--k", type=int, default=10, help="neighbours of the kNN regression (default 10)")
    ap.add_argument("--n-turn", type=int, default=300, help="galaxies of the rotation-invariance test (default 300)")
    ap.add_argument("--out", type=Path, default=None, help="folder for runs, catalogue, CSVs and the figure")
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "codae-latents-cache",
                    help="where simulated surveys and stores are kept for later runs")
    args = ap.parse_args()
    try:
        run(args)
    except (BadInputError, ConfigError) as e:
        print(f"latents: error: {e}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
