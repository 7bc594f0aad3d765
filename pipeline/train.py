"""The CODAE training loop: one plain function, :func:`train`.

Reads images from a Zarr store (or any dataset of ``(image, index)`` items), writes
into the run directory ``RUN/``: ``checkpoint.pt`` (atomic, every
``checkpoint_every`` steps and at the end), ``config.yaml``, ``run_info.yaml``,
``metrics.csv`` and ``figures/*.png``.  Seeded: the order of the samples in epoch ``e`` is a
permutation drawn from ``seed + e``, so a run stopped and resumed visits the same batches as an
unbroken run and, on CPU, ends with the same weights.  Set-up (processes, device, data, model,
optimiser, resumed state) is :func:`pipeline.train_setup.set_up_run`; the schedules of beta and
the learning rate are :mod:`pipeline.schedules`.

Batches come from a ``DataLoader``, or, with ``train.data_on_device``, from the whole image
array held on the device (:mod:`pipeline.data.on_device`; the same batches).  Loss terms are
summed on the device and read back once per ``log_every`` steps: a ``metrics.csv`` row holds
their means over the steps since the previous row, and the loop waits for the device only then.
"""

from __future__ import annotations

import csv
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from catalogs import atomic
from pipeline import __version__
from pipeline.checkpoint import save_checkpoint
from pipeline.compiled import compile_parts, fall_back, uncompile
from pipeline.config import RunConfig
from pipeline.loss import codae_loss, moment_targets
from pipeline.model import model_state_dict
from pipeline.progress import Progress
from pipeline.schedules import beta_schedule, learning_rate
from pipeline.train_setup import EpochSampler, distributed_from_environment, open_training_data, set_up_run

__all__ = ["TrainResult", "train", "open_training_data", "distributed_from_environment"]

#: Columns of metrics.csv.  The loss terms are means over the steps since the previous row; beta
#: and lr are those of the row's step.
METRIC_FIELDS = ["step", "epoch", "elapsed_s", "images_per_s", "beta", "loss", "reconstruction", "centroid",
                 "orientation", "aligned", "regularizer", "direction", "lr"]
TERMS = METRIC_FIELDS[5:12]  # the loss terms summed on the device, in this order


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


