"""The evaluation behind ``galaxy-codae evaluate``: for each model, train or load, score, report.

For every model kind and seed: train within a wall-clock budget or take a given checkpoint
(:func:`pipeline.evaluate.training.train_or_load`), encode the evaluation images and score the
codes with and without the pose factors (:mod:`pipeline.evaluate.scoring`), measure the
alignment of the best seed's reconstructions (:mod:`pipeline.evaluate.alignment`), and write
into ``OUT`` (:mod:`pipeline.evaluate.report`):

``metrics_runs.csv``      one row per (model, seed, setting): every metric, ``mean`` of the eight
``metrics_summary.csv``   per (model, setting): the best seed's scores (best = highest ``mean``
                          *with* pose factors, as the paper picks its seed) and mean / std over seeds
``metrics.md``            the same as markdown tables (best and mean +- std)
``pearson_<kind>.csv``    Pearson r of each latent with named quantities, labels (``unnamed`` < 0.5)
``pearson.md``            all of them as markdown
``alignment.csv``         per model and shape: circular spread (degrees) of the orientation of the
                          aligned reconstructions (from the shape's strongest harmonic: the
                          moment axis, or order 3 for triangles, 4 for squares), their mean
                          moment anisotropy and shape harmonics of orders 3 and 4, and those of
                          the input images (``input_*``; see :func:`shapes_drawn`)
``figures/<kind>_aligned.png``     input / same view / aligned reconstructions (best seed)
``figures/<kind>_traversals.png``  latent traversals (best seed)
``runs/<kind>/seed<k>/``  each training run (checkpoint, config, metrics.csv, figures)

Datasets and their factors: :mod:`pipeline.evaluate.datasets`.  Models train and are scored on the
same images (as in the paper); ``n_eval`` of them, spread evenly, are scored.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from catalogs import atomic
from pipeline.config import ModelConfig, TrainConfig
from pipeline.data.memory import ArrayDataset
from pipeline.data.pixels import to_unit_float
from pipeline.errors import BadInputError, ConfigError
from pipeline.evaluate.alignment import alignment_rows, orientation_spread
from pipeline.evaluate.datasets import EvalData
from pipeline.evaluate.report import draw_figures, write_tables
from pipeline.evaluate.scoring import encode, pearson, score
from pipeline.evaluate.training import model_config_for, train_or_load

__all__ = ["EVALUATION_KIND", "EvaluationResult", "evaluate"]

#: The ownership kind (:func:`catalogs.atomic.mark_owned`) of an evaluation folder: --overwrite replaces only such a folder.
EVALUATION_KIND = "evaluation"


@dataclass
class EvaluationResult:
    """What :func:`evaluate` wrote and the tables it holds in memory."""

    out: Path
    runs: pd.DataFrame  # one row per (model, seed, setting)
    summary: pd.DataFrame  # best and mean/std per (model, setting)
    alignment: pd.DataFrame
    pearson: dict[str, pd.DataFrame] = field(default_factory=dict)


def _parse_checkpoints(spec: dict[str, Path] | None, kinds: Sequence[str]) -> dict[str, Path]:
    spec = dict(spec or {})
    unknown = sorted(set(spec) - set(kinds))
    if unknown:
        raise ConfigError(f"--checkpoints names models {unknown} that are not in --models {list(kinds)}")
    return spec


def evaluate(data: EvalData, kinds: Sequence[str], out: str | Path, *, seeds: int = 1, first_seed: int = 0,
             budget_minutes: float = 5.0,
             n_eval: int = 2000, checkpoints: dict[str, Path] | None = None, latent_dim: int | None = None,
             base_model: ModelConfig | None = None, base_train: TrainConfig | None = None,
             overwrite: bool = False, progress: bool = True) -> EvaluationResult:
    """Train (or load) every model of ``kinds`` for ``seeds`` seeds (``first_seed``, ``first_seed + 1``,
    ...; a later study can add seeds without repeating the first ones) and write the tables and figures.

    ``budget_minutes`` is each training run's ``TrainConfig.max_minutes`` (per model and seed; a
    short speed calibration comes on top).  ``checkpoints`` maps a kind to
    a checkpoint that replaces training for that kind (scored as one seed).  ``base_model`` and
    ``base_train`` give the architecture and optimisation defaults (sizes, batch size, lr).
    Refuses an ``out`` that already holds results unless ``overwrite``.
    """
    from pipeline.model import MODEL_KINDS

    out = Path(out)
    unknown = [k for k in kinds if k not in MODEL_KINDS]
    if unknown or not kinds:
        raise ConfigError(f"unknown models {unknown or '(none given)'}; choose from {', '.join(MODEL_KINDS)}")
    if seeds < 1 or first_seed < 0 or budget_minutes <= 0:
        raise ConfigError("--seeds must be >= 1, --first-seed >= 0 and --budget-minutes > 0")
    ckpts = _parse_checkpoints(checkpoints, kinds)
    if (out / "metrics_runs.csv").exists() or (out / "pearson.md").exists():
        if not overwrite:
            raise BadInputError(f"{out} already holds evaluation results; choose another --out or pass --overwrite")
        atomic.remove_owned(out, kinds=(EVALUATION_KIND,), error=BadInputError)  # only a folder evaluate wrote
    (out / "figures").mkdir(parents=True, exist_ok=True)
    dataset = ArrayDataset(data.images)
    idx = np.unique(np.linspace(0, len(dataset) - 1, min(n_eval, len(dataset))).astype(np.int64))
    eval_images = data.images[idx]
    labels = data.shapes[idx] if data.shapes is not None else None
    inputs = orientation_spread(to_unit_float(eval_images), labels).set_index("label")
    train_base = base_train or TrainConfig(batch_size=32, log_every=20, checkpoint_every=1_000_000)
    run_rows: list[dict] = []
    align_rows: list[pd.DataFrame] = []
    tables: dict[str, pd.DataFrame] = {}
    for kind in kinds:
        mcfg = model_config_for(kind, data, latent_dim=latent_dim, base=base_model)
        best, best_mean = None, -math.inf
        for s in [None] if kind in ckpts else range(first_seed, first_seed + seeds):
            trained = train_or_load(kind, s, data, dataset, out / "runs" / kind / f"seed{s}", model_config=mcfg,
                                    train_base=train_base, budget_minutes=budget_minutes,
                                    checkpoint=ckpts.get(kind), progress=progress)
            codes = encode(trained.model, eval_images)
            has_pose = bool(getattr(trained.model, "has_pose", True))
            mean = 0.0
            if data.factors is not None:
                rows = score(data, codes, has_pose, idx, seed=0)
                run_rows += [{"model": kind, "seed": trained.seed, "steps": trained.steps,
                              "train_minutes": round(trained.minutes, 3), **r} for r in rows]
                mean = rows[0]["mean"]
            if best is None or mean > best_mean:
                best, best_mean, best_codes, best_pose = trained, mean, codes, has_pose
        draw_figures(best.model, eval_images, out, kind)
        align_rows.append(alignment_rows(best.model, eval_images, labels, inputs, kind=kind, seed=best.seed))
        tables[kind] = pearson(best_codes, data, idx, has_pose=best_pose)
    runs, alignment = pd.DataFrame(run_rows), pd.concat(align_rows, ignore_index=True)
    summary = write_tables(out, data.name, runs, alignment, tables, settings={
        "dataset": data.name, "models": list(kinds), "seeds": seeds, "first_seed": first_seed,
        "budget_minutes": budget_minutes, "n_images": len(dataset), "n_eval": int(len(idx)),
        "checkpoints": {k: str(v) for k, v in ckpts.items()}})
    atomic.mark_owned(out, EVALUATION_KIND)  # what it holds now: --overwrite may replace exactly this
    return EvaluationResult(out=out, runs=runs, summary=summary, alignment=alignment, pearson=tables)
