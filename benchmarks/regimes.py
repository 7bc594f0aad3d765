"""Model against moments in survey regimes: a neighbour, a star, a faint galaxy, a lopsided galaxy.

For each regime of :mod:`pipeline.simulate.regimes` (clean, neighbour, star, faint, lopsided) this
writes a simulated survey with truth, ingests it at ``--size`` pixels, trains CODAE (or takes
checkpoints), runs the catalogue inference (:func:`pipeline.infer.infer_catalog`, the same code
as ``galaxy-codae infer``) and prints one table, regimes as columns:

* median |delta PA| (degrees, mod 180) for elongated targets (axis ratio <= 0.6): the model's
  ``pa_deg`` and the catalogue's own ``moment_pa_deg`` (background-subtracted image moments of
  the store image, the baseline the catalogue ships), and a stronger baseline, segmentation
  moments (below);
* for lopsided targets, the direction: the median of |theta_deg - theta_dir_deg| (mod 360) and
  the fraction with the right direction (error < 90 deg).  Moments give an axis only (their
  [0, 180) angle is scored as it is: right half the time by chance); the stronger baseline
  takes the direction along the moment axis from the peak of the smoothed image to the light
  centroid (the light is shifted towards the asymmetry);
* centroid error in pixels of the 424-pixel cutout: median and RMSE, model ``x_pix``/``y_pix``,
  moments (the same moments, first order) and segmentation moments;
* where the catalogue has them, the fraction of objects inside the stated 1-sigma error:
  ``pa_err_deg`` (model PA), ``x_err_pix``/``y_err_pix`` (each axis, pooled), ``moment_pa_err_deg``;
* whether the model beats the moments by at least 30 % on both the median PA error and the
  median centroid error.

Segmentation moments (as SExtractor would measure): sky and noise from the border ring (median,
MAD), Gaussian filter (1 pixel), detection at 1.5 sigma of the filtered noise, the connected
region nearest the centre, deblended by 32 exponentially spaced thresholds with a 0.005
minimum contrast (the first level that splits it into two significant branches; pixels go to
the branches by watershed; repeated on the central branch), then moments of the sky-subtracted
pixels of that segment.  It runs on the same store images as the model and the moments.

Training: ``--train mix`` (default) trains one model on one survey holding every regime alike
(as a real survey holds them all); ``--train separate`` one model per regime on its own survey.
``--checkpoint PATH`` scores an existing model on every regime (``REGIME=PATH``, repeated, one
per regime); then nothing is trained.  Everything lives under ``--work`` and is reused when
there: a rerun with ``--work`` and a new ``--checkpoint`` writes no survey and no store again.

    python benchmarks/regimes.py --n 1000 --minutes 10 --work /tmp/regimes
    python benchmarks/regimes.py --work /tmp/regimes --checkpoint RUN/checkpoint.pt
Not a CI gate: it prints figures.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from pipeline.conventions import angle_diff_180, normalized_to_pixel, store_to_cutout_pixels  # noqa: E402
from pipeline.simulate.regimes import REGIMES  # noqa: E402

#: Elongated targets (a defined axis): intrinsic axis ratio at most this.
ELONGATED_AXIS_RATIO = 0.6
#: The model must beat the moments by this fraction (median PA and median centroid error).
TARGET_GAIN = 0.30


# --- the stronger baseline: segmentation moments ---

def _ring_stats(a: np.ndarray, ring: int) -> tuple[float, float]:
    """Median and 1.4826 x MAD of the border ring of an (H, W) image."""
    mask = np.ones(a.shape, dtype=bool)
    mask[ring:-ring, ring:-ring] = False
    b = a[mask]
    med = float(np.median(b))
    return med, float(1.4826 * np.median(np.abs(b - med))) + 1e-12


def _nearest_label(labels: np.ndarray, keep: np.ndarray | None = None) -> int:
    """The label at the image centre, else the label of the labelled pixel nearest the centre (0: none)."""
    h, w = labels.shape
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    ys, xs = np.nonzero(labels if keep is None else keep)
    if len(ys) == 0:
        return 0
    i = int(np.argmin((ys - cy) ** 2 + (xs - cx) ** 2))
    return int(labels[ys[i], xs[i]])


def _deblend(filtered: np.ndarray, mask: np.ndarray, *, nthresh: int, mincont: float, floor: float,
             depth: int = 6) -> np.ndarray:
    """The central branch of ``mask`` after SExtractor-like multi-threshold deblending."""
    from scipy import ndimage

    for _ in range(depth):
        total = float(filtered[mask].sum())
        peak = float(filtered[mask].max())
        if peak <= floor or total <= 0:
            return mask
        split = None
        for i in range(1, nthresh):
            level = floor * (peak / floor) ** (i / nthresh)
            labels, n = ndimage.label(mask & (filtered > level))
            if n < 2:
                continue
            flux = ndimage.sum(filtered, labels, index=np.arange(1, n + 1))
            significant = np.flatnonzero(flux >= mincont * total) + 1
            if len(significant) >= 2:
                split = np.where(np.isin(labels, significant), labels, 0)
                break
        if split is None:
            return mask
        # every pixel of the parent goes to a branch: watershed on the inverted filtered image
        depth16 = np.clip((peak - filtered) / (peak - floor + 1e-12) * 65000, 0, 65000).astype(np.uint16)
        markers = split.astype(np.int32)
        markers[~mask] = -1
        regions = ndimage.watershed_ift(depth16, markers)
        keep = _nearest_label(split)
        mask = mask & (regions == keep)
    return mask


def segment_moments(lum: np.ndarray, *, ring: int = 4, smooth: float = 1.0, thresh: float = 1.5,
                    nthresh: int = 32, mincont: float = 0.005) -> dict[str, np.ndarray]:
    """Segmentation moments of (N, H, W) luminance images (display frame).

    Returns arrays (N,): ``x_pix``, ``y_pix`` (store pixels, 0-based, y down), ``theta_deg``
    (axis, [0, 180), CCW as displayed), and ``dir_deg``: the direction in [0, 360) along that
    axis from the peak of the image filtered at 2 pixels to the segment's centroid.
    NaN where nothing is detected.
    """
    from scipy import ndimage

    n, h, w = lum.shape
    out = {k: np.full(n, np.nan) for k in ("x_pix", "y_pix", "theta_deg", "dir_deg")}
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    for i in range(n):
        sky, _ = _ring_stats(lum[i], ring)
        img = lum[i].astype(np.float64) - sky
        filt = ndimage.gaussian_filter(img, smooth)
        _, noise = _ring_stats(filt, ring)
        labels, _ = ndimage.label(filt > thresh * noise)
        k = _nearest_label(labels)
        if k == 0:
            continue
        seg = _deblend(filt, labels == k, nthresh=nthresh, mincont=mincont, floor=thresh * noise)
        wgt = np.where(seg, np.clip(img, 0.0, None), 0.0)
        flux = wgt.sum()
        if flux <= 0:
            continue
        x, y = (wgt * xx).sum() / flux, (wgt * yy).sum() / flux
        dx, dy = xx - x, yy - y
        mu20, mu02, mu11 = ((wgt * a).sum() / flux for a in (dx * dx, dy * dy, dx * dy))
        theta = math.degrees(-0.5 * math.atan2(2.0 * mu11, mu20 - mu02)) % 180.0  # y down -> CCW
        broad = ndimage.gaussian_filter(np.where(seg, img, 0.0), 2.0)
        py, px = np.unravel_index(int(np.argmax(broad)), broad.shape)
        ux, uy = math.cos(math.radians(theta)), -math.sin(math.radians(theta))
        along = (x - px) * ux + (y - py) * uy
        out["x_pix"][i], out["y_pix"][i], out["theta_deg"][i] = x, y, theta
        out["dir_deg"][i] = theta if along >= 0 else theta + 180.0
    return out


def moment_direction(signal: np.ndarray, x: np.ndarray, y: np.ndarray, theta_deg: np.ndarray) -> np.ndarray:
    """Direction in [0, 360) along the moment axis from the 2-pixel-filtered peak to the centroid.

    signal: (N, H, W) background-subtracted; x, y: store pixels; theta_deg: the moment axis.
    """
    from scipy import ndimage

    out = np.empty(len(signal))
    for i, s in enumerate(signal):
        broad = ndimage.gaussian_filter(s.astype(np.float64), 2.0)
        py, px = np.unravel_index(int(np.argmax(broad)), broad.shape)
        t = math.radians(theta_deg[i])
        along = (x[i] - px) * math.cos(t) - (y[i] - py) * math.sin(t)
        out[i] = theta_deg[i] if along >= 0 else theta_deg[i] + 180.0
    return out


# --- steps: survey, store, training, catalogue (each reused when already there) ---

def _survey(work: Path, name: str, regimes: dict[str, float], n: int, seed: int, workers: int) -> Path:
    from pipeline.simulate.survey import write_demo_survey

    out = work / f"survey-{name}"
    want = {"n": n, "seed": seed, "regimes": regimes}
    manifest = work / f"survey-{name}.json"
    if out.is_dir() and manifest.is_file():
        have = json.loads(manifest.read_text())
        if have != want:
            raise SystemExit(f"error: {out} was written with {have}, not {want}; use another --work")
        return out
    spec = ",".join(f"{r}:{f}" for r, f in regimes.items())
    print(f"[{name}] writing {n} scenes ({spec}) ...", flush=True)
    write_demo_survey(out, n, seed=seed, regime=spec, workers=workers, overwrite=out.exists(), progress=False)
    manifest.write_text(json.dumps(want))
    return out


def _store(work: Path, name: str, survey: Path, size: int, workers: int) -> Path:
    from pipeline.data.ingest import ingest_survey

    store = work / f"{name}-{size}.zarr"
    if not store.exists():
        print(f"[{name}] ingesting at {size} px ...", flush=True)
        ingest_survey(survey / "catalog.parquet", survey / "images", store, size=size, workers=workers,
                      shard_size=512)
    return store


def _train(work: Path, name: str, store: Path, args: argparse.Namespace) -> Path:
    from pipeline.config import RunConfig, load_config
    from pipeline.train import train

    budget = f"m{args.minutes:g}" if args.minutes is not None else f"s{args.steps}"
    run = work / f"run-{name}-{budget}"
    ckpt = run / "checkpoint.pt"
    if ckpt.is_file() and (run / "finished").is_file():
        return ckpt
    cfg = load_config(args.config) if args.config else RunConfig()
    cfg = cfg.replace(train={"max_epochs": 1000, "max_minutes": args.minutes, "max_steps": args.steps,
                             "log_every": 50, "checkpoint_every": 10_000, "device": args.device})
    print(f"[{name}] training ({budget}) ...", flush=True)
    t0 = time.monotonic()
    result = train(cfg, store, run, progress=True, resume=ckpt.is_file())
    (run / "finished").write_text(json.dumps({"steps": result.steps, "minutes": (time.monotonic() - t0) / 60,
                                              "images_per_s": result.images_per_s}))
    return ckpt


def _catalogue(work: Path, name: str, store: Path, ckpt: Path, device: str) -> Path:
    from pipeline.checkpoint import file_sha256
    from pipeline.infer import infer_catalog

    out = work / f"cat-{name}-{file_sha256(ckpt)[:10]}.fits"
    if not out.exists():
        print(f"[{name}] inference with {ckpt} ...", flush=True)
        infer_catalog(store, ckpt, out, workers=1, device=device)
    return out


# --- measuring ---

def read_catalogue(path: Path) -> pd.DataFrame:
    """The catalogue as a DataFrame indexed by ``id`` (str), only 1-D columns."""
    from catalogs.fits_io import read_catalog

    t = read_catalog(path)
    cols = {c: np.asarray(t[c]) for c in t.colnames if np.asarray(t[c]).ndim == 1}
    df = pd.DataFrame(cols)
    df["id"] = [v.decode() if isinstance(v, bytes) else str(v) for v in df["id"]]
    return df.set_index("id")


def store_measures(store_path: Path, ckpt: Path) -> pd.DataFrame:
    """Moment and segmentation measures of every store image, cutout frame, indexed by id.

    The moments are those of :func:`pipeline.predict.predict_batch` (background-subtracted
    with the checkpoint's ``loss.background_ring`` and ``loss.background_sigma``).
    """
    import torch

    from pipeline.checkpoint import load_checkpoint
    from pipeline.data.store import open_store
    from pipeline.moments import image_moments, subtract_background

    loss = load_checkpoint(ckpt)["config"].loss
    store = open_store(store_path)
    info = store.info
    parts = []
    for start, stop in store.shard_ranges():
        for s in range(start, stop, 256):
            imgs = torch.from_numpy(store.read_images(s, min(s + 256, stop))).float() / 255.0  # (B, C, S, S)
            sig = subtract_background(imgs, ring=loss.background_ring, k_sigma=loss.background_sigma)
            m = image_moments(sig)
            mx = normalized_to_pixel(m.x.numpy(), info.size)
            my = normalized_to_pixel(m.y.numpy(), info.size)
            mth = np.mod(np.rad2deg(m.theta.numpy()), 180.0)
            seg = segment_moments(imgs.mean(dim=1).numpy(), ring=loss.background_ring)
            parts.append(pd.DataFrame({
                "mom_x": mx, "mom_y": my, "mom_theta": mth,
                "mom_dir": moment_direction(sig.numpy(), mx, my, mth),
                "seg_x": seg["x_pix"], "seg_y": seg["y_pix"], "seg_theta": seg["theta_deg"],
                "seg_dir": seg["dir_deg"]}))
    df = pd.concat(parts, ignore_index=True)

    def cut(p: np.ndarray, start: int) -> np.ndarray:
        return store_to_cutout_pixels(p, crop_start=start, crop_size=info.crop_size, size=info.size)

    for c in ("mom", "seg"):
        df[f"{c}_x"] = cut(df[f"{c}_x"].to_numpy(), info.crop_start_x)
        df[f"{c}_y"] = cut(df[f"{c}_y"].to_numpy(), info.crop_start_y)
    df.index = pd.Index([str(i) for i in store.ids], name="id")
    return df


def _dir_err(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = np.mod(np.asarray(a, float) - np.asarray(b, float), 360.0)
    return np.minimum(d, 360.0 - d)


def _theta_to_pa(theta: np.ndarray) -> np.ndarray:
    return np.mod(np.asarray(theta, float) - 90.0, 180.0)


def score(cat: pd.DataFrame, truth: pd.DataFrame, meas: pd.DataFrame) -> pd.DataFrame:
    """Per-object errors: one row per object, joined on id (never by position)."""
    t = truth.set_index("iauname")
    ids = cat.index.intersection(t.index).intersection(meas.index)
    if len(ids) != len(cat):
        raise SystemExit(f"error: {len(cat) - len(ids)} catalogue ids have no truth or store image")
    c, t, m = cat.loc[ids], t.loc[ids], meas.loc[ids]
    tx, ty, pa = t["x_pix"].to_numpy(), t["y_pix"].to_numpy(), t["pa_deg"].to_numpy()
    e = pd.DataFrame(index=ids)
    e["regime"] = t["regime"].to_numpy()
    e["elongated"] = t["axis_ratio"].to_numpy() <= ELONGATED_AXIS_RATIO
    e["pa_model"] = angle_diff_180(c["pa_deg"].to_numpy(), pa)
    e["pa_moment"] = angle_diff_180(c["moment_pa_deg"].to_numpy(), pa)
    e["pa_moment_recomputed"] = angle_diff_180(_theta_to_pa(m["mom_theta"].to_numpy()), pa)
    e["pa_seg"] = angle_diff_180(_theta_to_pa(m["seg_theta"].to_numpy()), pa)
    tdir = t["theta_dir_deg"].to_numpy()
    e["dir_model"] = _dir_err(c["theta_deg"].to_numpy(), tdir)
    e["dir_moment"] = _dir_err(m["mom_theta"].to_numpy(), tdir)  # an axis, [0, 180): no direction
    e["dir_moment_peak"] = _dir_err(m["mom_dir"].to_numpy(), tdir)
    e["dir_seg_peak"] = _dir_err(m["seg_dir"].to_numpy(), tdir)
    for who, (x, y) in {"model": ("x_pix", "y_pix"), "moment": ("mom_x", "mom_y"), "seg": ("seg_x", "seg_y")}.items():
        src = c if who == "model" else m
        e[f"dx_{who}"] = src[x].to_numpy() - tx
        e[f"dy_{who}"] = src[y].to_numpy() - ty
        e[f"cen_{who}"] = np.hypot(e[f"dx_{who}"], e[f"dy_{who}"])
    for col in ("pa_err_deg", "x_err_pix", "y_err_pix", "moment_pa_err_deg", "flags"):
        if col in c.columns:
            e[col] = c[col].to_numpy()
    return e


def direction_flag_bit() -> int | None:
    """The catalogue flag bit that says "no direction found" (a bit whose description names a direction)."""
    from catalogs.schema import FLAG_BITS

    bits = [bit for bit, text in FLAG_BITS.items() if "direction" in text.lower()]
    return bits[0] if len(bits) == 1 else None


def summarise(e: pd.DataFrame, *, direction_bit: int | None = None) -> pd.DataFrame:
    """The table: one column per regime, one row per figure.

    ``direction_bit``: the flag bit for "no direction"; when given (and the catalogue has
    ``flags``), the fraction flagged and the direction score of the unflagged are added.
    """
    cols = {}
    for regime in [r for r in REGIMES if r in set(e["regime"])]:
        g = e[e["regime"] == regime]
        el = g[g["elongated"]]
        r: dict[str, float | str] = {"n": len(g), "n elongated (q<=0.6)": len(el)}
        med = lambda s: float(np.nanmedian(s)) if len(s) else math.nan  # noqa: E731
        rms = lambda s: float(np.sqrt(np.nanmean(np.square(s)))) if len(s) else math.nan  # noqa: E731
        r["PA med err model (deg)"] = med(el["pa_model"])
        r["PA med err moments (deg)"] = med(el["pa_moment"])
        r["PA med err segmentation (deg)"] = med(el["pa_seg"])
        r["PA model / moments"] = r["PA med err model (deg)"] / max(r["PA med err moments (deg)"], 1e-12)
        d = g[g["dir_model"].notna()]  # targets with a direction (lopsided); NaN rows elsewhere
        right = lambda s: float((s < 90).mean()) if len(s) else math.nan  # noqa: E731
        r["dir med err model (deg)"] = med(d["dir_model"])
        r["dir right model"] = right(d["dir_model"])
        r["dir right moments (axis only)"] = right(d["dir_moment"])
        r["dir med err moments+peak (deg)"] = med(d["dir_moment_peak"])
        r["dir right moments+peak"] = right(d["dir_moment_peak"])
        r["dir right segmentation+peak"] = right(d["dir_seg_peak"])
        if direction_bit is not None and "flags" in g:
            claimed = (g["flags"].to_numpy().astype(np.int64) & direction_bit) == 0
            r["flagged: no direction"] = float(1.0 - claimed.mean())
            r["dir right model, direction claimed"] = right(d.loc[claimed[g["dir_model"].notna().to_numpy()],
                                                               "dir_model"])
        r["cen med err model (px)"] = med(g["cen_model"])
        r["cen med err moments (px)"] = med(g["cen_moment"])
        r["cen med err segmentation (px)"] = med(g["cen_seg"])
        r["cen RMSE model (px)"] = rms(g["cen_model"])
        r["cen RMSE moments (px)"] = rms(g["cen_moment"])
        r["cen RMSE segmentation (px)"] = rms(g["cen_seg"])
        r["cen model / moments (median)"] = r["cen med err model (px)"] / max(r["cen med err moments (px)"], 1e-12)
        r["segmentation: no detection"] = float(g["cen_seg"].isna().mean())
        if "pa_err_deg" in g:
            r["in 1 sigma: model PA"] = float((el["pa_model"] <= el["pa_err_deg"]).mean())
            r["median pa_err_deg"] = med(el["pa_err_deg"])
        if "x_err_pix" in g and "y_err_pix" in g:
            inside = np.concatenate([np.abs(g["dx_model"]) <= g["x_err_pix"], np.abs(g["dy_model"]) <= g["y_err_pix"]])
            r["in 1 sigma: model x, y"] = float(inside.mean())
        if "moment_pa_err_deg" in g:
            r["in 1 sigma: moment PA"] = float((el["pa_moment"] <= el["moment_pa_err_deg"]).mean())
            r["median moment_pa_err_deg"] = med(el["moment_pa_err_deg"])
        wins = (r["PA model / moments"] <= 1 - TARGET_GAIN) and (r["cen model / moments (median)"] <= 1 - TARGET_GAIN)
        r[f"model beats moments by {TARGET_GAIN:.0%} (PA and centroid)"] = "yes" if wins else "no"
        cols[regime] = r
    return pd.DataFrame(cols)


def _format(table: pd.DataFrame) -> str:
    def fmt(v):
        if isinstance(v, str):
            return v
        if isinstance(v, (int, np.integer)) or (isinstance(v, float) and v.is_integer() and abs(v) >= 10):
            return f"{int(v)}"
        return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"

    return table.map(fmt).to_string()


def _checkpoints(specs: list[str]) -> dict[str, Path]:
    """``PATH`` (every regime) or ``REGIME=PATH`` pairs -> {regime or '*': path}."""
    out: dict[str, Path] = {}
    for s in specs:
        name, sep, path = s.partition("=")
        if sep and name in REGIMES:
            out[name] = Path(path)
        else:
            out["*"] = Path(s)
    for k, p in out.items():
        if not p.is_file():
            raise SystemExit(f"error: checkpoint {p} ({k}) not found")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000, help="galaxies per regime (default 1000)")
    ap.add_argument("--regimes", default=",".join(REGIMES), help=f"comma-separated, from {', '.join(REGIMES)}")
    ap.add_argument("--train", choices=("mix", "separate"), default="mix",
                    help="mix: one model on one survey of every regime; separate: one model per regime")
    ap.add_argument("--minutes", type=float, default=None, help="training budget in wall-clock minutes")
    ap.add_argument("--steps", type=int, default=None, help="training budget in optimiser steps")
    ap.add_argument("--config", type=Path, default=None, help="training config YAML (default: RunConfig defaults)")
    ap.add_argument("--checkpoint", action="append", default=[],
                    help="score this checkpoint instead of training: PATH, or REGIME=PATH (repeat)")
    ap.add_argument("--size", type=int, default=64, help="store image side, pixels")
    ap.add_argument("--seed", type=int, default=2031)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="rendering / ingest processes")
    ap.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    ap.add_argument("--work", type=Path, default=None, help="work directory (reused when it exists)")
    args = ap.parse_args(argv)
    regimes = [r.strip() for r in args.regimes.split(",") if r.strip()]
    bad = [r for r in regimes if r not in REGIMES]
    if bad:
        ap.error(f"unknown regime {bad[0]!r}")
    ckpts = _checkpoints(args.checkpoint)
    if not ckpts and args.minutes is None and args.steps is None:
        ap.error("give a training budget (--minutes or --steps) or --checkpoint")
    if args.minutes is not None and args.steps is not None:
        ap.error("--minutes and --steps: give one")
    work = args.work or Path(tempfile.mkdtemp(prefix="codae-regimes-"))
    work.mkdir(parents=True, exist_ok=True)

    import torch

    print(f"machine: {os.cpu_count()} CPU cores, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"cuda {torch.cuda.is_available()}; work {work}")
    # cases: (name, regime fractions, the regimes scored on it)
    if args.train == "mix" or "*" in ckpts:
        cases = [("mix", {r: 1.0 / len(regimes) for r in regimes}, regimes)]
    else:
        cases = [(r, {r: 1.0}, [r]) for r in regimes]
    errors = []
    for i, (name, fractions, scored) in enumerate(cases):
        survey = _survey(work, name, fractions, args.n * len(scored), args.seed + i, args.workers)
        store = _store(work, name, survey, args.size, args.workers)
        ckpt = ckpts.get(name, ckpts.get("*")) or _train(work, name, store, args)
        cat = _catalogue(work, name, store, ckpt, args.device)
        meas = store_measures(store, ckpt)
        e = score(read_catalogue(cat), pd.read_parquet(survey / "truth.parquet"), meas)
        e["model"] = str(ckpt)
        errors.append(e[e["regime"].isin(scored)])
        from pipeline.checkpoint import load_checkpoint

        state = load_checkpoint(ckpt)
        data = state.get("store") or {}
        print(f"[{name}] model {ckpt}: step {state.get('step')}, trained on {data.get('path')} "
              f"({data.get('n_objects')} objects); catalogue {cat}", flush=True)
        bias = float(np.nanmedian(np.abs(e["pa_moment"] - e["pa_moment_recomputed"])))
        print(f"[{name}] check: catalogue moment PA vs recomputed, median |difference| {bias:.4f} deg", flush=True)
    e = pd.concat(errors)
    e.to_csv(work / "regimes-objects.csv")
    table = summarise(e, direction_bit=direction_flag_bit())
    table.to_csv(work / "regimes-table.csv")
    print(f"\ntraining: {args.train if not ckpts else 'checkpoint(s) given'}; "
          f"budget {args.minutes} min / {args.steps} steps; {args.n} galaxies per regime; store {args.size} px; "
          "centroids in pixels of the 424-pixel cutout")
    print(_format(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
