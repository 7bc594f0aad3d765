"""The merge: every part of an inference joined into one catalogue, keyed by id, in store order.

Rows are keyed by id into store order (never by the order workers finish); the ids must be
unique and exactly the store's.  The reconstruction-outlier flag (bit 4,
:func:`pipeline.infer.flags.recon_outlier_threshold`) is set over the whole catalogue, and the
catalogue is written once, atomically, with :func:`catalogs.fits_io.write_catalog`.  Then the
work directory is removed.

Latent names: the merge correlates every ``z_i`` with the image properties the parts hold over
the whole catalogue and writes the names into the ``TCOMM`` of ``z_i`` and the correlations
into header cards (``ZLAB<i>``, ``R<card><i>``; see :mod:`pipeline.latent_labels`).  The
header's ``INFCONF`` records the inference settings, K and the calibration used.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Literal

import numpy as np

from catalogs.schema import FLAG_RECON_OUTLIER, latent_names
from pipeline import __version__
from pipeline.errors import BadInputError
from pipeline.ids import as_str_ids, match_ids
from pipeline.infer.columns import ERROR_COLUMNS
from pipeline.infer.flags import (
    EDGE_MARGIN_PIX,
    NEAR_ROUND_AXIS_RATIO,
    PA_ERROR_ILL_DEFINED_DEG,
    RECON_OUTLIER_K,
    recon_outlier_threshold,
)
from pipeline.infer.plan import InferencePlan, read_plan
from pipeline.latent_labels import (
    PROPERTIES,
    LatentLabel,
    column_descriptions,
    correlations,
    header_cards,
    label_latents,
)

__all__ = ["merge_parts"]


def _read_parts(plan: InferencePlan) -> tuple[dict[str, np.ndarray], set[str], set[bool]]:
    """Every part's columns joined in shard order, the devices used and whether each model was exported."""
    missing = [k for k in range(len(plan.shard_ranges)) if not plan.part_path(k).is_file()]
    if missing:
        raise BadInputError(f"{len(missing)} of {len(plan.shard_ranges)} inference parts are missing "
                            f"(first: shard {missing[0]}); run infer_shard for them before merging")
    cols: dict[str, list[np.ndarray]] = {}
    devices, exported = set(), set()
    for k in range(len(plan.shard_ranges)):
        with np.load(plan.part_path(k), allow_pickle=False) as z:
            if str(z["checkpoint_sha256"]) != plan.checkpoint_sha256:
                raise BadInputError(f"part {k} was made with another checkpoint; delete {plan.work} and rerun")
            devices.add(str(z["device"]))
            exported.add(bool(z["exported"]))
            for name in ("id", "ra", "dec", "x_pix", "y_pix", "theta_deg", "pa_deg", "moment_pa_deg",
                         "moment_axis_ratio", "z", "recon_mse", *ERROR_COLUMNS, "direction_snr", "flags",
                         *(f"prop_{k}" for k in PROPERTIES)):
                cols.setdefault(name, []).append(z[name])
    return {name: np.concatenate(v) for name, v in cols.items()}, devices, exported


def _store_order(ids: np.ndarray, plan: InferencePlan) -> np.ndarray:
    """The part row of each store row: keyed by id, in store order (refuses duplicate, foreign or missing ids)."""
    from pipeline.data.store import open_store

    st = open_store(plan.store)
    store_ids = as_str_ids(st.ids)
    uniq, counts = np.unique(ids, return_counts=True)
    if uniq.size != ids.size:
        raise BadInputError(f"inference parts hold id {str(uniq[counts > 1][0])!r} more than once; "
                            "refusing to write a catalogue with duplicate rows")
    if ids.size != store_ids.size:
        raise BadInputError(f"inference parts hold {ids.size} rows, the store {plan.store} {store_ids.size}")
    row_of = match_ids(ids, store_ids)  # store row of each part row
    if (row_of < 0).any():
        raise BadInputError(f"inference parts hold id {str(ids[row_of < 0][0])!r}, which is not in the store "
                            f"{plan.store}")
    perm = np.empty_like(row_of)
    perm[row_of] = np.arange(len(row_of))  # part row of each store row: keyed by id, in store order
    return perm


