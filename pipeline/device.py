"""Device choice, in one place."""

from __future__ import annotations

import torch

from pipeline.errors import ConfigError

__all__ = ["pick_device"]


def pick_device(choice: str = "auto") -> torch.device:
    """``auto`` -> CUDA when present, else CPU; ``cuda`` without a GPU is a ConfigError."""
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda asked for, but no CUDA device is available")
    if choice not in ("cpu", "cuda"):
        raise ConfigError(f"unknown device {choice!r} (auto, cpu or cuda)")
    return torch.device(choice)
