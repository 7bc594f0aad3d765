"""The CODAE training loop: one plain function, :func:`train`.

Reads images from a Zarr store (or any dataset of ``(image, index)`` items), writes
into the run directory ``RUN/``: ``checkpoint.pt`` (atomic, every
``checkpoint_every`` steps and at the end), ``config.yaml``, ``metrics.csv`` and
``figures/*.png``.  Seeded: the order of the samples in epoch ``e`` is a permutation
drawn from ``seed + e``, so a run stopped and resumed visits the same batches as an
unbroken run and, on CPU, ends with the same weights.

Under ``torchrun`` (``torch.distributed`` initialised) each rank takes every
``world``-th sample of the epoch's permutation; rank 0 alone writes files.
"""

from __future__ import annotations

import csv
import math
import os
import sys
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset

from pipeline import __version__
from pipeline.checkpoint import load_checkpoint, save_checkpoint
from pipeline.config import RunConfig, save_config
from pipeline.device import pick_device, set_cpu_threads
from pipeline.errors import BadInputError, ConfigError
from pipeline.loss import beta_schedule, codae_loss, moment_targets
from pipeline.model import build_model, load_model_state, model_state_dict

__all__ = ["TrainResult", "train", "open_training_data", "distributed_from_environment"]

METRIC_FIELDS = ["step", "epoch", "elapsed_s", "images_per_s", "beta", "loss", "reconstruction", "centroid",
                 "orientation", "aligned", "regularizer", "lr"]


@dataclass(frozen=True)
class TrainResult:
    """What a finished (or budget-stopped) run left behind."""

    run_dir: Path
    checkpoint: Path
    steps: int
    epochs_completed: float
    stopped_early: bool  # True when --max-minutes ended the run before its planned steps
    final_loss: float
    images_per_s: float
    rank: int = 0  # this process's rank under torchrun (0 otherwise)
    world_size: int = 1
    model: torch.nn.Module | None = field(default=None, repr=False, compare=False)  # the trained model, train mode


