"""Inference: a Zarr store and a checkpoint -> the FITS catalogue of ``../shared/CONTRACT.md``.

The work is cut per store shard (objects ``[k * shard_size, (k + 1) * shard_size)``):

1. :func:`plan_inference` checks the store and the checkpoint and writes ``plan.json`` in a
   work directory (by default ``<out>.partial`` beside the catalogue).  A rerun with the same
   store and checkpoint reuses the plan and every finished part; a different checkpoint or
   store clears the stale parts.
2. :func:`infer_shard` runs the model on one shard and writes ``parts/part-<k>.npz``
   atomically (temporary name, fsync, rename).  A part holds every column keyed by ``id``;
   an existing, readable part made with the same checkpoint is reused, not recomputed.
   Each process loads the model once (a cache keyed by checkpoint SHA-256 and device) and
   runs it in its exported plain-torch form (:meth:`CODAE.export`, identical outputs, faster).
3. :func:`merge_parts` joins the parts, keys rows by id into store order (never by the
   order workers finish), checks that the ids are unique and are exactly the store's, sets
   the reconstruction-outlier flag over the whole catalogue and writes it once, atomically,
   with :func:`catalogs.fits_io.write_catalog`.  Then the work directory is removed.

:func:`infer_catalog` does all three, over a Dask cluster for ``workers > 1`` (a
``LocalCluster`` of single-threaded processes) or an existing scheduler (``scheduler``);
``workers=1`` without a scheduler runs in this process (no cluster to start); a local cluster
listens on loopback only (:func:`pipeline.cluster.local_cluster`).  Tasks ask
for ``resources={"GPU": 1}`` only when some worker of the cluster advertises a GPU resource.

Columns and frames
------------------
The model sees store images (display frame, ``size`` pixels after the centre crop and
resize).  ``x_pix``/``y_pix`` go back to the original cutout frame with
:func:`pipeline.conventions.store_to_cutout_pixels` (x with ``crop_start_x``, y with
``crop_start_y``).  ``theta_deg`` is in [0, 360) CCW from +x as displayed; ``pa_deg`` and
``moment_pa_deg`` are :func:`pipeline.conventions.theta_to_pa` of the model and moment
orientations.  Moments are taken on the background-subtracted input with the checkpoint's
``loss.background_ring`` and ``loss.background_sigma``.

Errors (1 sigma): ``moment_pa_err_deg`` propagates the sky noise of each image to the moment
axis (:func:`pipeline.moments.moment_errors`).  ``pa_err_deg``, ``x_err_pix``, ``y_err_pix``
come from an ensemble of ``error_samples`` (K) re-draws of each image with noise at its own
sky level, turned by quarter turns (:func:`pipeline.predict.pose_spread`): the spread of the
model's answers, made into errors by the plan's :class:`pipeline.predict.ErrorCalibration`
(the checkpoint's ``pose_errors.json`` when fitted for it, else the defaults), converted to
cutout pixels.  K = 0 leaves them NaN.  The ensemble's noise is seeded per object, so a
catalogue is the same for any batch size and number of workers.  The header's ``INFCONF``
records K and the calibration used.

Flags (bits of :mod:`catalogs.schema`)
--------------------------------------
- ``FLAG_ORIENTATION_ILL_DEFINED`` (1), :func:`orientation_ill_defined`: the 1-sigma PA
  error of the moments (``moment_pa_err_deg``) or of the model (``pa_err_deg``) exceeds
  :data:`PA_ERROR_ILL_DEFINED_DEG` (20 deg).  The errors grow as the shape turns round and
  as the signal sinks into the sky, so a faint elongated galaxy whose axis is lost in the
  noise is flagged and a bright, slightly round one whose axis is measured is not.  Without
  model errors (``error_samples`` 0) the fixed cut ``moment_axis_ratio >``
  :data:`NEAR_ROUND_AXIS_RATIO` (0.9; moment anisotropy < 0.105) stands in for the model's
  error.  On the demo surveys (``benchmarks/pose_errors.py``) the error rule flags 16 % of
  the galaxies and catches 93 % of the model's PA errors above 20 deg; the axis-ratio cut
  flags 28 %, and the 12 % it adds have honest errors (median 7 deg stated, 4 deg real).
  Where it is set, ``pa_deg`` is NaN (the
  orientation is unknown, as the contract says), so ``isnull(pa_deg)`` selects these rows;
  ``theta_deg``, ``moment_pa_deg`` and the errors keep their values for inspection.
- ``FLAG_CENTROID_NEAR_EDGE`` (2): the model centroid lies within :data:`EDGE_MARGIN_PIX`
  (2) store pixels of the store image's edge (or outside it).
- ``FLAG_RECON_OUTLIER`` (4): ``recon_mse > median + 5 x 1.4826 x MAD`` over the whole
  catalogue (:data:`RECON_OUTLIER_K`), computed at the merge.
- ``FLAG_NO_DIRECTION`` (8): ``|direction_snr| <`` :data:`pipeline.predict.DIRECTION_SIGNIF_MIN`
  (3): the same-view reconstruction explains the image no better with ``theta`` than with
  ``theta + 180`` (a galaxy that looks the same turned by a half turn, or a model without a
  direction read-out).  ``theta_deg`` is then the axis, reported in [0, 180); ``pa_deg`` is an
  axis whatever the flag.

Latent names
------------
Each part also holds the image properties of :func:`pipeline.latent_labels.measure_images`
(same background ring and sigma); the merge correlates every ``z_i`` with them over the whole
catalogue and writes the names into the ``TCOMM`` of ``z_i`` and the correlations into header
cards (``ZLAB<i>``, ``R<card><i>``; see :mod:`pipeline.latent_labels`).

Precision: float32 everywhere (CPU and CUDA); bfloat16 autocast is not used.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from catalogs import atomic
from catalogs.schema import (
    FLAG_CENTROID_NEAR_EDGE,
    FLAG_NO_DIRECTION,
    FLAG_ORIENTATION_ILL_DEFINED,
    FLAG_RECON_OUTLIER,
    first_bad_id,
    latent_names,
)
from pipeline import __version__
from pipeline.conventions import store_to_cutout_pixels, theta_to_pa, wrap_360
from pipeline.errors import BadInputError, ConfigError
from pipeline.ids import as_str_ids, match_ids
from pipeline.latent_labels import PROPERTIES, column_descriptions, correlations, header_cards, label_latents
from pipeline.progress import Progress, Sink

if TYPE_CHECKING:
    from pipeline.predict import ErrorCalibration

__all__ = [
    "NEAR_ROUND_AXIS_RATIO",
    "PA_ERROR_ILL_DEFINED_DEG",
    "DEFAULT_ERROR_SAMPLES",
    "orientation_ill_defined",
    "EDGE_MARGIN_PIX",
    "RECON_OUTLIER_K",
    "InferencePlan",
    "plan_inference",
    "infer_shard",
    "merge_parts",
    "infer_catalog",
    "load_inference_model",
    "default_work_dir",
]

#: flag bit 1 above this moment minor/major axis ratio (near-round: orientation ill-defined).
NEAR_ROUND_AXIS_RATIO: float = 0.9
#: flag bit 1 above this 1-sigma position-angle error, degrees (model or moments).
PA_ERROR_ILL_DEFINED_DEG: float = 20.0
#: K of the model's error ensemble unless asked otherwise (``--error-samples``).
DEFAULT_ERROR_SAMPLES: int = 8
#: seed of the ensemble's noise (plus the object's index in the store).
ERROR_SEED: int = 20_260_000
#: flag bit 2 when the centroid is within this many store pixels of the image edge.
EDGE_MARGIN_PIX: float = 2.0
#: flag bit 4 above median + K x (1.4826 x MAD) of ``recon_mse`` over the catalogue.
RECON_OUTLIER_K: float = 5.0
#: format of plan.json and of the part files.
PLAN_FORMAT = 1

_PLAN = "plan.json"
#: the error columns a part carries (pipeline.predict and pipeline.moments).
_ERROR_COLUMNS = ("pa_err_deg", "x_err_pix", "y_err_pix", "moment_pa_err_deg")
_PARTS = "parts"


def orientation_ill_defined(moment_axis_ratio: np.ndarray, moment_pa_err_deg: np.ndarray,
                            pa_err_deg: np.ndarray) -> np.ndarray:
    """Flag bit 1 (bool per object): the position angle cannot be trusted.

    True where the moments' 1-sigma PA error or the model's exceeds
    :data:`PA_ERROR_ILL_DEFINED_DEG`.  Where the model has no error (NaN: inference without
    an error ensemble) the fixed cut ``moment_axis_ratio >`` :data:`NEAR_ROUND_AXIS_RATIO`
    stands in for it.  A NaN moment error or axis ratio (no signal) counts as ill-defined.
    """
    pa_err = np.asarray(pa_err_deg)
    moment_bad = ~(np.asarray(moment_pa_err_deg) <= PA_ERROR_ILL_DEFINED_DEG)
    model_bad = pa_err > PA_ERROR_ILL_DEFINED_DEG  # NaN compares False
    round_ = ~(np.asarray(moment_axis_ratio) <= NEAR_ROUND_AXIS_RATIO)
    return moment_bad | model_bad | (round_ & ~np.isfinite(pa_err))


def default_work_dir(out: str | os.PathLike) -> Path:
    """Where an inference for catalogue ``out`` keeps its plan and parts: ``<out>.partial``."""
    return Path(str(out) + ".partial")


@dataclass(frozen=True)
class InferencePlan:
    """What an inference does, as written to ``<work>/plan.json``.

    ``shard_ranges``: ``[start, stop)`` store objects per part; ``device``: the choice passed
    to :func:`pipeline.device.pick_device` in each worker; ``background_ring`` (pixels) and
    ``background_sigma``: the moment background of the checkpoint's loss config;
    ``error_samples``: K of the model's error ensemble (0: no model errors);
    ``error_calibration``: the :class:`pipeline.predict.ErrorCalibration` used, as a dict.
    """

    format: int
    work_dir: str
    store: str
    store_created: str
    store_catalog_sha256: str
    n_objects: int
    size: int
    channels: int
    crop_start_x: int
    crop_start_y: int
    crop_size: int
    checkpoint: str
    checkpoint_sha256: str
    latent_dim: int
    model_kind: str
    batch_size: int
    device: str
    background_ring: int
    background_sigma: float
    shard_ranges: tuple[tuple[int, int], ...]
    error_samples: int
    error_calibration: dict[str, Any]

    @property
    def work(self) -> Path:
        return Path(self.work_dir)

    def part_path(self, shard_index: int) -> Path:
        """The part file of shard ``shard_index``."""
        return self.work / _PARTS / f"part-{shard_index:05d}.npz"

    def identity(self) -> dict[str, Any]:
        """The fields that decide whether finished parts can be reused."""
        return {k: getattr(self, k) for k in ("store", "store_created", "store_catalog_sha256", "n_objects",
                                               "checkpoint_sha256", "crop_start_x", "crop_start_y", "crop_size",
                                               "size", "shard_ranges", "background_ring", "background_sigma",
                                               "error_samples", "error_calibration")}


def _atomic_write(path: Path, write, mode: str = "w") -> None:
    """Write through ``write(file)`` to a temporary file beside ``path``, fsync, then rename."""
    with atomic.atomic_open(path, mode) as f:
        write(f)


def _atomic_write_text(path: Path, text: str) -> None:
    atomic.write_text(path, text)


def read_plan(work_dir: str | os.PathLike) -> InferencePlan:
    """The plan in ``work_dir`` (BadInputError if absent or unreadable)."""
    path = Path(work_dir) / _PLAN
    try:
        data = json.loads(path.read_text())
        data["shard_ranges"] = tuple(tuple(int(v) for v in r) for r in data["shard_ranges"])
        return InferencePlan(**data)
    except FileNotFoundError:
        raise BadInputError(f"no inference plan in {work_dir} (run plan_inference first)") from None
    except (ValueError, TypeError, KeyError) as e:
        raise BadInputError(f"{path}: unreadable inference plan ({e})") from None


def plan_inference(store: str | os.PathLike, checkpoint: str | os.PathLike, work_dir: str | os.PathLike, *,
                   batch_size: int = 256, device: str = "auto", error_samples: int = DEFAULT_ERROR_SAMPLES,
                   error_calibration: ErrorCalibration | None = None) -> InferencePlan:
    """Check the inputs and write (or reuse) the plan in ``work_dir``; return it.

    ``error_samples``: K of the model's error ensemble (0: NaN model errors).
    ``error_calibration``: factors that turn its spreads into errors; by default the
    checkpoint's own ``pose_errors.json`` when it was fitted for this checkpoint, else
    :data:`pipeline.predict.DEFAULT_CALIBRATION` (:func:`pipeline.predict.calibration_for`).
    Raises :class:`BadInputError` for a missing or incomplete store, an unreadable or
    mismatched checkpoint (image size or channels differ from the store's), and
    :class:`ConfigError` for a bad ``batch_size``, ``error_samples`` or ``device``.
    """
    from pipeline.checkpoint import file_sha256, load_checkpoint
    from pipeline.data.store import open_store
    from pipeline.device import pick_device
    from pipeline.predict import calibration_for

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
    if isinstance(error_samples, bool) or not isinstance(error_samples, int) or error_samples < 0 \
            or error_samples == 1:
        raise ConfigError(f"error_samples must be 0 (no model errors) or an integer >= 2, got {error_samples!r}")
    pick_device(device)  # validates the choice here, once, rather than in every worker
    st = open_store(store)
    info = st.info
    if info.n_objects == 0:
        raise BadInputError(f"store {store} holds no objects")
    bad = first_bad_id(_unicode(st.ids))  # before any work: the catalogue could not hold it
    if bad is not None:
        i, why = bad
        raise BadInputError(f"store {store}: object {i} has an id the catalogue cannot hold ({why}: "
                            f"{str(st.ids[i])!r}); ingest the survey again to reject it")
    ckpt = Path(checkpoint).resolve()
    state = load_checkpoint(ckpt)
    mc = state["config"].model
    if mc.image_size != info.size or mc.channels != info.channels:
        raise BadInputError(f"{checkpoint}: model expects {mc.channels}x{mc.image_size}x{mc.image_size} images, "
                            f"store {store} holds {info.channels}x{info.size}x{info.size}")
    # the weights must fit the model before anything is written (cached: this process's shards reuse it)
    load_inference_model(ckpt, device=device)
    work = Path(work_dir).resolve()
    sha = file_sha256(ckpt)
    if error_calibration is None:
        error_calibration = calibration_for(ckpt, sha)
    plan = InferencePlan(
        format=PLAN_FORMAT, work_dir=str(work), store=str(Path(store).resolve()),
        store_created=str(info.attrs.get("created", "")), store_catalog_sha256=info.catalog_sha256,
        n_objects=info.n_objects, size=info.size, channels=info.channels, crop_start_x=info.crop_start_x,
        crop_start_y=info.crop_start_y, crop_size=info.crop_size, checkpoint=str(ckpt),
        checkpoint_sha256=sha, latent_dim=int(mc.latent_dim), model_kind=str(mc.kind),
        batch_size=batch_size, device=device, background_ring=int(state["config"].loss.background_ring),
        background_sigma=float(state["config"].loss.background_sigma),
        shard_ranges=tuple((int(a), int(b)) for a, b in st.shard_ranges()), error_samples=error_samples,
        error_calibration=asdict(error_calibration))
    work.mkdir(parents=True, exist_ok=True)
    parts = work / _PARTS
    if (work / _PLAN).is_file():
        try:
            old = read_plan(work)
            same = old.identity() == plan.identity()
        except BadInputError:
            same = False
        if not same and parts.is_dir():  # another checkpoint or store: its parts are stale
            shutil.rmtree(parts)
    parts.mkdir(exist_ok=True)
    _atomic_write_text(work / _PLAN, json.dumps(asdict(plan), indent=1))
    return plan


# ---------------------------------------------------------------- the model, once per process

#: (checkpoint SHA-256, device) -> (model ready for inference, exported?).  One per process.
_MODEL_CACHE: dict[tuple[str, str], tuple[Any, bool]] = {}


def load_inference_model(checkpoint: str | os.PathLike, *, device: str = "auto", export: bool = True,
                         sha256: str | None = None):
    """Load a checkpoint's model in eval mode on ``device``, exported to plain torch when it can be.

    Returns ``(model, exported, sha256)``.  Cached per process by (checkpoint SHA-256, device,
    export): a worker loads a model once however many shards it runs.  ``sha256``: the digest
    the plan recorded; a checkpoint file changed since is a :class:`BadInputError`.
    """
    from pipeline.checkpoint import file_sha256, load_model
    from pipeline.device import pick_device

    dev = pick_device(device)
    sha = file_sha256(checkpoint)
    if sha256 is not None and sha != sha256:
        raise BadInputError(f"{checkpoint} changed since the inference was planned (SHA-256 differs); "
                            "delete the work directory or rerun with the same checkpoint")
    key = (sha, f"{dev}|{export}")
    if key not in _MODEL_CACHE:
        # load_model builds a fresh model in eval mode; export() turns the e2cnn trunk into
        # plain torch in place (no deepcopy: copying an eval-mode e2cnn model fails).
        model, _ = load_model(checkpoint, map_location="cpu")
        exported = False
        if export and hasattr(model, "export"):
            model.export()
            exported = True
        _MODEL_CACHE[key] = (model.to(dev).eval(), exported)
    model, exported = _MODEL_CACHE[key]
    return model, exported, sha


def _to_device(batch: np.ndarray, scale: float, device):
    """uint8/float16 store images -> float32 tensor in [0, 1] on ``device`` (pinned for CUDA copies)."""
    import torch

    t = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32) * np.float32(scale))
    if device.type == "cuda":
        # pinned host memory lets the copy run asynchronously with the previous batch's kernels
        return t.pin_memory().to(device, non_blocking=True)
    return t


_unicode = as_str_ids  # ids as a fixed-width unicode array (the store may hold numpy's StringDType)


def _part_ok(path: Path, plan: InferencePlan, start: int, stop: int) -> bool:
    try:
        with np.load(path, allow_pickle=False) as z:
            return (str(z["checkpoint_sha256"]) == plan.checkpoint_sha256 and int(z["start"]) == start
                    and int(z["stop"]) == stop and len(z["id"]) == stop - start and "pa_err_deg" in z
                    and "direction_snr" in z
                    and all(f"prop_{k}" in z for k in PROPERTIES))
    except (OSError, ValueError, KeyError, EOFError):
        return False


def infer_shard(work_dir: str | os.PathLike, shard_index: int) -> Path:
    """Run the model on one store shard and write its part file atomically; return the part's path.

    A part is an ``.npz`` of per-object arrays keyed by ``id`` (store frame converted to the
    cutout frame, see the module docstring), plus ``start``, ``stop``, ``checkpoint_sha256``
    and ``device``.  An existing readable part of the same checkpoint is reused as it is.
    """
    import torch

    from pipeline.data.store import open_store
    from pipeline.latent_labels import measure_images
    from pipeline.predict import DIRECTION_SIGNIF_MIN, ErrorCalibration, concat, predict_batch

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
    ids = _unicode(st.ids[start:stop])
    preds, props = [], []
    with torch.inference_mode():
        for a in range(0, len(images), plan.batch_size):
            batch = _to_device(images[a:a + plan.batch_size], scale, dev)
            # the ensemble's noise is seeded per object: the same for any batch size or worker count
            seeds = ERROR_SEED + start + a + np.arange(len(batch))
            preds.append(predict_batch(model, batch, background_ring=plan.background_ring,
                                       background_sigma=plan.background_sigma, error_samples=plan.error_samples,
                                       error_seeds=seeds))
            props.append(measure_images(batch, ring=plan.background_ring, k_sigma=plan.background_sigma))
    p = concat(preds)

    size = plan.size
    x_cut = store_to_cutout_pixels(p.x_pix, crop_start=plan.crop_start_x, crop_size=plan.crop_size, size=size)
    y_cut = store_to_cutout_pixels(p.y_pix, crop_start=plan.crop_start_y, crop_size=plan.crop_size, size=size)
    theta = wrap_360(p.theta_deg).astype(np.float32)
    theta[theta >= 360.0] = 0.0  # float32 rounding of 359.99999 must stay in [0, 360)
    cal = ErrorCalibration(**plan.error_calibration)
    to_cutout = plan.crop_size / size  # cutout pixels per store pixel
    pa_err = cal.pa_err_deg(p.theta_spread_deg)
    moment_pa_err = p.moment_theta_err_deg
    flags = np.zeros(len(ids), dtype=np.int16)
    flags[orientation_ill_defined(p.moment_axis_ratio, moment_pa_err, pa_err)] |= FLAG_ORIENTATION_ILL_DEFINED
    lo, hi = EDGE_MARGIN_PIX - 0.5, size - 0.5 - EDGE_MARGIN_PIX  # pixel edges at -0.5 and size - 0.5
    near = ~((p.x_pix >= lo) & (p.x_pix <= hi) & (p.y_pix >= lo) & (p.y_pix <= hi))
    flags[near] |= FLAG_CENTROID_NEAR_EDGE
    no_direction = ~(np.abs(p.direction_signif) >= DIRECTION_SIGNIF_MIN)  # NaN (no read-out): no direction
    flags[no_direction] |= FLAG_NO_DIRECTION
    theta[no_direction] = np.mod(theta[no_direction], 180.0)  # the axis only: honest about the half turn
    pa_deg = theta_to_pa(p.theta_deg).astype(np.float32)
    pa_deg[(flags & FLAG_ORIENTATION_ILL_DEFINED) != 0] = np.nan  # unknown orientation: null (theta_deg kept)
    arrays: dict[str, np.ndarray] = {
        "id": ids, "ra": np.asarray(st.ra[start:stop], dtype=np.float64),
        "dec": np.asarray(st.dec[start:stop], dtype=np.float64),
        "x_pix": x_cut.astype(np.float32), "y_pix": y_cut.astype(np.float32), "theta_deg": theta,
        "pa_deg": pa_deg,
        "moment_pa_deg": theta_to_pa(p.moment_theta_deg).astype(np.float32),
        "moment_axis_ratio": p.moment_axis_ratio.astype(np.float32),
        "pa_err_deg": pa_err.astype(np.float32),
        "x_err_pix": (cal.x_err_pix(p.x_spread_pix) * to_cutout).astype(np.float32),
        "y_err_pix": (cal.y_err_pix(p.y_spread_pix) * to_cutout).astype(np.float32),
        "moment_pa_err_deg": moment_pa_err.astype(np.float32),
        "direction_snr": p.direction_signif.astype(np.float32),
        "z": p.z.astype(np.float32), "recon_mse": p.recon_mse.astype(np.float32), "flags": flags,
        "start": np.int64(start), "stop": np.int64(stop), "checkpoint_sha256": np.str_(plan.checkpoint_sha256),
        "device": np.str_(str(dev)), "exported": np.bool_(exported),
        **{f"prop_{k}": np.concatenate([b[k] for b in props]) for k in PROPERTIES},
    }
    _atomic_write(out, lambda f: np.savez(f, **arrays), "wb")
    return out


# ---------------------------------------------------------------- merge


def recon_outlier_threshold(recon_mse: np.ndarray, k: float = RECON_OUTLIER_K) -> float:
    """``median + k x 1.4826 x MAD`` of the finite values (the robust sigma of a normal)."""
    v = np.asarray(recon_mse, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("inf")
    med = float(np.median(v))
    return med + k * 1.4826 * float(np.median(np.abs(v - med)))


def merge_parts(work_dir: str | os.PathLike, out: str | os.PathLike, *, format: Literal["fits", "parquet"] = "fits",
                overwrite: bool = False, config: dict[str, Any] | None = None, cleanup: bool = True) -> Path:
    """Join every part into the catalogue ``out`` (written once, atomically); return its path.

    Rows are keyed by id and written in store order.  Refuses (:class:`BadInputError`, nothing
    written) when a part is missing or made with another checkpoint, when an id appears twice,
    when an id is not in the store, or when the row count differs from the store's.
    ``config``: extra inference settings recorded in the ``INFCONF`` header.  ``cleanup``
    removes the work directory after the catalogue is written.
    """
    from pipeline.data.store import open_store

    plan = read_plan(work_dir)
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
                         "moment_axis_ratio", "z", "recon_mse", *_ERROR_COLUMNS, "direction_snr", "flags",
                         *(f"prop_{k}" for k in PROPERTIES)):
                cols.setdefault(name, []).append(z[name])
    data = {name: np.concatenate(v) for name, v in cols.items()}
    ids = data["id"]

    st = open_store(plan.store)
    store_ids = _unicode(st.ids)
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

    table: dict[str, np.ndarray] = {}
    for name in ("id", "ra", "dec", "x_pix", "y_pix", "theta_deg", "pa_deg", "moment_pa_deg", "moment_axis_ratio"):
        table[name] = data[name][perm]
    z = data["z"][perm]
    for j, name in enumerate(latent_names(plan.latent_dim)):
        table[name] = z[:, j]
    table["recon_mse"] = data["recon_mse"][perm]
    for name in (*_ERROR_COLUMNS, "direction_snr"):
        table[name] = data[name][perm]
    threshold = recon_outlier_threshold(table["recon_mse"])
    flags = data["flags"][perm].copy()
    flags[~(table["recon_mse"] <= threshold)] |= FLAG_RECON_OUTLIER  # NaN is an outlier
    table["flags"] = flags
    # name the latents by the image properties they follow (pipeline.latent_labels)
    labels = label_latents(correlations(z, {k: data[f"prop_{k}"][perm] for k in PROPERTIES}),
                           latent_names(plan.latent_dim))

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
    header = {
        "software_version": __version__, "checkpoint_sha256": plan.checkpoint_sha256,
        "image_size": plan.size, "crop": plan.crop_size,
        "CROPX0": (plan.crop_start_x, "[pix] first column of the crop in the cutout"),
        "CROPY0": (plan.crop_start_y, "[pix] first row of the crop in the cutout"),
        "NOBJ": (len(ids), "rows: one per object in the store"), "config": conf,
        **header_cards(labels),
    }
    from catalogs.fits_io import write_catalog

    path = write_catalog(table, out, latent_dim=plan.latent_dim, header=header, overwrite=overwrite, format=format,
                         descriptions=column_descriptions(labels))
    if cleanup:
        shutil.rmtree(plan.work, ignore_errors=True)
    return path


# ---------------------------------------------------------------- the whole step


def _gpu_resources(client) -> dict[str, float] | None:
    """``{"GPU": 1}`` when some worker of the cluster advertises a GPU resource, else None."""
    workers = client.scheduler_info().get("workers", {})
    if any("GPU" in (w.get("resources") or {}) for w in workers.values()):
        return {"GPU": 1}
    return None


def infer_catalog(store: str | os.PathLike, checkpoint: str | os.PathLike, out: str | os.PathLike, *,
                  workers: int = 1, scheduler: str | None = None, batch_size: int = 256, device: str = "auto",
                  format: Literal["fits", "parquet"] = "fits", overwrite: bool = False,
                  work_dir: str | os.PathLike | None = None,
                  progress: Sink = None, error_samples: int = DEFAULT_ERROR_SAMPLES,
                  error_calibration: ErrorCalibration | None = None) -> Path:
    """Write the catalogue of every object in ``store`` with the model of ``checkpoint``; return its path.

    ``workers``: 1 runs in this process; N > 1 starts a ``LocalCluster`` of N single-threaded
    processes.  ``scheduler``: address of an existing Dask scheduler (overrides ``workers``).
    ``device``: ``auto`` (CUDA when present), ``cpu`` or ``cuda``.  ``work_dir``: plan and parts
    (default ``<out>.partial``); a killed run resumes from it.  ``progress``: True for a bar (a
    terminal) or periodic lines on stderr with counts, rate and ETA; a callable for the lines.  ``error_samples`` and
    ``error_calibration``: the model's error ensemble, as for :func:`plan_inference` (each
    sample is one more model pass: K = 8 makes inference about 9 times slower).
    """
    out = Path(out)
    if format not in ("fits", "parquet"):
        raise ConfigError(f"unknown catalogue format {format!r} (fits or parquet)")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers must be a positive integer, got {workers!r}")
    if out.exists() and not overwrite:
        raise BadInputError(f"{out} exists; pass --overwrite to replace it")
    if not out.parent.is_dir():
        raise BadInputError(f"directory {out.parent} does not exist")
    work = Path(work_dir) if work_dir is not None else default_work_dir(out)
    plan = plan_inference(store, checkpoint, work, batch_size=batch_size, device=device,
                          error_samples=error_samples, error_calibration=error_calibration)
    n_shards = len(plan.shard_ranges)
    reused = sum(plan.part_path(k).is_file() for k in range(n_shards))
    bar = Progress("infer", plan.n_objects, unit="objects", sink=progress, note=f"{reused} finished part(s) reused")

    def report(k: int) -> None:
        a, b = plan.shard_ranges[k]
        bar.update(b - a)

    if scheduler is None and workers == 1:
        for k in range(n_shards):
            infer_shard(plan.work, k)
            report(k)
    else:
        from distributed import as_completed

        from pipeline.cluster import dask_client

        with dask_client(workers, scheduler) as client:  # a local cluster listens on loopback only
            resources = _gpu_resources(client)
            token = plan.checkpoint_sha256[:12]
            futures = {client.submit(infer_shard, str(plan.work), k, key=f"infer-shard-{token}-{k}", pure=False,
                                     resources=resources): k for k in range(n_shards)}
            for fut in as_completed(futures):
                fut.result()  # re-raises a worker's error here
                report(futures[fut])
    bar.close()
    conf = {"workers": workers if scheduler is None else None, "scheduler": scheduler,
            "python": sys.version.split()[0]}
    return merge_parts(plan.work, out, format=format, overwrite=overwrite, config=conf)
