"""What changes over a training run: the moment-loss weight beta(t) and the learning rate.

Both are functions of the run's *progress* in [0, 1] (planned steps done, or the share of the
time budget spent when that ends first), so a run cut short by ``--max-minutes`` still finishes
its decays.

Learning rate for larger batches (``train.lr_scaling``): the peak rate is
``lr x (effective batch / lr_reference_batch) ** p`` with ``p = 1`` (``linear``; Goyal et al.
2017, for SGD) or ``p = 1/2`` (``sqrt``; the rule for Adam, Malladi et al. 2022, "On the SDEs and
scaling rules for adaptive gradient algorithms"), reached by a linear warm-up over
``warmup_steps`` optimiser steps, then decayed by a cosine to ``lr_final_fraction`` of the peak.
The trainer uses Adam, so ``sqrt`` with a few hundred warm-up steps is the rule to use when the
batch grows; ``none`` (the default) keeps ``lr`` whatever the batch.
"""

from __future__ import annotations

import math

from pipeline.config import LossConfig, TrainConfig

__all__ = ["beta_schedule", "peak_learning_rate", "learning_rate"]


def beta_schedule(progress: float, cfg: LossConfig) -> float:
    """Moment-loss weight at training ``progress`` in [0, 1]: cosine decay from beta_start to
    beta_end over the first ``beta_decay_fraction`` of training, then constant at beta_end."""
    if cfg.beta_decay_fraction <= 0 or progress >= cfg.beta_decay_fraction:
        return cfg.beta_end
    frac = max(progress, 0.0) / cfg.beta_decay_fraction
    return cfg.beta_end + 0.5 * (cfg.beta_start - cfg.beta_end) * (1.0 + math.cos(math.pi * frac))


def peak_learning_rate(tc: TrainConfig, effective_batch: int) -> float:
    """``tc.lr`` scaled for ``effective_batch`` images per step (all processes) by ``tc.lr_scaling``."""
    if tc.lr_scaling == "none":
        return tc.lr
    ratio = effective_batch / tc.lr_reference_batch
    return tc.lr * (ratio if tc.lr_scaling == "linear" else math.sqrt(ratio))


def learning_rate(progress: float, step: int, tc: TrainConfig, effective_batch: int) -> float:
    """Learning rate of optimiser step ``step`` (0-based) at training ``progress`` in [0, 1].

    Linear warm-up to the peak over ``tc.warmup_steps`` steps, times a cosine decay on the
    progress from 1 to ``tc.lr_final_fraction``: late steps refine instead of jitter.
    """
    f = tc.lr_final_fraction
    lr = peak_learning_rate(tc, effective_batch) * (f + (1 - f) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))
    if tc.warmup_steps > 0 and step < tc.warmup_steps:
        lr = lr * (step + 1) / tc.warmup_steps
    return lr
