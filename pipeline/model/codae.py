"""CODAE: centroid- and orientation-aware disentangling autoencoder.

Cha, Thiyagalingam et al., "Discovering fully semantic representations via centroid-
and orientation-aware feature learning", Nature Machine Intelligence 7, 307-314 (2025).

    images (B, C, S, S)
      -> EquivariantTrunk -> stem's invariant maps re-weight the sky-subtracted image -> learned first moment (x0, y0)
                          -> equivariant maps -> B_equi (FC, refines x0, y0) -> x, y, theta (pose)
                          -> group max-pool   -> B_inv  -> z (pose-invariant)
      z -> Euler encoding -> Decoder -> aligned image (centred, orientation 0)
      aligned, pose -> spatial transformer -> same-view reconstruction
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn

from pipeline.config import ModelConfig
from pipeline.errors import BadInputError
from pipeline.geometry import warp_to_view
from pipeline.model.decoder import Decoder
from pipeline.model.encoder import EquiBranch, EquivariantTrunk, InvBranch, LearnedCentroid

__all__ = ["CODAEOutput", "CODAE", "model_state_dict", "load_model_state"]


@dataclass(frozen=True)
class CODAEOutput:
    """Per-image outputs of :class:`CODAE`.

    x, y: (B,) centroid, normalised frame (image spans [-1, 1], y down).
    theta: (B,) orientation, radians CCW as displayed, in (-pi, pi].
    direction: (B, 2) the unit vector (cos theta, sin theta) the branch predicts.
    z: (B, D) pose-invariant latents.
    aligned: (B, C, S, S) aligned reconstruction in [0, 1].
    same_view: (B, C, S, S) aligned reconstruction moved to the pose, in [0, 1].
    extra_loss: named loss terms a model adds to the objective (e.g. a baseline's KL);
    empty for CODAE.
    """

    x: torch.Tensor
    y: torch.Tensor
    theta: torch.Tensor
    direction: torch.Tensor
    z: torch.Tensor
    aligned: torch.Tensor
    same_view: torch.Tensor
    extra_loss: dict[str, torch.Tensor] = field(default_factory=dict)


class CODAE(nn.Module):
    """The full model; ``config`` is the :class:`ModelConfig` it was built from.

    Every model the trainer handles (CODAE and the baselines of :mod:`pipeline.baselines`)
    has this interface: ``forward(images) -> CODAEOutput``, ``config``, and the flags below.
    """

    uses_moment_loss = True  # the trainer adds beta(t) x moment loss and the aligned-image term
    has_pose = True  # x, y, theta are meaningful outputs

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.trunk = EquivariantTrunk(config)
        side = config.image_size // 2 ** (len(config.widths) - 1)
        n_equi = config.widths[-1] * config.group_order * side * side
        self.centroid = LearnedCentroid(config.widths[0])
        self.b_equi = EquiBranch(n_equi, config.hidden, config.learn_centroid)
        self.b_inv = InvBranch(config.widths[-1], config.hidden, config.latent_dim)
        self.decoder = Decoder(config)

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, C, S, S) in [0, 1] -> x, y, direction (B, 2), z (B, D)."""
        equi, inv, inv_first = self.trunk(images, with_stem=True)
        x0, y0 = self.centroid(images, inv_first)  # learned first moment, full resolution
        x, y, direction = self.b_equi(equi, x0, y0)  # FC layers refine it and give the orientation
        z = self.b_inv(inv)
        return x, y, direction, z

    def decode_aligned(self, z: torch.Tensor) -> torch.Tensor:
        """(B, D) -> aligned images (B, C, S, S) in [0, 1]."""
        return torch.sigmoid(self.decoder(z))

    def forward(self, images: torch.Tensor) -> CODAEOutput:
        x, y, direction, z = self.encode(images)
        theta = torch.atan2(direction[:, 1], direction[:, 0])
        aligned = self.decode_aligned(z)
        same_view = warp_to_view(aligned, theta, x, y)
        return CODAEOutput(x=x, y=y, theta=theta, direction=direction, z=z, aligned=aligned, same_view=same_view)

    def export(self) -> "CODAE":
        """Turn the e2cnn trunk into plain torch in place (eval mode; faster inference).

        An exported model can no longer be trained or checkpointed.
        """
        self.eval()
        self.trunk.export()
        return self


def model_state_dict(model: CODAE) -> dict[str, torch.Tensor]:
    """State dict taken in train mode (no cached filter buffers), whatever the model's mode."""
    was_training = model.training
    model.train()
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.train(was_training)
    return state


def load_model_state(model: CODAE, state: dict[str, torch.Tensor]) -> CODAE:
    """Load a train-mode state dict strictly; a mismatch is a :class:`BadInputError`."""
    was_training = model.training
    model.train()
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()[0]
        raise BadInputError(f"checkpoint does not match the model configuration: {first}") from None
    finally:
        model.train(was_training)
    return model
