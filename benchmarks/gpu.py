"""GPU figures: training and inference images/s at 64x64 and 128x128, GPU utilisation during
training, and whether data loading keeps up (step time on in-memory tensors against step time
fed from the Zarr store through the DataLoader).  On a CPU it runs a tiny version and says so.

    python benchmarks/gpu.py [--n 4096] [--batch 128] [--steps 60] [--sizes 64,128] [--work DIR]

Needs no galsim: the cutouts are analytic ellipses written as PNGs and ingested with
``pipeline.data.ingest`` exactly as a survey would be.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch.utils.data import DataLoader

from pipeline.config import LossConfig, ModelConfig, RunConfig
from pipeline.data.dataset import StoreImageDataset
from pipeline.data.ingest import ingest_survey
from pipeline.loss import codae_loss, moment_targets
from pipeline.model import CODAE, load_model_state, model_state_dict
from pipeline.simulate.analytic import gaussian_ellipses


def make_store(work: Path, n: int, size: int) -> Path:
    """n analytic cutouts of side 2*size as PNG + parquet catalogue, ingested at ``size``."""
    root = work / f"survey{size}"
    if root.exists():
        shutil.rmtree(root)
    (root / "images").mkdir(parents=True)
    imgs, _ = gaussian_ellipses(n, 2 * size, seed=size, max_shift=size / 8)
    rows = []
    for i, img in enumerate(imgs):
        name = f"obj{i:07d}"
        Image.fromarray(np.moveaxis(img, 0, -1)).save(root / "images" / f"{name}.png", compress_level=1)
        rows.append({"iauname": name, "ra": 150.0 + i * 1e-4, "dec": 2.0, "file_loc": f"{name}.png"})
    pd.DataFrame(rows).to_parquet(root / "catalog.parquet")
    store = work / f"store{size}.zarr"
    if store.exists():
        shutil.rmtree(store)
    ingest_survey(root / "catalog.parquet", root / "images", store, size=size, crop=size, shard_size=1024,
                  workers=1)
    return store


class GpuSampler(threading.Thread):
    """Samples nvidia-smi's utilisation.gpu (%) every 0.2 s until stopped."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.samples: list[float] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                                     capture_output=True, text=True, timeout=5).stdout.split()
                if out:
                    self.samples.append(float(out[0]))
            except (OSError, subprocess.SubprocessError, ValueError):
                return
            time.sleep(0.2)


def train_step_factory(model, device, channels_last: bool):
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_cfg = LossConfig()
    cuda = device.type == "cuda"

    def step(images: torch.Tensor) -> None:
        images = images.to(device, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        targets = moment_targets(images, loss_cfg)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
            out = model(images)
        loss = codae_loss(out, images, targets, 0.5, loss_cfg).total
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, iters, device) -> float:
    sync(device)
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    sync(device)
    return (time.perf_counter() - t0) / iters


def bench_size(size: int, store: Path, device, args) -> dict:
    cfg = ModelConfig(image_size=size)
    torch.manual_seed(0)
    res: dict = {"size": size}
    for cl in ([False, True] if device.type == "cuda" else [False]):
        model = CODAE(cfg).to(device)
        if cl:
            model = model.to(memory_format=torch.channels_last)
        model.train()
        step = train_step_factory(model, device, cl)
        batch = torch.rand(args.batch, 3, size, size, device=device)
        for _ in range(3):
            step(batch)
        t = timed(lambda step=step, batch=batch: step(batch), args.steps, device)
        res[f"train_img_s_in_memory{'_channels_last' if cl else ''}"] = args.batch / t
        if not cl:
            res["step_ms_in_memory"] = 1000 * t
    # from the store: DataLoader workers + pinned memory, same model
    model = CODAE(cfg).to(device).train()
    step = train_step_factory(model, device, False)
    ds = StoreImageDataset(store)
    loader = DataLoader(ds, batch_size=args.batch, shuffle=True, num_workers=args.loader_workers,
                        pin_memory=device.type == "cuda", drop_last=True, persistent_workers=True)
    it = iter(loader)
    for _ in range(3):
        step(next(it)[0])
    sampler = GpuSampler() if device.type == "cuda" and shutil.which("nvidia-smi") else None
    if sampler:
        sampler.start()
    n = 0
    sync(device)
    t0 = time.perf_counter()
    while n < args.steps:
        try:
            images, _ = next(it)
        except StopIteration:
            it = iter(loader)
            continue
        step(images)
        n += 1
    sync(device)
    t = (time.perf_counter() - t0) / n
    if sampler:
        sampler.stop.set()
        sampler.join()
        res["gpu_util_pct_mean"] = float(np.mean(sampler.samples)) if sampler.samples else float("nan")
    res["step_ms_from_store"] = 1000 * t
    res["train_img_s_from_store"] = args.batch / t
    res["loading_keeps_up"] = bool(t <= 1.15 * res["step_ms_in_memory"] / 1000)
    # inference: e2cnn model vs exported plain-torch model (eval, bf16 autocast on CUDA)
    model.eval()
    exported = load_model_state(CODAE(cfg).to(device), model_state_dict(model)).export().to(device)
    x = torch.rand(args.infer_batch, 3, size, size, device=device)
    for name, m in (("e2cnn", model), ("exported", exported)):
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
            for _ in range(3):
                m(x)
            t = timed(lambda m=m: m(x), max(5, args.steps // 4), device)
        res[f"infer_img_s_{name}"] = args.infer_batch / t
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=4096)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--infer-batch", type=int, default=512)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--sizes", default="64,128")
    ap.add_argument("--loader-workers", type=int, default=min(8, os.cpu_count() or 1))
    ap.add_argument("--work", type=Path)
    args = ap.parse_args()
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    if cuda:
        print(f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}, {os.cpu_count()} CPU cores")
        torch.backends.cudnn.benchmark = True
    else:
        print("no GPU present: running a tiny CPU version (figures are not GPU figures)")
        args.n, args.batch, args.infer_batch, args.steps, args.sizes = 256, 16, 32, 3, "64"
        args.loader_workers = min(args.loader_workers, 2)
    work = args.work or Path(tempfile.mkdtemp(prefix="codae-gpu-"))
    rows = []
    for size in [int(s) for s in args.sizes.split(",")]:
        t0 = time.perf_counter()
        store = make_store(work, args.n, size)
        print(f"store {size}x{size}: {args.n} cutouts ingested in {time.perf_counter() - t0:.1f} s", flush=True)
        rows.append(bench_size(size, store, device, args))
        print(rows[-1], flush=True)
    print(pd.DataFrame(rows).set_index("size").T.to_string(float_format=lambda v: f"{v:.1f}"))
    # exercise the trainer's own CUDA path end to end (bf16 autocast, pinned memory, checkpoint)
    from pipeline.train import train

    size = int(args.sizes.split(",")[0])
    cfg = RunConfig(model=ModelConfig(image_size=size)).replace(
        train={"batch_size": args.batch, "max_steps": max(10, args.steps), "max_epochs": 100,
               "num_workers": args.loader_workers, "log_every": 20})
    r = train(cfg, work / f"store{size}.zarr", work / "run", progress=True)
    print(f"trainer on {device}: {r.steps} steps, {r.images_per_s:.1f} img/s overall, final loss {r.final_loss:.5f}")


if __name__ == "__main__":
    main()
