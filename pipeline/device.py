"""Device choice, in one place."""

from __future__ import annotations

import os

import torch

from pipeline.errors import ConfigError

__all__ = ["pick_device", "available_cpus", "set_cpu_threads"]


def pick_device(choice: str = "auto") -> torch.device:
    """``auto`` -> CUDA when present, else CPU; ``cuda`` without a GPU is a ConfigError."""
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda asked for, but no CUDA device is available")
    if choice not in ("cpu", "cuda"):
        raise ConfigError(f"unknown device {choice!r} (auto, cpu or cuda)")
    return torch.device(choice)


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask: what SLURM or ``taskset`` granted), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def set_cpu_threads(threads: int | None = None) -> int:
    """Set torch's intra-op CPU threads to ``threads`` (None: :func:`available_cpus`); returns the number set.

    Explicit on purpose: starting a Dask ``LocalCluster`` sets ``OMP_NUM_THREADS=1`` in the
    *parent* process's environment (``distributed.nanny.pre-spawn-environ``), so a torch first
    used after it (training inside the Prefect flow, next to its cluster) would run on one thread.
    """
    n = available_cpus() if threads is None else int(threads)
    if n < 1:
        raise ConfigError(f"CPU threads must be at least 1 (got {n})")
    torch.set_num_threads(n)
    return n
