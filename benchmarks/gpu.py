"""Survey scale on one GPU, in one timed run: training images/s, accuracy at a large batch, and
``galaxy-codae infer`` end to end.

    python benchmarks/gpu.py [--quick] [--time-limit 450] [--large-batch 1024] [--work DIR] [--json FILE]

1. Training throughput at 64x64 and 128x128 from synthetic uint8 stores, through the trainer itself
   (``python -m pipeline train``, bf16 autocast, checkpointing off): batch 128 with the images held
   on the GPU (``train.data_on_device``) and through the DataLoader (the store's reader, 8 or more
   workers), the large batch held on the GPU, and the large batch compiled (``train.compile``).
   Images/s from ``metrics.csv`` after the first logged step; GPU utilisation sampled from
   nvidia-smi (or ``torch.cuda.utilization``) while the steps run.
2. Accuracy at the large batch against batch 128: the same epochs of one simulated store with known
   poses (analytic ellipses with sky noise), the large batch with the learning rate scaled by the
   square root of the batch ratio after a linear warm-up (``train.lr_scaling: sqrt``; the rule is
   :mod:`pipeline.schedules`); centroid RMSE (pixels), median axis error (degrees) and the last
   logged loss of both, and those of background-subtracted moments for reference.
3. ``python -m pipeline infer`` on a 314,000-row synthetic 64x64 store (``--quick``: 31,400) with
   the model of section 1, timed from process start to the written catalogue, then ``fitsverify``.

Every run is a subprocess with a timeout, and every section is skipped with a message when the
time left (``--time-limit`` seconds for the whole script, default 450) is too short for it.
Without a GPU the sections run at a tiny size on the CPU to check the script and say so: those
figures are not GPU figures.  The GPU machine needs the project's dependencies that its image
lacks (e2cnn, zarr, numcodecs, astropy, dask, distributed, ...) as wheels and, for the last check,
Debian's fitsverify: ``benchmarks/gpu_prepare.sh`` fetches both and prints the command to run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

import torch  # noqa: E402

from pipeline.data.store_write import write_array_store  # noqa: E402
from pipeline.simulate.analytic import gaussian_ellipses  # noqa: E402

PROGRESS = re.compile(r"train: (\d+)/(\d+) steps")


@dataclass(frozen=True)
class Plan:
    """Sizes of one mode of the script."""

    n64: int  # objects of the 64x64 training store
    n128: int  # objects of the 128x128 training store (0: no 128x128 section)
    steps: int  # optimiser steps of a batch-128 throughput run
    large_steps: int  # optimiser steps of a large-batch throughput run
    batch: int
    large_batch: int
    acc_n: int  # objects of the accuracy store
    acc_epochs: int
    infer_n: int  # rows of the inference store
    loader_workers: int
    model: dict  # model config changes (none on a GPU: the default C8 model)


def plan_for(args, gpu: bool) -> Plan:
    cpus = os.cpu_count() or 1
    if not gpu:
        tiny = {"widths": [2, 4, 4], "kernels": [5, 3, 3], "latent_dim": 4, "hidden": 32, "decoder_width": 8}
        return Plan(n64=256, n128=0, steps=6, large_steps=3, batch=16, large_batch=64, acc_n=256, acc_epochs=2,
                    infer_n=2048, loader_workers=min(2, cpus), model=tiny)
    workers = max(8, min(16, cpus))
    if args.quick:
        return Plan(n64=8192, n128=4096, steps=60, large_steps=20, batch=128, large_batch=args.large_batch,
                    acc_n=4096, acc_epochs=3, infer_n=31_400, loader_workers=workers, model={})
    return Plan(n64=65_536, n128=32_768, steps=300, large_steps=100, batch=128, large_batch=args.large_batch,
                acc_n=16_384, acc_epochs=6, infer_n=314_000, loader_workers=workers, model={})


class Clock:
    """The script's time budget."""

    def __init__(self, limit_s: float) -> None:
        self.t0, self.limit = time.monotonic(), limit_s

    def left(self) -> float:
        return self.limit - (time.monotonic() - self.t0)

    def allows(self, what: str, need_s: float) -> bool:
        if self.left() >= need_s:
            return True
        print(f"skipped: {what} (needs about {need_s:.0f} s, {max(self.left(), 0):.0f} s left of --time-limit)",
              flush=True)
        return False