def train(config: RunConfig, source: str | Path | Dataset, out: str | Path, *, resume: bool = False,
          progress: bool | Callable[[str], None] = True, stop_after_steps: int | None = None) -> TrainResult:
    """Train CODAE on ``source`` into the run directory ``out``.

    ``resume=True`` continues from ``out/checkpoint.pt`` (its model and loss config must match
    ``config``; training budgets may change).  ``stop_after_steps`` ends the process early with a
    checkpoint, as a kill would (tests use it to check that resuming is exact).  ``progress``: a bar
    or log lines on stderr (True), the same lines passed to a callable (a logger), or nothing
    (:class:`pipeline.progress.Progress`); the time left counts against ``train.max_minutes`` too.
    """
    # the set-up (store check, model build) first, so a refusal is the first line on stderr; it takes seconds
    run = set_up_run(config, source, out, resume=resume, progress=bool(progress))
    tc, out = config.train, run.out
    budget_s = None if tc.max_minutes is None else 60 * tc.max_minutes
    bar = Progress("train", None, unit="steps", sink=progress if os.environ.get("RANK", "0") == "0" else False,
                   budget_s=budget_s)  # rank 0 only
    model, net, optim, device, rank, world = run.model, run.net, run.optim, run.device, run.rank, run.world
    planned, steps_per_epoch = run.planned, run.steps_per_epoch
    step, epoch, batch_in_epoch, rows, sched = run.step, run.epoch, run.batch_in_epoch, run.rows, run.schedule_progress
    log_sum, log_count = run.log_sum, run.log_count
    moments_on = getattr(model, "uses_moment_loss", True)
    compiled = compile_parts(model) if tc.compile else []
    bar.set_total(planned, done=step)

    def checkpoint() -> None:
        if rank != 0:
            return
        save_checkpoint({"software_version": __version__, "config": config.to_dict(),
                         "model": {k: v.cpu() for k, v in model_state_dict(model).items()},
                         "optimizer": optim.state_dict(), "step": step, "epoch": epoch,
                         "batch_in_epoch": batch_in_epoch, "torch_rng": torch.get_rng_state(),
                         "metrics_rows": rows, "store": run.data_desc, "schedule_progress": sched,
                         "log_sum": None if log_sum is None else log_sum.cpu(), "log_count": log_count,
                         "effective_batch_size": run.effective_batch, "world_size": world}, run.checkpoint_path)
        _write_metrics(out / "metrics.csv", rows)

    def batches(epoch: int, skip: int):
        sampler = EpochSampler(len(run.dataset), tc.seed, epoch, rank, world, skip, tc.batch_size)
        if run.device_images is not None:
            return run.device_images.batches(sampler.indices, tc.batch_size)
        return DataLoader(run.dataset, batch_size=tc.batch_size, sampler=sampler, num_workers=tc.num_workers,
                          pin_memory=run.pin, drop_last=True, persistent_workers=False)

    def forward_backward(images: torch.Tensor, beta: float):
        targets = moment_targets(images, config.loss) if moments_on else None
        with run.autocast:
            out_ = net(images)
        terms = codae_loss(out_, images, targets, beta, config.loss, learn_centroid=config.model.learn_centroid)
        optim.zero_grad(set_to_none=True)
        terms.total.backward()
        return terms

    t0 = time.monotonic()
    last_t, last_step, seen = t0, step, 0
    stopped_early = False
    last = None
    while step < planned:
        net.train()
        for images, _keys in batches(epoch, batch_in_epoch):
            images = images.to(device, non_blocking=run.pin)
            # Progress through the schedules: by steps, or by the time budget when that ends first
            # (so a --max-minutes run still decays beta); never moves backwards across a resume.
            sched = max(sched, step / planned)
            if tc.max_minutes is not None:
                sched = max(sched, (time.monotonic() - t0) / (60 * tc.max_minutes))
            beta = beta_schedule(sched, config.loss)
            lr = learning_rate(sched, step, tc, run.effective_batch)
            for group in optim.param_groups:
                group["lr"] = lr
            try:
                last = forward_backward(images, beta)
            except Exception as e:  # a compiled part fails at its first use (compilation is lazy)
                if not compiled:
                    raise
                compiled = fall_back(model, compiled, e)
                last = forward_backward(images, beta)
            torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
            optim.step()
            terms = torch.stack([getattr(last, name).detach().float() for name in ("total", *TERMS[1:])])
            log_sum, log_count = (terms if log_sum is None else log_sum + terms), log_count + 1
            step += 1
            batch_in_epoch += 1
            seen += images.shape[0] * world
            bar.update(1)
            if step % tc.log_every == 0 or step == planned:
                means = (log_sum / log_count).tolist()  # the one wait for the device in a logging step
                log_sum, log_count = None, 0
                now = time.monotonic()
                rate = (step - last_step) * tc.batch_size * world / max(now - last_t, 1e-9)
                last_t, last_step = now, step
                rows.append(_row(step, epoch + batch_in_epoch / max(steps_per_epoch, 1), now - t0, rate, last.beta,
                                 means, optim.param_groups[0]["lr"]))
                m = dict(zip(TERMS, means))
                bar.update(0, epoch=f"{epoch + 1}/{tc.max_epochs}", img_s=round(rate, 1), loss=m["loss"],
                           recon=m["reconstruction"], centroid=m["centroid"], orient=m["orientation"],
                           aligned=m["aligned"], beta=round(last.beta, 3))  # 0 for models without the prior
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
    bar.close()
    uncompile(model, compiled)  # figures and the returned model run eagerly (other batch sizes, eval mode)
    checkpoint()
    if rank == 0 and step != stop_after_steps:  # a time-budget stop is a finished run; a simulated kill is not
        from pipeline.figures import training_figures

        training_figures(model, run.dataset, out / "figures", rows, device=device)
    return TrainResult(run_dir=out, checkpoint=run.checkpoint_path, steps=step,
                       epochs_completed=step / max(steps_per_epoch, 1), stopped_early=stopped_early,
                       final_loss=float(last.total.item()) if last is not None else math.nan,
                       images_per_s=seen / elapsed if elapsed > 0 else 0.0, rank=rank, world_size=world,
                       model=model)


def _row(step: int, epoch: float, elapsed: float, rate: float, beta: float, means: list[float], lr: float) -> dict:
    return {"step": step, "epoch": round(epoch, 4), "elapsed_s": round(elapsed, 3), "images_per_s": round(rate, 2),
            "beta": beta, **dict(zip(TERMS, means)), "lr": lr}


def _write_metrics(path: Path, rows: list[dict]) -> None:
    with atomic.atomic_open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=METRIC_FIELDS)
        w.writeheader()
        w.writerows(rows)