def _header(plan: InferencePlan, n_rows: int, threshold: float, devices: set[str], exported: set[bool],
            labels: list[LatentLabel], config: dict[str, Any] | None) -> dict[str, Any]:
    """The catalogue's header: software, checkpoint, crop, ``INFCONF`` settings and the latent names' cards."""
    conf = {
        "store": plan.store, "checkpoint": plan.checkpoint, "model_kind": plan.model_kind,
        "batch_size": plan.batch_size, "device": plan.device, "devices_used": sorted(devices),
        "exported_model": sorted(exported) == [True], "precision": "float32",
        "background_ring_pix": plan.background_ring, "background_sigma": plan.background_sigma,
        "flag1_axis_ratio_above": NEAR_ROUND_AXIS_RATIO, "flag1_pa_err_above_deg": PA_ERROR_ILL_DEFINED_DEG,
        "flag2_edge_margin_store_pix": EDGE_MARGIN_PIX,
        "flag4_recon_mse_above": threshold, "flag4_rule": f"median + {RECON_OUTLIER_K:g} x 1.4826 x MAD",
        "crop_start_x": plan.crop_start_x, "crop_start_y": plan.crop_start_y,
        "error_samples": plan.error_samples, "error_calibration": plan.error_calibration,
        **(config or {}),
    }
    return {
        "software_version": __version__, "checkpoint_sha256": plan.checkpoint_sha256,
        "image_size": plan.size, "crop": plan.crop_size,
        "CROPX0": (plan.crop_start_x, "[pix] first column of the crop in the cutout"),
        "CROPY0": (plan.crop_start_y, "[pix] first row of the crop in the cutout"),
        "NOBJ": (n_rows, "rows: one per object in the store"), "config": conf,
        **header_cards(labels),
    }


def merge_parts(work_dir: str | os.PathLike, out: str | os.PathLike, *, format: Literal["fits", "parquet"] = "fits",
                overwrite: bool = False, config: dict[str, Any] | None = None, cleanup: bool = True) -> Path:
    """Join every part into the catalogue ``out`` (written once, atomically); return its path.

    Rows are keyed by id and written in store order.  Refuses (:class:`BadInputError`, nothing
    written) when a part is missing or made with another checkpoint, when an id appears twice,
    when an id is not in the store, or when the row count differs from the store's.
    ``config``: extra inference settings recorded in the ``INFCONF`` header.  ``cleanup``
    removes the work directory after the catalogue is written.
    """
    plan = read_plan(work_dir)
    data, devices, exported = _read_parts(plan)
    ids = data["id"]
    perm = _store_order(ids, plan)

    table: dict[str, np.ndarray] = {}
    for name in ("id", "ra", "dec", "x_pix", "y_pix", "theta_deg", "pa_deg", "moment_pa_deg", "moment_axis_ratio"):
        table[name] = data[name][perm]
    z = data["z"][perm]
    for j, name in enumerate(latent_names(plan.latent_dim)):
        table[name] = z[:, j]
    table["recon_mse"] = data["recon_mse"][perm]
    for name in (*ERROR_COLUMNS, "direction_snr"):
        table[name] = data[name][perm]
    threshold = recon_outlier_threshold(table["recon_mse"])
    flags = data["flags"][perm].copy()
    flags[~(table["recon_mse"] <= threshold)] |= FLAG_RECON_OUTLIER  # NaN is an outlier
    table["flags"] = flags
    # name the latents by the image properties they follow (pipeline.latent_labels)
    labels = label_latents(correlations(z, {k: data[f"prop_{k}"][perm] for k in PROPERTIES}),
                           latent_names(plan.latent_dim))
    header = _header(plan, len(ids), threshold, devices, exported, labels, config)
    from catalogs.fits_io import write_catalog

    path = write_catalog(table, out, latent_dim=plan.latent_dim, header=header, overwrite=overwrite, format=format,
                         descriptions=column_descriptions(labels))
    if cleanup:
        shutil.rmtree(plan.work, ignore_errors=True)
    return path