class GpuSampler(threading.Thread):
    """(time, utilisation %) of the GPU every 0.2 s from nvidia-smi, else torch.cuda.utilization."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.samples: list[tuple[float, float]] = []
        self.halt = threading.Event()
        self.smi = shutil.which("nvidia-smi")

    def _read(self) -> float | None:
        if self.smi:
            out = subprocess.run([self.smi, "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                                 capture_output=True, text=True, timeout=5).stdout.split()
            return float(out[0]) if out else None
        return float(torch.cuda.utilization())

    def run(self) -> None:
        while not self.halt.is_set():
            try:
                value = self._read()
            except Exception:  # noqa: BLE001 - no utilisation reading on this machine
                return
            if value is not None:
                self.samples.append((time.monotonic(), value))
            time.sleep(0.2)

    def mean_between(self, a: float, b: float) -> float:
        vals = [u for t, u in self.samples if a <= t <= b]
        return float(np.mean(vals)) if vals else float("nan")


def synthetic_rows(size: int, *, seed: int, base: int = 2048, noise: float = 0.02):
    """rows(a, b) for :func:`write_array_store`: ``base`` analytic ellipses repeated (throughput does not
    depend on the pixels; accuracy uses :func:`accuracy_store`)."""
    imgs, _ = gaussian_ellipses(base, size, seed=seed, noise=noise, max_shift=size / 10)
    return lambda a, b: imgs[np.arange(a, b) % base]


def make_store(path: Path, n: int, size: int, *, seed: int) -> Path:
    t0 = time.monotonic()
    write_array_store(path, synthetic_rows(size, seed=seed, base=min(2048, n)), n=n, channels=3, size=size, dtype="uint8",
                      preprocessing={"source_format": "synthetic (benchmarks/gpu.py)"}, overwrite=True)
    print(f"store {path.name}: {n:,} x 3 x {size} x {size} uint8 written in {time.monotonic() - t0:.1f} s", flush=True)
    return path


def run_train(store: Path, out: Path, *, size: int, batch: int, steps: int, clock: Clock, sampler: GpuSampler | None,
              on_device: bool, model: dict, compile_: bool = False, workers: int = 0, epochs: int | None = None,
              lr_scaling: str = "none", warmup: int = 0, seed: int = 0, timeout: float | None = None) -> dict:
    """One training run in a subprocess; images/s from metrics.csv, GPU utilisation while it stepped."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    log_every = 10 if epochs else max(1, min(10, steps // 5))  # rows after the first give the rate
    train_cfg = {"batch_size": batch, "max_epochs": epochs or 10_000, "log_every": log_every, "checkpoint_every": 10**9,
                 "data_on_device": on_device, "compile": compile_, "num_workers": workers, "seed": seed,
                 "lr_scaling": lr_scaling, "lr_reference_batch": 128, "warmup_steps": warmup}
    cfg = {"model": {"image_size": size, **model}, "train": train_cfg}
    (out / "bench.yaml").write_text(yaml.safe_dump(cfg))
    cmd = [sys.executable, "-m", "pipeline", "train", "--store", str(store), "--out", str(out / "run"),
           "--config", str(out / "bench.yaml")]
    if epochs is None:
        cmd += ["--max-steps", str(steps)]
    env = {**os.environ, "GALAXY_CODAE_PROGRESS": "lines", "PYTHONUNBUFFERED": "1"}
    limit = max(10.0, min(timeout or clock.left(), clock.left() - 5))
    t0 = time.monotonic()
    marks: list[tuple[float, int]] = []  # (time, steps done) of the trainer's progress lines
    log = open(out / "train.log", "w")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.PIPE, text=True)

    def read_progress() -> None:
        for line in proc.stderr:
            log.write(line)
            m = PROGRESS.search(line)
            if m:
                marks.append((time.monotonic(), int(m.group(1))))

    reader = threading.Thread(target=read_progress, daemon=True)
    reader.start()
    try:
        rc = proc.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        rc = None
    reader.join(timeout=5)
    log.close()
    wall = time.monotonic() - t0
    res = {"size": size, "batch": batch, "on_device": on_device, "compile": compile_, "workers": workers,
           "wall_s": round(wall, 1)}
    if rc != 0:
        res["error"] = "timed out" if rc is None else f"exit {rc}: " + _last_line(out / "train.log")
        return res
    import csv

    rows = list(csv.DictReader(open(out / "run" / "metrics.csv")))
    if len(rows) >= 2:
        a, b = rows[0], rows[-1]
        res["img_s"] = round((int(b["step"]) - int(a["step"])) * batch / (float(b["elapsed_s"]) - float(a["elapsed_s"])), 1)
    res["steps"] = int(rows[-1]["step"]) if rows else 0
    res["last_loss"] = float(rows[-1]["loss"]) if rows else float("nan")
    stepping = [t for t, done in marks if done >= 1]
    if sampler is not None and len(stepping) >= 3:
        res["gpu_util_pct"] = round(sampler.mean_between(stepping[1], stepping[-1]), 1)
    log_text = (out / "train.log").read_text()
    if compile_ and "torch.compile" in log_text:
        res["compile_note"] = next(ln for ln in log_text.splitlines() if "torch.compile" in ln)[:200]
    res["run"] = str(out / "run")
    return res


