"""Checkpoints: written atomically, read with ``weights_only=True``.

A checkpoint is a dict of tensors and plain Python values:
``format`` (int), ``software_version``, ``config`` (RunConfig as a dict), ``model``
(train-mode state dict, see :mod:`pipeline.model`), ``optimizer``, ``step``, ``epoch``,
``batch_in_epoch``, ``torch_rng``, ``metrics_rows`` (rows of metrics.csv written so far)
and ``store`` (description of the training data: path, size, crop).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import torch

from pipeline.config import RunConfig
from pipeline.errors import BadInputError, ConfigError

__all__ = ["CHECKPOINT_FORMAT", "save_checkpoint", "load_checkpoint", "load_model", "file_sha256"]

CHECKPOINT_FORMAT = 1


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """Write ``state`` to ``path`` atomically (temporary file in the same folder, fsync, rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        torch.save({"format": CHECKPOINT_FORMAT, **state}, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: str | Path, *, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint safely (``weights_only=True``); any defect is one :class:`BadInputError` line."""
    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises many types for truncated or foreign files
        reason = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
        raise BadInputError(f"{path}: not a readable galaxy-codae checkpoint ({reason})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT or "model" not in state:
        raise BadInputError(f"{path}: not a galaxy-codae checkpoint (format {CHECKPOINT_FORMAT} expected)")
    try:
        state["config"] = RunConfig.from_dict(state["config"])
    except (ConfigError, KeyError) as e:
        raise BadInputError(f"{path}: checkpoint holds an invalid config ({e})") from None
    return state


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


def file_sha256(path: str | Path) -> str:
    """SHA-256 hex digest of a file (for provenance headers)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
