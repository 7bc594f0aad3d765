"""Each model of an evaluation: its configuration for the data, and a run that fits the time budget
(or a checkpoint given instead): :func:`train_or_load`."""

from __future__ import annotations

import shutil
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from pipeline.config import LossConfig, ModelConfig, RunConfig, TrainConfig
from pipeline.data.memory import ArrayDataset
from pipeline.errors import BadInputError
from pipeline.evaluate.datasets import POSE_FACTORS, EvalData

__all__ = ["NO_POSE_KINDS", "KL_WEIGHT", "CALIBRATION_STEPS", "TrainedModel", "model_config_for",
           "train_within_budget", "train_or_load"]

#: Kinds whose ``z`` is the whole code (no explicit pose).
NO_POSE_KINDS = ("beta-vae", "dae")
#: KL weight per kind: beta = 4 for beta-VAE (Higgins et al. on dSprites), 1 for the other VAEs.
KL_WEIGHT = {"beta-vae": 4.0, "spatial-vae": 1.0, "target-vae": 1.0}
#: Optimiser steps of the speed calibration that precedes each budgeted training run.
CALIBRATION_STEPS = 10


@dataclass(frozen=True)
class TrainedModel:
    """A model ready to score (eval mode), its seed, optimiser steps and training minutes (0 when loaded)."""

    model: torch.nn.Module
    seed: int
    steps: int
    minutes: float


def model_config_for(kind: str, data: EvalData, *, latent_dim: int | None = None,
                     base: ModelConfig | None = None) -> ModelConfig:
    """The model configuration used for ``kind`` on ``data``.

    Content latents: the number of non-pose factors for models with pose and the number of all
    factors for beta-VAE and DAE, so that every model has a code of the same size (the paper's
    choice: 2 and 5 on dSprites); ``latent_dim`` (the content size) overrides, and is 4 without
    ground truth (the paper's size for diffraction).
    """
    base = base or ModelConfig()
    if latent_dim is None:
        latent_dim = len(data.factor_names) - len(POSE_FACTORS) if data.factors is not None else 4
    if kind in NO_POSE_KINDS:
        latent_dim += 3 if data.learn_centroid else 1
    # the group-axis read-out gives the order-2 axis and a direction; shapes anchored to orders 3 and 4
    # (triangles, squares) and centre-of-mass priors are read by the dense layers
    readout = "equivariant" if (data.orientation_prior, tuple(data.orientation_orders)) == ("moments", (2,)) \
        else "dense"
    changes = {"kind": kind, "image_size": data.size, "channels": data.channels, "latent_dim": max(1, latent_dim),
               "learn_centroid": data.learn_centroid, "kl_weight": KL_WEIGHT.get(kind, base.kl_weight),
               "pose_readout": readout}
    return replace(base, **changes)


def train_within_budget(config: RunConfig, dataset: ArrayDataset, run_dir: Path, *, budget_minutes: float,
                         progress: bool) -> tuple[Path, int, float]:
    """Train into ``run_dir`` so that the run (and CODAE's beta schedule) fits ``budget_minutes``.

    The trainer plans its moment-loss decay on the planned number of steps, so a bare wall-clock
    stop would leave beta high.  A ``CALIBRATION_STEPS``-step calibration run (on top of the
    budget) measures the speed from its steps 3 to the last (the first steps carry one-off
    costs; a two-step calibration under-estimates the speed by a fifth and leaves a quarter of the
    budget unused); the real run then plans ``0.92 x budget x rate`` steps, with
    ``max_minutes = budget`` as the hard stop.
    Returns (checkpoint, steps, minutes of the real run).
    """
    from pipeline.checkpoint import load_checkpoint
    from pipeline.train import train

    per_epoch = max(1, len(dataset) // config.train.batch_size)
    calib_dir = run_dir.with_name(run_dir.name + ".calibration")
    if calib_dir.exists():
        shutil.rmtree(calib_dir)
    calib = train(config.replace(train={"max_steps": None, "max_epochs": 100_000, "max_minutes": None,
                                        "log_every": 1}), dataset, calib_dir, progress=False,
                  stop_after_steps=CALIBRATION_STEPS)
    rows = load_checkpoint(calib_dir / "checkpoint.pt")["metrics_rows"]
    shutil.rmtree(calib_dir, ignore_errors=True)
    if len(rows) >= CALIBRATION_STEPS and rows[-1]["elapsed_s"] > rows[1]["elapsed_s"]:
        rate = (len(rows) - 2) * config.train.batch_size / (rows[-1]["elapsed_s"] - rows[1]["elapsed_s"])
    else:
        rate = max(calib.images_per_s, 1e-3)
    steps = max(1, int(0.92 * budget_minutes * 60.0 * rate / config.train.batch_size))
    cfg = config.replace(train={"max_steps": steps, "max_epochs": steps // per_epoch + 1,
                                "max_minutes": budget_minutes})
    t0 = time.monotonic()
    res = train(cfg, dataset, run_dir, progress=progress)
    return res.checkpoint, res.steps, (time.monotonic() - t0) / 60.0


def train_or_load(kind: str, seed: int | None, data: EvalData, dataset: ArrayDataset, run_dir: Path, *,
                  model_config: ModelConfig, train_base: TrainConfig, budget_minutes: float,
                  checkpoint: Path | None = None, progress: bool = True) -> TrainedModel:
    """Train ``kind`` with ``seed`` into ``run_dir`` within the budget, or load ``checkpoint`` (its seed
    and steps then come from it); the checkpoint's model must be of ``kind``."""
    from pipeline.checkpoint import load_model

    steps, minutes = -1, 0.0
    if checkpoint is None:
        loss = LossConfig(reconstruction=data.reconstruction, orientation_prior=data.orientation_prior,
                          orientation_orders=data.orientation_orders)
        cfg = RunConfig(model=model_config, loss=loss, train=replace(train_base, seed=seed))
        if progress:
            print(f"evaluate: training {kind} seed {seed} for up to {budget_minutes:g} min", file=sys.stderr,
                  flush=True)
        checkpoint, steps, minutes = train_within_budget(cfg, dataset, run_dir, budget_minutes=budget_minutes,
                                                         progress=progress)
    model, state = load_model(checkpoint)
    if state["config"].model.kind != kind:
        raise BadInputError(f"{checkpoint}: checkpoint is a {state['config'].model.kind!r} model, not {kind!r}")
    if seed is None:
        seed, steps = int(state["config"].train.seed), int(state["step"])
    return TrainedModel(model=model, seed=seed, steps=steps, minutes=minutes)
