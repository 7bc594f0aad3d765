"""Are the catalogue's pose errors honest?  Calibration of pa_err_deg, x_err_pix, y_err_pix, moment_pa_err_deg.

On demo surveys with truth (:func:`pipeline.simulate.survey.write_demo_survey`) at several sky
noise levels (the default draw, S/N of a few thousand, and fixed levels down to S/N ~ 10), the
catalogue is made with :func:`pipeline.infer.infer_catalog` and an uncalibrated ensemble
(scale 1, no floor: the raw spreads), then:

1. the calibration (:func:`pipeline.predict.fit_error_calibration`) is fitted on half the
   objects (even rows) and checked on the other half: for each error column the fraction of
   objects with ``|error| <= stated 1-sigma`` (target 0.6-0.76).  ``moment_pa_err_deg`` is
   propagated analytically, not fitted: its fraction is a check of the propagation;
2. a table over signal-to-noise bins (truth ``snr``): median stated error, median real
   |error| and its 68th percentile, and the fraction covered, per column (held-out half);
3. flag bit 1 rules: how many objects each rule flags, and the real PA errors of flagged and
   unflagged objects.

Without ``--checkpoint`` a default CODAE is trained first on a default demo survey
(``--train-n``, ``--steps``).  Measurements are cached in ``--work`` (per checkpoint, K, n and
noise levels), so a rerun with other calibration settings takes seconds.  ``--calibrate`` fits on every object and writes
``pose_errors.json`` beside the checkpoint (:data:`pipeline.predict.CALIBRATION_FILE`), which
``galaxy-codae infer`` then uses for that checkpoint.  The printout is also written to
``--log`` (default ``benchmarks/results/pose-errors-<machine>-<date>.log``).

    python benchmarks/pose_errors.py [--checkpoint RUN/checkpoint.pt] [--steps 1000] [--n 2000]
        [--sky default,0.01,0.02,0.04] [--error-samples 8] [--floor-quantile Q] [--calibrate] [--work DIR]
Not a CI gate: it prints figures.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from catalogs.fits_io import read_catalog  # noqa: E402
from pipeline.checkpoint import file_sha256, load_checkpoint  # noqa: E402
from pipeline.config import RunConfig, load_config  # noqa: E402
from pipeline.conventions import angle_diff_180, theta_to_pa  # noqa: E402
from pipeline.data.ingest import ingest_survey  # noqa: E402
from pipeline.data.store import open_store  # noqa: E402
from pipeline.infer import (  # noqa: E402
    NEAR_ROUND_AXIS_RATIO,
    PA_ERROR_ILL_DEFINED_DEG,
    infer_catalog,
    orientation_ill_defined,
)
from pipeline.predict import (  # noqa: E402
    CALIBRATION_FILE,
    ErrorCalibration,
    coverage,
    fit_error_calibration,
    write_calibration,
)
from pipeline.simulate.survey import write_demo_survey  # noqa: E402

#: spreads as they are: scale 1, no floor (what the calibration is fitted on).
RAW = ErrorCalibration(pa_scale=1.0, pa_floor_deg=0.0, x_scale=1.0, y_scale=1.0, xy_floor_pix=0.0, samples=0,
                       source="raw spreads (benchmarks/pose_errors.py)")


class Tee(io.TextIOBase):
    """Print to stdout and keep a copy for the log."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def write(self, s: str) -> int:
        sys.__stdout__.write(s)
        sys.__stdout__.flush()
        self.lines.append(s)
        return len(s)


