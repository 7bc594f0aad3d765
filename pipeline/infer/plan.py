"""The inference plan: what one inference does, checked once and written to ``<work>/plan.json``.

A rerun with the same store and checkpoint reuses the plan and every finished part; a
different checkpoint or store clears the stale parts (:meth:`InferencePlan.identity` decides).
The work directory is by default ``<out>.partial`` beside the catalogue (:func:`default_work_dir`);
the parts lie in its ``parts/`` folder (:meth:`InferencePlan.part_path`).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from catalogs import atomic
from catalogs.schema import first_bad_id
from pipeline.errors import BadInputError, ConfigError
from pipeline.ids import as_str_ids
from pipeline.infer.model import load_inference_model

if TYPE_CHECKING:
    from pipeline.predict import ErrorCalibration

__all__ = ["DEFAULT_ERROR_SAMPLES", "PLAN_FORMAT", "InferencePlan", "default_work_dir", "read_plan", "plan_inference"]

#: K of the model's error ensemble unless asked otherwise (``--error-samples``).
DEFAULT_ERROR_SAMPLES: int = 8
#: format of plan.json and of the part files.
PLAN_FORMAT = 1

_PLAN = "plan.json"
_PARTS = "parts"


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
    bad = first_bad_id(as_str_ids(st.ids))  # before any work: the catalogue could not hold it
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
    atomic.write_text(work / _PLAN, json.dumps(asdict(plan), indent=1))
    return plan