def _last_line(path: Path) -> str:
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    return lines[-1][:300] if lines else ""


def show(res: dict) -> None:
    print("  " + ", ".join(f"{k} {v}" for k, v in res.items() if k != "run"), flush=True)


# ----------------------------------------------------------------------------- 1. throughput


def throughput(work: Path, plan: Plan, clock: Clock, sampler: GpuSampler | None, gpu: bool) -> list[dict]:
    results = []
    sizes = [(64, plan.n64)] + ([(128, plan.n128)] if plan.n128 else [])
    if not plan.n128:
        print("skipped: 128x128 (no GPU)", flush=True)
    for size, n in sizes:
        if not clock.allows(f"training at {size}x{size}", 60):
            continue
        store = make_store(work / f"train{size}.zarr", n, size, seed=size)
        runs = [dict(batch=plan.batch, steps=plan.steps, on_device=True),
                dict(batch=plan.batch, steps=plan.steps // 2, on_device=False, workers=plan.loader_workers),
                dict(batch=plan.large_batch, steps=plan.large_steps, on_device=True)]
        if gpu and size == 64:
            runs.append(dict(batch=plan.large_batch, steps=plan.large_steps, on_device=True, compile_=True))
        for r in runs:
            name = f"train {size}x{size} batch {r['batch']}" + (" held on the device" if r["on_device"] else
                                                                 f" DataLoader {r.get('workers', 0)} workers")
            name += ", compiled" if r.get("compile_") else ""
            if not clock.allows(name, 150 if r.get("compile_") else 40):
                continue
            print(f"{name} ...", flush=True)
            res = run_train(store, work / f"t{size}-b{r['batch']}-{'dev' if r['on_device'] else 'dl'}"
                            f"{'-c' if r.get('compile_') else ''}", size=size, clock=clock, sampler=sampler,
                            model=plan.model, **r)
            show(res)
            results.append(res)
    return results


# ----------------------------------------------------------------------------- 2. accuracy


def accuracy_store(work: Path, n: int) -> tuple[Path, dict]:
    imgs, truth = gaussian_ellipses(n, 64, seed=2026, noise=0.03, max_shift=8.0)
    store = write_array_store(work / "accuracy.zarr", imgs, preprocessing={"source_format": "synthetic"},
                              overwrite=True)
    return store, truth


def score(run_dir: Path, store: Path, truth: dict, device: torch.device) -> dict:
    from pipeline.checkpoint import load_model
    from pipeline.conventions import angle_diff_180
    from pipeline.data.pixels import to_unit_float
    from pipeline.data.store import open_store
    from pipeline.predict import concat, predict_batch

    model, _ = load_model(run_dir / "checkpoint.pt", map_location=device)
    model.to(device)
    st = open_store(store)
    preds = []
    for a in range(0, len(st), 1024):
        preds.append(predict_batch(model, to_unit_float(st.read_images(a, min(a + 1024, len(st)))).to(device)))
    p = concat(preds)
    tx, ty, tt = truth["x_pix"], truth["y_pix"], truth["theta_deg"]
    return {"centroid_rmse_px": float(np.sqrt(np.mean((p.x_pix - tx) ** 2 + (p.y_pix - ty) ** 2))),
            "axis_median_err_deg": float(np.median(angle_diff_180(p.theta_deg, tt))),
            "moment_centroid_rmse_px": float(np.sqrt(np.mean((p.moment_x_pix - tx) ** 2 + (p.moment_y_pix - ty) ** 2))),
            "moment_axis_median_err_deg": float(np.median(angle_diff_180(p.moment_theta_deg, tt)))}


def accuracy(work: Path, plan: Plan, clock: Clock, device: torch.device) -> list[dict]:
    if not clock.allows("accuracy at the large batch against batch 128", 120 if device.type == "cuda" else 60):
        return []
    store, truth = accuracy_store(work, plan.acc_n)
    results = []
    warmup = max(1, (plan.acc_n // plan.large_batch) * plan.acc_epochs // 10)  # a tenth of the large run
    for batch, scaling, wu in ((plan.batch, "none", 0), (plan.large_batch, "sqrt", warmup)):
        name = f"accuracy batch {batch}, lr scaling {scaling}, warm-up {wu} steps, {plan.acc_epochs} epochs"
        if not clock.allows(name, 45):
            continue
        print(f"{name} ...", flush=True)
        res = run_train(store, work / f"acc-b{batch}", size=64, batch=batch, steps=0, clock=clock, sampler=None,
                        on_device=True, model=plan.model, epochs=plan.acc_epochs, lr_scaling=scaling, warmup=wu, seed=1)
        if "error" not in res:
            res.update({k: round(v, 3) for k, v in score(Path(res["run"]), store, truth, device).items()})
        show(res)
        results.append(res)
    return results


# ----------------------------------------------------------------------------- 3. inference end to end


def infer(work: Path, plan: Plan, clock: Clock, checkpoint: Path | None, gpu: bool) -> dict:
    if checkpoint is None or not checkpoint.is_file():
        print("skipped: infer (no trained 64x64 checkpoint from section 1)", flush=True)
        return {}
    if not clock.allows(f"infer on {plan.infer_n:,} rows", 90 if gpu else 45):
        return {}
    store = make_store(work / "infer.zarr", plan.infer_n, 64, seed=7)
    out = work / "catalog.fits"
    if out.exists():
        out.unlink()
    cmd = [sys.executable, "-m", "pipeline", "infer", "--store", str(store), "--checkpoint", str(checkpoint),
           "--out", str(out), "--workers", "1", "--batch-size", "4096" if gpu else "256", "--quiet"]
    t0 = time.monotonic()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=max(10, clock.left() - 10))
        rc, err = proc.returncode, proc.stderr
    except subprocess.TimeoutExpired:
        rc, err = None, "timed out"
    wall = time.monotonic() - t0
    res = {"rows": plan.infer_n, "wall_s": round(wall, 1), "command": " ".join(cmd[1:])}
    if rc != 0:
        res["error"] = err.strip().splitlines()[-1][:300] if err.strip() else f"exit {rc}"
        show(res)
        return res
    res["rows_per_s"] = round(plan.infer_n / wall, 1)
    fv = shutil.which("fitsverify")
    if fv is None:
        res["fitsverify"] = "not found (install Debian's fitsverify, or see benchmarks/gpu_prepare.sh)"
    else:
        report = subprocess.run([fv, str(out)], capture_output=True, text=True).stdout  # the tests' rule
        found = [ln.strip() for ln in report.splitlines() if "Verification found" in ln]
        res["fitsverify"] = found[-1][:200] if found else "no verdict (see fitsverify's report)"
        res["fitsverify_clean"] = "Verification found 0 warning(s) and 0 error(s)" in report
    show(res)
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a tenth of the sizes: checks the whole script in ~2 minutes")
    ap.add_argument("--time-limit", type=float, default=450.0, help="seconds for the whole script (default 450)")
    ap.add_argument("--large-batch", type=int, default=1024, help="the large batch (default 1024)")
    ap.add_argument("--work", type=Path, help="working folder (default: a temporary one, removed at the end)")
    ap.add_argument("--json", type=Path, help="also write every figure here")
    args = ap.parse_args()
    clock = Clock(args.time_limit)
    gpu = torch.cuda.is_available()
    device = torch.device("cuda" if gpu else "cpu")
    print(f"benchmarks/gpu.py: torch {torch.__version__}, {os.cpu_count()} CPU cores, "
          f"{torch.cuda.get_device_name() if gpu else 'no GPU'}, {'quick' if args.quick else 'full'}, "
          f"time limit {args.time_limit:.0f} s", flush=True)
    if not gpu:
        print("no GPU: the GPU sections run at a tiny size on the CPU to check this script; "
              "these figures are NOT GPU figures and utilisation is not measured", flush=True)
    plan = plan_for(args, gpu)
    work = args.work or Path(tempfile.mkdtemp(prefix="codae-gpu-"))
    work.mkdir(parents=True, exist_ok=True)
    sampler = GpuSampler() if gpu else None
    if sampler:
        sampler.start()
    report: dict = {"device": torch.cuda.get_device_name() if gpu else "cpu", "torch": torch.__version__,
                    "mode": "quick" if args.quick else "full", "plan": plan.__dict__}
    try:
        report["throughput"] = throughput(work, plan, clock, sampler, gpu)
        report["accuracy"] = accuracy(work, plan, clock, device)
        ckpt = next((Path(r["run"]) / "checkpoint.pt" for r in report["throughput"]
                     if r["size"] == 64 and "run" in r), None)
        report["infer"] = infer(work, plan, clock, ckpt, gpu)
    finally:
        if sampler:
            sampler.halt.set()
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    report["elapsed_s"] = round(args.time_limit - clock.left(), 1)
    print("\nsummary (" + ("GPU" if gpu else "CPU check, not GPU figures") + f", {report['elapsed_s']} s):")
    for r in report["throughput"]:
        label = f"train {r['size']}x{r['size']} batch {r['batch']} " + \
            ("device-held" if r["on_device"] else "DataLoader") + (" compiled" if r["compile"] else "")
        print(f"  {label:<48} {r.get('img_s', r.get('error', 'n/a'))} img/s, GPU {r.get('gpu_util_pct', 'n/a')} %")
    for r in report["accuracy"]:
        print(f"  accuracy batch {r['batch']:<5} centroid {r.get('centroid_rmse_px')} px, axis "
              f"{r.get('axis_median_err_deg')} deg, last loss {r.get('last_loss')} "
              f"(moments {r.get('moment_centroid_rmse_px')} px, {r.get('moment_axis_median_err_deg')} deg)")
    if report["infer"]:
        r = report["infer"]
        print(f"  infer {r['rows']:,} rows end to end: {r['wall_s']} s ({r.get('rows_per_s', r.get('error'))} rows/s), "
              f"fitsverify: {r.get('fitsverify', 'n/a')}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
