"""Optional ``torch.compile`` of a model's heavy parts, with a clean fall-back to eager.

At batch 128 on a large GPU the trainer is launch-bound: many small kernels per step, the GPU
idle between them.  Compiling the trunk and the decoder fuses their element-wise work
(``train.compile``).  It is an option, not a requirement: compilation may be unavailable (no C++
compiler, an unsupported platform) or fail on a layer it cannot trace, and then the run goes on
eagerly with one log line saying why.

Parts are compiled in place (``nn.Module.compile``), so parameter names, state dicts and
checkpoints are those of the eager model.  The decoder is plain torch and traces whole; e2cnn's
trunk expands its filters from the weights every training step with index tensors it reads back
(``.item()``), so dynamo splits the trunk into several graphs (slower to compile, less to fuse).  Compilation is lazy: a failure shows at the first
forward or backward, which is why :func:`uncompile` exists and the trainer retries that step
eagerly (:func:`pipeline.train.train`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import torch

__all__ = ["COMPILED_PARTS", "BACKEND", "compile_parts", "uncompile", "fall_back"]

#: The sub-modules compiled when a model has them (CODAE's; the baselines have none of these names).
COMPILED_PARTS = ("trunk", "decoder")

#: What ``torch.compile`` gets as ``backend`` (a name or a callable; tests use a failing one).
BACKEND: str | Callable = "inductor"


def compile_parts(model: torch.nn.Module, parts: tuple[str, ...] = COMPILED_PARTS) -> list[str]:
    """Compile the named sub-modules of ``model`` that exist, in place; returns their names.

    Returns ``[]`` (after one log line) when compilation cannot even be set up.
    """
    found = [p for p in parts if isinstance(getattr(model, p, None), torch.nn.Module)]
    if not found:
        _log(f"{type(model).__name__} has none of {', '.join(parts)}: nothing to compile")
        return []
    try:
        for p in found:
            getattr(model, p).compile(backend=BACKEND)
    except Exception as e:  # noqa: BLE001 - any failure means: train eagerly
        uncompile(model, found)
        _log(f"cannot set up ({_reason(e)})")
        return []
    return found


def uncompile(model: torch.nn.Module, parts: list[str] | tuple[str, ...] = COMPILED_PARTS) -> None:
    """Undo :func:`compile_parts`: the named parts run eagerly again (their weights are untouched)."""
    for p in parts:
        module = getattr(model, p, None)
        if isinstance(module, torch.nn.Module):
            module._compiled_call_impl = None


def fall_back(model: torch.nn.Module, parts: list[str], error: BaseException) -> list[str]:
    """Log why compiled ``parts`` failed, run them eagerly from now on; returns ``[]``."""
    uncompile(model, parts)
    _log(f"{', '.join(parts)} failed ({_reason(error)}); training eagerly")
    return []


def _reason(e: BaseException) -> str:
    """``Type: first line`` of ``e``, followed by its root cause's (a backend's own error is wrapped)."""
    parts = []
    while e is not None and len(parts) < 3:
        text = str(e).strip().splitlines()
        parts.append(f"{type(e).__name__}: {text[0][:160]}" if text else type(e).__name__)
        e = getattr(e, "inner_exception", None) or e.__cause__
    return " <- ".join(parts)


def _log(msg: str) -> None:
    print(f"train: torch.compile: {msg}", file=sys.stderr, flush=True)
