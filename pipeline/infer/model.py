"""The model of an inference, loaded once per process, and the images it is fed.

Each process loads the model once (a cache keyed by checkpoint SHA-256 and device) and runs it
in its exported plain-torch form (:meth:`CODAE.export`, identical outputs, faster).
Precision: float32 everywhere (CPU and CUDA); bfloat16 autocast is not used.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from pipeline.errors import BadInputError

__all__ = ["load_inference_model", "to_device"]

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


def to_device(batch: np.ndarray, scale: float, device):
    """uint8/float16 store images -> float32 tensor in [0, 1] on ``device`` (pinned for CUDA copies)."""
    import torch

    t = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32) * np.float32(scale))
    if device.type == "cuda":
        # pinned host memory lets the copy run asynchronously with the previous batch's kernels
        return t.pin_memory().to(device, non_blocking=True)
    return t