class _EpochSampler(torch.utils.data.Sampler[int]):
    """This rank's share of epoch ``e``'s permutation, from ``skip`` batches on."""

    def __init__(self, n: int, seed: int, epoch: int, rank: int, world: int, skip: int, batch_size: int):
        g = torch.Generator().manual_seed(seed * 100_003 + epoch)
        perm = torch.randperm(n, generator=g)
        per_rank = n // world  # equal shares so every rank takes the same number of steps
        mine = perm[rank * per_rank:(rank + 1) * per_rank] if world > 1 else perm
        usable = (len(mine) // batch_size) * batch_size  # whole batches only (batch norm)
        self.indices = mine[skip * batch_size:usable].tolist()

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def open_training_data(source: str | Path | Dataset) -> tuple[Dataset, dict]:
    """A dataset and a description of it from a store path (or a dataset given directly)."""
    if isinstance(source, Dataset):
        return source, {"kind": type(source).__name__, "n_objects": len(source)}
    from pipeline.data.dataset import StoreImageDataset
    from pipeline.data.store import open_store

    store = open_store(source)
    info = store.info
    desc = {"kind": "zarr", "path": str(Path(source).resolve()), "n_objects": len(store), "size": info.size,
            "channels": info.channels, "crop_size": info.crop_size, "catalog_sha256": info.catalog_sha256}
    return StoreImageDataset(source), desc


@contextmanager
def distributed_from_environment(device: str = "auto"):
    """Join the process group torchrun describes (``WORLD_SIZE`` > 1), leave it afterwards.

    NCCL on CUDA, gloo on CPU.  Outside torchrun this does nothing.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or (dist.is_available() and dist.is_initialized()):
        yield
        return
    use_cuda = device != "cpu" and torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    try:
        yield
    finally:
        dist.barrier()
        dist.destroy_process_group()


def _dist_info() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _check_data(dataset: Dataset, cfg: RunConfig) -> None:
    img, _ = dataset[0]
    want = (cfg.model.channels, cfg.model.image_size, cfg.model.image_size)
    if tuple(img.shape) != want:
        raise ConfigError(f"data images are {tuple(img.shape)} (C, H, W) but the model expects {want}: "
                          f"set model.channels and model.image_size in the config")
    if len(dataset) < cfg.train.batch_size:
        raise BadInputError(f"only {len(dataset)} images, fewer than one batch of {cfg.train.batch_size}")


def train(config: RunConfig, source: str | Path | Dataset, out: str | Path, *, resume: bool = False,
          progress: bool = True, stop_after_steps: int | None = None) -> TrainResult:
    """Train CODAE on ``source`` into the run directory ``out``.

    ``resume=True`` continues from ``out/checkpoint.pt`` (its model and loss config must match
    ``config``; training budgets may change).  ``stop_after_steps`` ends the process early with a
    checkpoint, as a kill would (tests use it to check that resuming is exact).
    """
    out = Path(out)
    rank, world = _dist_info()
    ckpt_path = out / "checkpoint.pt"
    state = None
    if resume:
        state = load_checkpoint(ckpt_path)
        old = state["config"]
        if old.model != config.model or old.loss != config.loss:
            raise ConfigError(f"{ckpt_path}: model or loss config differs from the checkpoint's; "
                              "resume with the saved config.yaml")
    elif ckpt_path.exists():
        raise BadInputError(f"{out} already holds a run; use --resume to continue it or choose another --out")
    tc = config.train
    device = pick_device(tc.device)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)))
        torch.cuda.set_device(device)
    if device.type == "cpu" and world == 1:  # (torchrun gives each of several processes its share)
        set_cpu_threads(tc.cpu_threads)
    torch.manual_seed(tc.seed)

    dataset, data_desc = open_training_data(source)
    _check_data(dataset, config)
    n = len(dataset)
    steps_per_epoch = (n // world) // tc.batch_size
    planned = steps_per_epoch * tc.max_epochs
    if tc.max_steps is not None:
        planned = min(planned, tc.max_steps)

    model = build_model(config.model).to(device)
    moments_on = getattr(model, "uses_moment_loss", True)
    if world > 1 and device.type == "cuda":
        # Batch-norm statistics over the global batch, so every rank normalises alike (this includes
        # the BatchNorm3d inside e2cnn's InnerBatchNorm).  SyncBatchNorm needs a GPU; on CPU (gloo)
        # each rank normalises its own batch and DDP broadcasts rank 0's running statistics.
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    # fused Adam on CUDA: the per-parameter loop was 35 % of a step's GPU time (H200, benchmarks/gpu.py)
    optim = torch.optim.Adam(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay,
                             fused=device.type == "cuda")
    step, epoch, batch_in_epoch, rows, sched = 0, 0, 0, [], 0.0
    if state is not None:
        load_model_state(model, {k: v.to(device) for k, v in state["model"].items()})
        optim.load_state_dict(state["optimizer"])
        step, epoch, batch_in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]
        rows = list(state.get("metrics_rows", []))
        sched = float(state.get("schedule_progress", 0.0))
        torch.set_rng_state(state["torch_rng"])
    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        (out / "figures").mkdir(exist_ok=True)
        save_config(config, out / "config.yaml")
        import yaml

        info = {"software_version": __version__, "world_size": world, "device": str(device),
                "batch_size_per_process": tc.batch_size, "effective_batch_size": tc.batch_size * world,
                "learning_rate": tc.lr, "planned_steps": planned, "steps_per_epoch": steps_per_epoch, "data": data_desc}
        (out / "run_info.yaml").write_text(yaml.safe_dump(info, sort_keys=False))

    # bf16 autocast on CUDA: tensor cores, no loss scaling needed; CPU stays float32 for exactness.
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext())
    pin = device.type == "cuda"  # pinned host memory lets copies overlap compute on CUDA only

    def checkpoint() -> None:
        if rank != 0:
            return
        save_checkpoint({"software_version": __version__, "config": config.to_dict(),
                         "model": {k: v.cpu() for k, v in model_state_dict(model).items()},
                         "optimizer": optim.state_dict(), "step": step, "epoch": epoch,
                         "batch_in_epoch": batch_in_epoch, "torch_rng": torch.get_rng_state(),
                         "metrics_rows": rows, "store": data_desc, "schedule_progress": sched,
                         "effective_batch_size": tc.batch_size * world, "world_size": world}, ckpt_path)
        _write_metrics(out / "metrics.csv", rows)

    t0 = time.monotonic()
    last_t, last_step, seen = t0, step, 0
    rate = 0.0
    stopped_early = False
    last = None
    while step < planned:
        sampler = _EpochSampler(n, tc.seed, epoch, rank, world, batch_in_epoch, tc.batch_size)
        loader = DataLoader(dataset, batch_size=tc.batch_size, sampler=sampler, num_workers=tc.num_workers,
                            pin_memory=pin, drop_last=True, persistent_workers=False)
        net.train()
        for images, _idx in loader:
            images = images.to(device, non_blocking=pin)
            # Progress through the schedule: by steps, or by the time budget when that ends first
            # (so a --max-minutes run still decays beta); never moves backwards across a resume.
            sched = max(sched, step / planned)
            if tc.max_minutes is not None:
                sched = max(sched, (time.monotonic() - t0) / (60 * tc.max_minutes))
            beta = beta_schedule(sched, config.loss)
            # cosine learning-rate decay on the same progress: late steps refine instead of jitter
            lr = tc.lr * (tc.lr_final_fraction + (1 - tc.lr_final_fraction) * 0.5 * (1 + math.cos(math.pi * min(sched, 1.0))))
            for group in optim.param_groups:
                group["lr"] = lr
            targets = moment_targets(images, config.loss) if moments_on else None
            with autocast:
                out_ = net(images)
            last = codae_loss(out_, images, targets, beta, config.loss, learn_centroid=config.model.learn_centroid)
            optim.zero_grad(set_to_none=True)
            last.total.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
            optim.step()
            step += 1
            batch_in_epoch += 1
            seen += images.shape[0] * world
            if step % tc.log_every == 0 or step == planned:
                now = time.monotonic()
                rate = (step - last_step) * tc.batch_size * world / max(now - last_t, 1e-9)
                last_t, last_step = now, step
                rows.append(_row(step, epoch + batch_in_epoch / max(steps_per_epoch, 1), now - t0, rate, last,
                                 optim.param_groups[0]["lr"]))
                if progress and rank == 0:
                    print(f"train: step {step}/{planned} epoch {epoch + 1}/{tc.max_epochs} | {rate:.1f} img/s | "
                          f"loss {last.total.item():.5f} recon {last.reconstruction.item():.5f} "
                          f"centroid {last.centroid.item():.2e} orient {last.orientation.item():.2e} "
                          f"aligned {last.aligned.item():.2e} beta {beta:.3f}",
                          file=sys.stderr, flush=True)
            out_of_time = tc.max_minutes is not None and (time.monotonic() - t0) > 60 * tc.max_minutes
            if step % tc.checkpoint_every == 0 or out_of_time or step == stop_after_steps:
                checkpoint()
            if out_of_time or step == stop_after_steps or step >= planned:
                stopped_early = step < planned
                break
        else:
            epoch, batch_in_epoch = epoch + 1, 0
            continue
        if batch_in_epoch >= steps_per_epoch:
            epoch, batch_in_epoch = epoch + 1, 0
        if stopped_early or step >= planned:
            break
    elapsed = time.monotonic() - t0
    checkpoint()
    if rank == 0 and step != stop_after_steps:  # a time-budget stop is a finished run; a simulated kill is not
        from pipeline.figures import training_figures

        training_figures(model, dataset, out / "figures", rows, device=device)
    return TrainResult(run_dir=out, checkpoint=ckpt_path, steps=step, epochs_completed=step / max(steps_per_epoch, 1),
                       stopped_early=stopped_early,
                       final_loss=float(last.total.item()) if last is not None else math.nan,
                       images_per_s=seen / elapsed if elapsed > 0 else 0.0, rank=rank, world_size=world,
                       model=model)


def _row(step: int, epoch: float, elapsed: float, rate: float, terms, lr: float) -> dict:
    return {"step": step, "epoch": round(epoch, 4), "elapsed_s": round(elapsed, 3), "images_per_s": round(rate, 2),
            "beta": terms.beta, "loss": float(terms.total.item()), "reconstruction": float(terms.reconstruction.item()),
            "centroid": float(terms.centroid.item()), "orientation": float(terms.orientation.item()), "aligned": float(terms.aligned.item()),
            "regularizer": float(terms.regularizer.item()), "lr": lr}


def _write_metrics(path: Path, rows: list[dict]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=METRIC_FIELDS)
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)
