"""One shard of an inference: the model over store objects ``[start, stop)``, written as one part file.

A part is ``parts/part-<k>.npz`` (written atomically: temporary name, fsync, rename) holding
every column keyed by ``id`` (:mod:`pipeline.infer.columns`), the image properties of
:func:`pipeline.latent_labels.measure_images` (``prop_<name>``, same background ring and sigma)
that the merge correlates with the latents, and ``start``, ``stop``, ``checkpoint_sha256``,
``device`` and ``exported``.  An existing, readable part made with the same checkpoint is
reused, not recomputed.  The ensemble's noise is seeded per object (:data:`ERROR_SEED` plus the
object's index in the store), so a catalogue is the same for any batch size and number of workers.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from catalogs import atomic
from pipeline.errors import BadInputError
from pipeline.ids import as_str_ids
from pipeline.infer.columns import shard_columns
from pipeline.infer.model import load_inference_model, to_device
from pipeline.infer.plan import InferencePlan, read_plan
from pipeline.latent_labels import PROPERTIES

if TYPE_CHECKING:
    from pipeline.predict import Predictions

__all__ = ["ERROR_SEED", "infer_shard"]

#: seed of the ensemble's noise (plus the object's index in the store).
ERROR_SEED: int = 20_260_000


def _part_ok(path: Path, plan: InferencePlan, start: int, stop: int) -> bool:
    try:
        with np.load(path, allow_pickle=False) as z:
            return (str(z["checkpoint_sha256"]) == plan.checkpoint_sha256 and int(z["start"]) == start
                    and int(z["stop"]) == stop and len(z["id"]) == stop - start and "pa_err_deg" in z
                    and "direction_snr" in z
                    and all(f"prop_{k}" in z for k in PROPERTIES))
    except (OSError, ValueError, KeyError, EOFError):
        return False


def _predict(model, images: np.ndarray, plan: InferencePlan, start: int, scale: float,
             dev) -> tuple[Predictions, dict[str, np.ndarray]]:
    """The model's predictions and the image properties of ``images`` (store objects from ``start``), by batch."""
    import torch

    from pipeline.latent_labels import measure_images
    from pipeline.predict import concat, predict_batch

    preds, props = [], []
    with torch.inference_mode():
        for a in range(0, len(images), plan.batch_size):
            batch = to_device(images[a:a + plan.batch_size], scale, dev)
            # the ensemble's noise is seeded per object: the same for any batch size or worker count
            seeds = ERROR_SEED + start + a + np.arange(len(batch))
            preds.append(predict_batch(model, batch, background_ring=plan.background_ring,
                                       background_sigma=plan.background_sigma, error_samples=plan.error_samples,
                                       error_seeds=seeds))
            props.append(measure_images(batch, ring=plan.background_ring, k_sigma=plan.background_sigma))
    return concat(preds), {k: np.concatenate([b[k] for b in props]) for k in PROPERTIES}


def infer_shard(work_dir: str | os.PathLike, shard_index: int) -> Path:
    """Run the model on one store shard and write its part file atomically; return the part's path.

    A part is an ``.npz`` of per-object arrays keyed by ``id`` (store frame converted to the
    cutout frame, see :mod:`pipeline.infer.columns`), plus ``start``, ``stop``, ``checkpoint_sha256``
    and ``device``.  An existing readable part of the same checkpoint is reused as it is.
    """
    from pipeline.data.store import open_store

    plan = read_plan(work_dir)
    if not 0 <= shard_index < len(plan.shard_ranges):
        raise BadInputError(f"shard {shard_index} out of range [0, {len(plan.shard_ranges)})")
    start, stop = plan.shard_ranges[shard_index]
    out = plan.part_path(shard_index)
    if out.is_file() and _part_ok(out, plan, start, stop):
        return out

    model, exported, _ = load_inference_model(plan.checkpoint, device=plan.device, sha256=plan.checkpoint_sha256)
    dev = next(model.parameters()).device
    st = open_store(plan.store)
    if st.info.n_objects != plan.n_objects:
        raise BadInputError(f"store {plan.store} changed since the inference was planned")
    scale = 1.0 / 255.0 if st.info.dtype == "uint8" else 1.0
    images = st.read_images(start, stop)  # (n, C, S, S), one shard
    ids = as_str_ids(st.ids[start:stop])
    p, props = _predict(model, images, plan, start, scale, dev)
    arrays: dict[str, np.ndarray] = {
        "id": ids, "ra": np.asarray(st.ra[start:stop], dtype=np.float64),
        "dec": np.asarray(st.dec[start:stop], dtype=np.float64),
        **shard_columns(p, plan),
        "start": np.int64(start), "stop": np.int64(stop), "checkpoint_sha256": np.str_(plan.checkpoint_sha256),
        "device": np.str_(str(dev)), "exported": np.bool_(exported),
        **{f"prop_{k}": v for k, v in props.items()},
    }
    with atomic.atomic_open(out, "wb") as f:
        np.savez(f, **arrays)
    return out
