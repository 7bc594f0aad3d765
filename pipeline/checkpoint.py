"""Checkpoints: written atomically, read with ``weights_only=True``, their tensors verified.

A checkpoint is a dict of tensors and plain Python values:
``format`` (int), ``software_version``, ``config`` (RunConfig as a dict), ``model``
(train-mode state dict, see :mod:`pipeline.model`), ``optimizer``, ``step``, ``epoch``,
``batch_in_epoch``, ``torch_rng``, ``metrics_rows`` (rows of metrics.csv written so far),
``store`` (description of the training data: path, size, crop), ``world_size`` and
``tensors_sha256``.

``tensors_sha256`` is :func:`tensors_digest` of everything else, taken at save time:
the name, dtype, shape and bytes of every tensor (model weights, optimiser moments, RNG state).
:func:`load_checkpoint` recomputes it and refuses a checkpoint whose bytes changed (a damaged
copy loads without complaint from PyTorch: the zip members are stored, and their CRCs unchecked).
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from catalogs import atomic
from pipeline.config import RunConfig
from pipeline.errors import BadInputError, ConfigError
from pipeline.hashing import file_sha256  # checkpoints are hashed for provenance (one definition)

__all__ = [
    "CHECKPOINT_FORMAT",
    "RESUMABLE_TRAIN_KEYS",
    "save_checkpoint",
    "load_checkpoint",
    "load_model",
    "check_resume",
    "tensors_digest",
    "file_sha256",
]

#: Format 2 adds ``tensors_sha256``; format 1 checkpoints (no digest) are refused.
CHECKPOINT_FORMAT = 2

#: ``train`` settings a resumed run may change: budgets, bookkeeping and where it runs.  Every
#: other setting (seed, batch size, learning-rate schedule, weight decay, clipping) shapes the
#: saved state or the position in the epoch, and must be what the checkpoint was trained with.
RESUMABLE_TRAIN_KEYS = frozenset({
    "max_epochs", "max_steps", "max_minutes", "checkpoint_every", "log_every", "num_workers", "device",
    "data_on_device", "compile", "cpu_threads",
})


def _tensors(obj: Any, prefix: str = "") -> Iterator[tuple[str, torch.Tensor]]:
    """Every tensor inside nested dicts, lists and tuples, with its path, in a fixed order."""
    if isinstance(obj, torch.Tensor):
        yield prefix, obj
    elif isinstance(obj, dict):
        for k in sorted(obj, key=str):
            yield from _tensors(obj[k], f"{prefix}/{k}")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _tensors(v, f"{prefix}/{i}")


def tensors_digest(state: dict[str, Any]) -> str:
    """SHA-256 over the path, dtype, shape and bytes of every tensor in ``state`` (``tensors_sha256`` left out)."""
    h = hashlib.sha256()
    for name, t in _tensors({k: v for k, v in state.items() if k != "tensors_sha256"}):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """Write ``state`` with its :func:`tensors_digest` to ``path`` atomically (temporary name, fsync, rename)."""
    full = {"format": CHECKPOINT_FORMAT, **state}
    full["tensors_sha256"] = tensors_digest(full)
    with atomic.atomic_open(path, "wb") as fh:
        torch.save(full, fh)


def _load_failure(path: Path, e: Exception) -> BadInputError:
    """One line for a file ``torch.load`` refused, without PyTorch's multi-line advice."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    if lines and lines[0].startswith("Weights only load failed"):
        detail = next((ln for ln in lines[1:] if not ln.startswith(("Check the documentation", "Please file"))),
                      "it holds objects other than tensors and plain values")
        return BadInputError(f"{path}: refused: not a galaxy-codae checkpoint, it asks to unpickle code "
                             f"or objects ({detail[:160]})")
    reason = lines[0][:160] if lines else type(e).__name__
    return BadInputError(f"{path}: not a readable galaxy-codae checkpoint ({reason})")


def load_checkpoint(path: str | Path, *, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint safely (``weights_only=True``) and verify its tensors.

    Any defect (unreadable, foreign, unsafe to unpickle, damaged bytes, invalid config) is one
    :class:`BadInputError` line.
    """
    path = Path(path)
    if path.is_dir():
        inside = path / "checkpoint.pt"
        found = "" if inside.is_file() else " (there is none in it yet)"
        raise BadInputError(f"{path} is a folder; give the checkpoint file in it: {inside}{found}")
    if not path.is_file():
        raise BadInputError(f"checkpoint not found: {path}")
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": noise ahead of our one line
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises many types for truncated or foreign files
        raise _load_failure(path, e) from None
    if not isinstance(state, dict) or "model" not in state or not isinstance(state.get("format"), int):
        raise BadInputError(f"{path}: not a galaxy-codae checkpoint")
    if state["format"] != CHECKPOINT_FORMAT:
        raise BadInputError(f"{path}: checkpoint format {state['format']}, this galaxy-codae reads format "
                            f"{CHECKPOINT_FORMAT} (format 1 carries no digest of its weights; train again)")
    if state.get("tensors_sha256") != tensors_digest(state):
        raise BadInputError(f"{path}: damaged checkpoint: its tensors differ from the digest recorded when it "
                            "was saved")
    try:
        state["config"] = RunConfig.from_dict(state["config"])
    except (ConfigError, KeyError, TypeError) as e:
        raise BadInputError(f"{path}: checkpoint holds an invalid config ({e})") from None
    return state


def check_resume(state: dict[str, Any], config: RunConfig, *, world_size: int, data: dict[str, Any]) -> None:
    """Refuse (:class:`ConfigError`, one line) to resume ``state`` under settings it was not trained with.

    The model and loss configs, every ``train`` setting outside :data:`RESUMABLE_TRAIN_KEYS`, the
    number of processes (each takes its share of every epoch) and the training data (its size
    decides the epochs' permutations; a store also by catalogue digest, image size and crop)
    must equal the checkpoint's.
    """
    old: RunConfig = state["config"]
    where = "the checkpoint's"
    if old.model != config.model:
        raise ConfigError(f"model config differs from {where}; resume with the saved config.yaml")
    if old.loss != config.loss:
        raise ConfigError(f"loss config differs from {where}; resume with the saved config.yaml")
    a, b = old.train.__dict__, config.train.__dict__
    changed = [k for k in a if k not in RESUMABLE_TRAIN_KEYS and a[k] != b.get(k)]
    if changed:
        k = changed[0]
        raise ConfigError(f"train.{k} is {b.get(k)!r}, the checkpoint was trained with {a[k]!r}; a resumed "
                          "run may change only its budgets and where it runs")
    if int(state.get("world_size", 1)) != world_size:
        raise ConfigError(f"{world_size} process(es), the checkpoint was trained with {state.get('world_size', 1)}; "
                          "each takes its own share of every epoch")
    saved = state.get("store") or {}
    for k in ("n_objects", "catalog_sha256", "size", "channels", "crop_size"):
        if k in saved and saved.get(k) != data.get(k):
            raise ConfigError(f"training data differ from the checkpoint's ({k} {data.get(k)!r}, trained on "
                              f"{saved.get(k)!r}); resume on the same store")


def load_model(path: str | Path, *, map_location: str | torch.device = "cpu"):
    """Build the CODAE a checkpoint describes and load its weights; returns (model in eval mode, state)."""
    from pipeline.model import build_model, load_model_state

    state = load_checkpoint(path, map_location=map_location)
    model = build_model(state["config"].model)
    try:
        load_model_state(model, state["model"])
    except BadInputError as e:
        raise BadInputError(f"{path}: {e}") from None
    return model.eval(), state
