"""Everything a training run needs before its first step: processes, device, data, model,
optimiser, the resumed state and the run directory.  :func:`pipeline.train.train` is the loop.

Under ``torchrun`` (``torch.distributed`` initialised) each rank takes every ``world``-th sample
of the epoch's permutation (:class:`EpochSampler`); rank 0 alone writes files.
"""

from __future__ import annotations

import os
import sys
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch.utils.data import Dataset

from catalogs import atomic
from pipeline import __version__
from pipeline.checkpoint import check_resume, load_checkpoint
from pipeline.config import RunConfig, save_config
from pipeline.data.on_device import DeviceImages, use_data_on_device
from pipeline.device import pick_device, set_cpu_threads
from pipeline.errors import BadInputError, ConfigError
from pipeline.model import build_model, load_model_state
from pipeline.model.batchnorm import sync_batch_norm
from pipeline.schedules import peak_learning_rate

__all__ = ["EpochSampler", "RunSetup", "set_up_run", "open_training_data", "distributed_from_environment",
           "dist_info"]


class EpochSampler(torch.utils.data.Sampler[int]):
    """This rank's share of epoch ``epoch``'s permutation, from batch ``skip`` on, whole batches only.

    The permutation is drawn from ``seed`` and ``epoch`` alone, so a run stopped and resumed
    visits the same batches as an unbroken run.
    """

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


def dist_info() -> tuple[int, int]:
    """(rank, world size) of this process; (0, 1) outside torchrun."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _check_data(dataset: Dataset, cfg: RunConfig) -> None:
    img, _ = dataset[0]
    want = (cfg.model.channels, cfg.model.image_size, cfg.model.image_size)
    if tuple(img.shape) != want:
        c, h, _ = img.shape
        raise ConfigError(f"the data hold {c} x {h} x {h} images (C, H, W), the model is configured for "
                          f"{want[0]} x {want[1]} x {want[2]}: give --config a file with model.image_size: {h} and "
                          f"model.channels: {c} (galaxy-codae config --show-defaults writes one), or ingest the "
                          f"survey again with --image-size {want[1]}")
    if len(dataset) < cfg.train.batch_size:
        raise BadInputError(f"only {len(dataset)} images, fewer than one batch of {cfg.train.batch_size}")


@dataclass
class RunSetup:
    """A run ready for its next step (the first, or the one after a resumed checkpoint)."""

    out: Path
    checkpoint_path: Path
    rank: int
    world: int
    device: torch.device
    dataset: Dataset
    data_desc: dict
    device_images: DeviceImages | None  # the dataset's pixels on the device, or None: a DataLoader feeds
    steps_per_epoch: int
    planned: int  # optimiser steps the schedules are planned on
    effective_batch: int  # images per optimiser step over all processes
    model: torch.nn.Module  # the model itself (checkpoints, figures)
    net: torch.nn.Module  # what the loop calls: the model, or its DistributedDataParallel wrapper
    optim: torch.optim.Optimizer
    autocast: AbstractContextManager
    pin: bool  # DataLoader batches in pinned host memory
    # resumed state (zeros and empty for a new run)
    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    rows: list | None = None
    schedule_progress: float = 0.0
    log_sum: torch.Tensor | None = None  # loss terms summed on the device since the last metrics row
    log_count: int = 0


def set_up_run(config: RunConfig, source: str | Path | Dataset, out: str | Path, *, resume: bool = False,
               progress: bool = True) -> RunSetup:
    """Check, build and (with ``resume``) restore everything the loop needs; rank 0 writes
    ``config.yaml`` and ``run_info.yaml`` into ``out``."""
    out = Path(out)
    rank, world = dist_info()
    ckpt_path = out / "checkpoint.pt"
    state = None
    if resume:
        state = load_checkpoint(ckpt_path)
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
    if state is not None:
        try:
            check_resume(state, config, world_size=world, data=data_desc)
        except ConfigError as e:
            raise ConfigError(f"{ckpt_path}: cannot resume: {e}") from None
    _check_data(dataset, config)
    steps_per_epoch = (len(dataset) // world) // tc.batch_size
    planned = steps_per_epoch * tc.max_epochs
    if tc.max_steps is not None:
        planned = min(planned, tc.max_steps)
    on_device, why = use_data_on_device(tc.data_on_device, dataset, device)
    device_images = DeviceImages.from_dataset(dataset, device) if on_device else None
    if progress and rank == 0 and (on_device or device.type == "cuda"):
        where = f"held on {device}" if on_device else "read through a DataLoader"
        print(f"train: images {where} ({why})", file=sys.stderr, flush=True)

    model = build_model(config.model).to(device)
    if world > 1:
        # Batch-norm statistics over the global batch, so every rank normalises alike and keeps the
        # same running statistics: every batch norm all-reduces its sums (gloo on CPU, NCCL on CUDA).
        sync_batch_norm(model)
    effective_batch = tc.batch_size * world
    # fused Adam on CUDA: the per-parameter loop was 35 % of a step's GPU time (H200, benchmarks/gpu.py)
    optim = torch.optim.Adam(model.parameters(), lr=peak_learning_rate(tc, effective_batch),
                             weight_decay=tc.weight_decay, fused=device.type == "cuda")
    run = RunSetup(out=out, checkpoint_path=ckpt_path, rank=rank, world=world, device=device, dataset=dataset,
                   data_desc=data_desc, device_images=device_images, steps_per_epoch=steps_per_epoch,
                   planned=planned, effective_batch=effective_batch, model=model, net=model, optim=optim,
                   # bf16 autocast on CUDA: tensor cores, no loss scaling needed; CPU stays float32 for exactness
                   autocast=torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext(),
                   # pinned host memory lets copies overlap compute on CUDA only
                   pin=device.type == "cuda" and device_images is None, rows=[])
    if state is not None:
        load_model_state(model, {k: v.to(device) for k, v in state["model"].items()})
        optim.load_state_dict(state["optimizer"])
        run.step, run.epoch, run.batch_in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]
        run.rows = list(state.get("metrics_rows", []))
        run.schedule_progress = float(state.get("schedule_progress", 0.0))
        if state.get("log_sum") is not None:
            run.log_sum, run.log_count = state["log_sum"].to(device), int(state["log_count"])
        torch.set_rng_state(state["torch_rng"])
    if world > 1:
        run.net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    if rank == 0:
        _write_run_files(run, config)
    return run


def _write_run_files(run: RunSetup, config: RunConfig) -> None:
    import yaml

    tc = config.train
    run.out.mkdir(parents=True, exist_ok=True)
    (run.out / "figures").mkdir(exist_ok=True)
    save_config(config, run.out / "config.yaml")
    info = {"software_version": __version__, "world_size": run.world, "device": str(run.device),
            "batch_size_per_process": tc.batch_size, "effective_batch_size": run.effective_batch,
            "learning_rate": peak_learning_rate(tc, run.effective_batch), "lr_scaling": tc.lr_scaling,
            "warmup_steps": tc.warmup_steps, "data_on_device": run.device_images is not None,
            "planned_steps": run.planned, "steps_per_epoch": run.steps_per_epoch, "data": run.data_desc}
    atomic.write_text(run.out / "run_info.yaml", yaml.safe_dump(info, sort_keys=False))