def train_briefly(work: Path, n: int, steps: int, seed: int, threads: int | None, *, cutout: int, size: int,
                  config: Path | None) -> Path:
    """A default CODAE trained ``steps`` optimiser steps on a default demo survey; returns its checkpoint.

    A step count rather than a time budget: the model is the same however busy the machine.
    A finished run in ``work`` is reused.
    """
    from pipeline.train import train

    if (work / "run" / "checkpoint.pt").is_file() and (work / "run" / "trained.txt").is_file():
        print(f"trained: reused {work / 'run'} ({(work / 'run' / 'trained.txt').read_text().strip()})")
        return work / "run" / "checkpoint.pt"
    survey = work / "train-survey"
    if not survey.exists():
        write_demo_survey(survey, n, seed=seed, size=cutout, workers=os.cpu_count() or 1, progress=False)
    store = work / "train.zarr"
    if not store.exists():
        ingest_survey(survey / "catalog.parquet", survey / "images", store, size=size, workers=os.cpu_count() or 1,
                      shard_size=512)
    base = load_config(config) if config else RunConfig()
    batch = base.train.batch_size
    epochs = -(-steps * batch // n)  # enough passes for the steps; the beta schedule is planned on them
    cfg = base.replace(train={"max_epochs": epochs, "max_steps": steps, "log_every": 50,
                                     "checkpoint_every": 10_000, "cpu_threads": threads})
    t0 = time.monotonic()
    res = train(cfg, store, work / "run", progress=False)
    line = (f"{res.steps} steps in {(time.monotonic() - t0) / 60:.1f} min ({res.images_per_s:.0f} images/s) "
            f"on a {n}-galaxy default demo survey")
    (work / "run" / "trained.txt").write_text(line + "\n")
    print(f"trained: {line}")
    return res.checkpoint


def measure(work: Path, checkpoint: Path, sky_levels: list[str], n: int, seed: int, samples: int,
            size: int, workers: int, cutout: int) -> pd.DataFrame:
    """One row per object of every evaluation survey: truth, catalogue values, raw spreads and real errors."""
    frames = []
    per = max(1, n // len(sky_levels))
    for j, level in enumerate(sky_levels):
        sky = None if level == "default" else float(level)
        name = f"eval-{level}-n{per}-s{seed + j}"
        survey = work / f"{name}-survey"
        if not survey.exists():
            write_demo_survey(survey, per, seed=seed + j, sky_noise=sky, size=cutout, workers=workers,
                              progress=False)
        store = work / f"{name}.zarr"
        if not store.exists():
            ingest_survey(survey / "catalog.parquet", survey / "images", store, size=size, workers=workers,
                          shard_size=512)
        t0 = time.perf_counter()
        cat_path = infer_catalog(store, checkpoint, work / f"{name}.fits", overwrite=True, error_samples=samples,
                                 error_calibration=replace(RAW, samples=samples), device="cpu")
        secs = time.perf_counter() - t0
        cat = read_catalog(cat_path).to_pandas()
        cat["id"] = cat["id"].astype(str)
        truth = pd.read_parquet(survey / "truth.parquet").set_index("iauname").loc[cat["id"]]
        print(f"survey sky {level}: {len(cat)} galaxies, S/N {truth['snr'].min():.0f}-{truth['snr'].max():.0f}, "
              f"inference with K = {samples}: {secs:.1f} s ({len(cat) / secs:.1f} objects/s)")
        frames.append(pd.DataFrame({
            "sky": level, "snr": truth["snr"].to_numpy(), "axis_ratio": truth["axis_ratio"].to_numpy(),
            # the model's PA from theta (pa_deg may be NaN where flag bit 1 is set)
            "pa_abs_err": angle_diff_180(theta_to_pa(cat["theta_deg"].to_numpy()), truth["pa_deg"].to_numpy()),
            "x_abs_err": np.abs(cat["x_pix"].to_numpy() - truth["x_pix"].to_numpy()),
            "y_abs_err": np.abs(cat["y_pix"].to_numpy() - truth["y_pix"].to_numpy()),
            "moment_pa_abs_err": angle_diff_180(cat["moment_pa_deg"].to_numpy(), truth["pa_deg"].to_numpy()),
            "pa_spread": cat["pa_err_deg"].to_numpy(np.float64), "x_spread": cat["x_err_pix"].to_numpy(np.float64),
            "y_spread": cat["y_err_pix"].to_numpy(np.float64),
            "moment_pa_err": cat["moment_pa_err_deg"].to_numpy(np.float64),
            "moment_axis_ratio": cat["moment_axis_ratio"].to_numpy(np.float64),
        }))
    return pd.concat(frames, ignore_index=True)


def fit(d: pd.DataFrame, samples: int, floor_quantile: float, source: str, sha: str) -> ErrorCalibration:
    """Calibration in the cutout frame (scales are frame-free; the centroid floor is converted by the caller)."""
    return fit_error_calibration(pa_abs_err_deg=d["pa_abs_err"], pa_spread_deg=d["pa_spread"],
                                 x_abs_err_pix=d["x_abs_err"], x_spread_pix=d["x_spread"],
                                 y_abs_err_pix=d["y_abs_err"], y_spread_pix=d["y_spread"], samples=samples,
                                 source=source, checkpoint_sha256=sha, floor_quantile=floor_quantile)


def stated(d: pd.DataFrame, cal: ErrorCalibration) -> dict[str, np.ndarray]:
    """Column -> stated 1-sigma errors (cutout frame)."""
    return {"pa_err_deg": cal.pa_err_deg(d["pa_spread"]), "x_err_pix": cal.x_err_pix(d["x_spread"]),
            "y_err_pix": cal.y_err_pix(d["y_spread"]), "moment_pa_err_deg": d["moment_pa_err"].to_numpy()}


REAL = {"pa_err_deg": "pa_abs_err", "x_err_pix": "x_abs_err", "y_err_pix": "y_abs_err",
        "moment_pa_err_deg": "moment_pa_abs_err"}
SHORT = {"pa_err_deg": "pa", "x_err_pix": "x", "y_err_pix": "y", "moment_pa_err_deg": "mpa"}


def snr_table(d: pd.DataFrame, cal: ErrorCalibration, bins: int) -> pd.DataFrame:
    edges = np.unique(np.quantile(d["snr"], np.linspace(0, 1, bins + 1)))
    which = np.clip(np.searchsorted(edges, d["snr"], side="right") - 1, 0, len(edges) - 2)
    st = stated(d, cal)
    rows = []
    for b in range(len(edges) - 1):
        m = which == b
        row = {"snr": f"{edges[b]:.0f}-{edges[b + 1]:.0f}", "n": int(m.sum())}
        for col, real in REAL.items():
            r, s = d[real].to_numpy()[m], st[col][m]
            short = SHORT[col]
            row[f"{short} stated"] = np.nanmedian(s)
            row[f"{short} real"] = np.nanmedian(r)
            row[f"{short} real68"] = np.nanquantile(r, 0.68)
            row[f"{short} cov"] = coverage(r, s)
        rows.append(row)
    return pd.DataFrame(rows).set_index("snr")


def flag_rules(d: pd.DataFrame, cal: ErrorCalibration) -> pd.DataFrame:
    st = stated(d, cal)
    rules = {
        f"axis ratio > {NEAR_ROUND_AXIS_RATIO:g}": ~(d["moment_axis_ratio"] <= NEAR_ROUND_AXIS_RATIO).to_numpy(),
        f"moment PA err > {PA_ERROR_ILL_DEFINED_DEG:g}": ~(st["moment_pa_err_deg"] <= PA_ERROR_ILL_DEFINED_DEG),
        f"model PA err > {PA_ERROR_ILL_DEFINED_DEG:g}": st["pa_err_deg"] > PA_ERROR_ILL_DEFINED_DEG,
    }
    names = list(rules)
    rules["either PA err (catalogue)"] = orientation_ill_defined(d["moment_axis_ratio"].to_numpy(),
                                                                 st["moment_pa_err_deg"], st["pa_err_deg"])
    rules["moment PA err or axis ratio (catalogue, K = 0)"] = rules[names[1]] | rules[names[0]]
    rules["either PA err or axis ratio"] = rules["either PA err (catalogue)"] | rules[names[0]]
    bad_model = d["pa_abs_err"].to_numpy() > PA_ERROR_ILL_DEFINED_DEG
    bad_moment = d["moment_pa_abs_err"].to_numpy() > PA_ERROR_ILL_DEFINED_DEG
    rows = []
    for name, f in rules.items():
        rows.append({"rule": name, "flagged": f"{f.mean():.3f}",
                     "model PA>20 caught": f"{f[bad_model].mean():.3f}" if bad_model.any() else "-",
                     "moment PA>20 caught": f"{f[bad_moment].mean():.3f}" if bad_moment.any() else "-",
                     "unflagged model med": np.median(d["pa_abs_err"][~f]) if (~f).any() else np.nan,
                     "unflagged moment med": np.median(d["moment_pa_abs_err"][~f]) if (~f).any() else np.nan,
                     "flagged true q med": np.median(d["axis_ratio"][f]) if f.any() else np.nan})
    return pd.DataFrame(rows).set_index("rule")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", type=Path, help="a trained CODAE (default: train one briefly)")
    ap.add_argument("--steps", type=int, default=1000, help="training steps without --checkpoint")
    ap.add_argument("--config", type=Path, help="run configuration (YAML) of that training (default: the defaults)")
    ap.add_argument("--cutout-size", type=int, default=424, help="demo survey cutout side, pixels (424: Galaxy Zoo)")
    ap.add_argument("--image-size", type=int, default=64, help="store image side of that training, pixels")
    ap.add_argument("--train-n", type=int, default=2000, help="galaxies of the training survey")
    ap.add_argument("--n", type=int, default=2000, help="galaxies of the evaluation surveys, all levels together")
    ap.add_argument("--sky", default="default,0.01,0.02,0.04",
                    help="sky noise levels of the evaluation surveys: 'default' (drawn per galaxy) or r-band "
                         "nanomaggies per pixel, comma-separated")
    ap.add_argument("--error-samples", type=int, default=8, help="K of the error ensemble")
    ap.add_argument("--floor-quantile", type=float, default=None,
                    help="error floor fixed at this quantile of the real |error| (0: scale only; "
                         "default: fitted with the scale for even coverage across the spreads)")
    ap.add_argument("--bins", type=int, default=6, help="signal-to-noise bins of the table")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--calibrate", action="store_true", help=f"write {CALIBRATION_FILE} beside the checkpoint")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads (1 is faster on a machine shared with other jobs)")
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--log", type=Path, default=None)
    args = ap.parse_args()

    tee = Tee()
    sys.stdout = tee
    torch.manual_seed(0)
    if args.threads:
        torch.set_num_threads(args.threads)
    work = args.work or Path(tempfile.mkdtemp(prefix="codae-errors-"))
    work.mkdir(parents=True, exist_ok=True)
    workers = min(2, os.cpu_count() or 1)
    machine = f"cpu{os.cpu_count()}"
    print(f"machine: {os.cpu_count()} CPU cores, torch {torch.__version__}, threads {torch.get_num_threads()}; "
          f"work {work}")
    ckpt = args.checkpoint or train_briefly(work, args.train_n, args.steps, seed=2026, threads=args.threads,
                                            cutout=args.cutout_size, size=args.image_size, config=args.config)
    state = load_checkpoint(ckpt)
    size = int(state["config"].model.image_size)
    sha = file_sha256(ckpt)
    print(f"checkpoint {ckpt} (SHA-256 {sha[:12]}...), image size {size}, error ensemble K = {args.error_samples}")
    levels = [s.strip() for s in args.sky.split(",") if s.strip()]
    cached = work / f"measured-{sha[:12]}-k{args.error_samples}-n{args.n}-{'_'.join(levels)}.parquet"
    if cached.is_file():
        d = pd.read_parquet(cached)
        print(f"measurements reused from {cached}")
    else:
        d = measure(work, ckpt, levels, args.n, args.seed, args.error_samples, size, workers, args.cutout_size)
        d.to_parquet(cached)

    even = np.arange(len(d)) % 2 == 0
    cal_a = fit(d[even], args.error_samples, args.floor_quantile, "fit on even rows", sha)
    held = d[~even].reset_index(drop=True)
    how = "fitted" if args.floor_quantile is None else f"the {args.floor_quantile:g} quantile of the real |error|"
    print(f"\ncalibration fitted on {int(even.sum())} objects (even rows), floor {how}: PA scale {cal_a.pa_scale:.3f} floor {cal_a.pa_floor_deg:.3f} deg; x scale "
          f"{cal_a.x_scale:.3f}, y scale {cal_a.y_scale:.3f}, floor {cal_a.xy_floor_pix:.3f} cutout pix")
    st = stated(held, cal_a)
    print(f"\nfraction with |error| <= stated 1-sigma, held-out {len(held)} objects (target 0.60-0.76):")
    for col, real in REAL.items():
        c = coverage(held[real], st[col])
        ok = "ok" if 0.60 <= c <= 0.76 else "OUTSIDE"
        note = " (analytic, not fitted)" if col.startswith("moment") else ""
        print(f"  {col:18s} {c:.3f}  {ok}{note}")
    unflagged = ~orientation_ill_defined(held["moment_axis_ratio"].to_numpy(), st["moment_pa_err_deg"],
                                         st["pa_err_deg"])
    print(f"  among the {int(unflagged.sum())} objects without flag bit 1: "
          + ", ".join(f"{col} {coverage(held[real][unflagged], st[col][unflagged]):.3f}"
                      for col, real in REAL.items()))
    pd.set_option("display.width", 250)
    pd.set_option("display.max_columns", 30)
    table = snr_table(held, cal_a, args.bins)
    for prefix in ("pa", "x", "y", "mpa"):
        cols = [c for c in table.columns if c.split(" ")[0] == prefix]
        unit = "deg" if "pa" in prefix else "cutout pix"
        name = {"pa": "pa_err_deg (model)", "x": "x_err_pix (model)", "y": "y_err_pix (model)",
                "mpa": "moment_pa_err_deg (moments)"}[prefix]
        print(f"\n{name}, {unit}, over truth S/N bins (held-out half): median stated, median real |error|, "
              f"68th percentile of real |error|, fraction covered")
        print(table[["n", *cols]].to_string(float_format=lambda v: f"{v:.3f}"))
    print("\nflag bit 1 rules (held-out half): fraction flagged, fraction of real PA errors > 20 deg caught, "
          "median real PA error of the unflagged")
    print(flag_rules(held, cal_a).to_string(float_format=lambda v: f"{v:.3f}"))

    if args.calibrate:
        cal = fit(d, args.error_samples, args.floor_quantile, "benchmarks/pose_errors.py", sha)
        crop = float(open_store(next(work.glob(f"eval-{levels[0]}-*.zarr"))).info.crop_size)
        cal = replace(cal, xy_floor_pix=cal.xy_floor_pix * size / crop)  # cutout -> store pixels
        st_all = stated(d, replace(cal, xy_floor_pix=cal.xy_floor_pix * crop / size))
        path = write_calibration(cal, ckpt.parent / CALIBRATION_FILE, n_objects=len(d), sky_levels=levels,
                                 coverage={col: coverage(d[real], st_all[col]) for col, real in REAL.items()},
                                 floor_quantile=args.floor_quantile, crop=crop, image_size=size)
        print(f"\nwrote {path}: PA scale {cal.pa_scale:.3f} floor {cal.pa_floor_deg:.3f} deg; x scale "
              f"{cal.x_scale:.3f}, y scale {cal.y_scale:.3f}, floor {cal.xy_floor_pix:.3f} store pix (all objects)")

    log = args.log or (Path(__file__).resolve().parent / "results"
                       / f"pose-errors-{machine}-{dt.date.today().isoformat()}.log")
    sys.stdout = sys.__stdout__
    log.write_text("".join(tee.lines))
    print(f"log: {log}")


if __name__ == "__main__":
    main()
