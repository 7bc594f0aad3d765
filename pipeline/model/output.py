"""What every model the trainer handles returns: CODAE and the baselines of :mod:`pipeline.baselines`."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

__all__ = ["ModelOutput"]


@dataclass(frozen=True)
class ModelOutput:
    """Per-image outputs of a model's ``forward(images)``.

    x, y: (B,) centroid, normalised frame (image spans [-1, 1], y down).
    theta: (B,) orientation, radians CCW as displayed, in (-pi, pi].
    direction: (B, 2) the unit vector (cos theta, sin theta) the branch predicts.
    z: (B, D) pose-invariant latents.
    aligned: (B, C, S, S) aligned reconstruction in [0, 1].
    same_view: (B, C, S, S) aligned reconstruction moved to the pose, in [0, 1].
    extra_loss: named loss terms a model adds to the objective (e.g. a baseline's KL);
    empty for CODAE.
    same_view_flip: (B, C, S, S) the aligned reconstruction moved to the pose turned by a half
    turn (theta + pi), or None for models without a direction read-out.
    direction_logit: (B,) > 0 when theta is the axis phi, < 0 when it is phi + pi; None likewise.
    """

    x: torch.Tensor
    y: torch.Tensor
    theta: torch.Tensor
    direction: torch.Tensor
    z: torch.Tensor
    aligned: torch.Tensor
    same_view: torch.Tensor
    extra_loss: dict[str, torch.Tensor] = field(default_factory=dict)
    same_view_flip: torch.Tensor | None = None
    direction_logit: torch.Tensor | None = None
