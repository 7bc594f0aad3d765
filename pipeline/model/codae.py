"""CODAE: centroid- and orientation-aware disentangling autoencoder.

Cha, Thiyagalingam et al., "Discovering fully semantic representations via centroid-
and orientation-aware feature learning", Nature Machine Intelligence 7, 307-314 (2025).

    images (B, C, S, S)
      -> EquivariantTrunk -> stem's invariant maps re-weight the sky-subtracted image -> learned first moment (x0, y0)
                          -> equivariant maps -> B_equi (group-axis Fourier read-out) -> offset, axis, direction
                          -> group max-pool (stem and deepest block) -> B_inv -> z (pose-invariant)
      z -> Euler encoding -> Decoder -> aligned image (centred, orientation 0)
      aligned, pose -> spatial transformer -> same-view reconstruction (and the view turned by a half turn,
                                               which tells whether the galaxy has a direction)

The pose read-out is equivariant by construction under the quarter turns of the pixel grid: turning
the input by 90 degrees moves x, y with it and theta by exactly 90 degrees, direction included.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from pipeline.config import ModelConfig
from pipeline.errors import BadInputError
from pipeline.geometry import warp_to_view
from pipeline.model.decoder import Decoder
from pipeline.model.encoder import (
    AlignedEncoder,
    EquiBranch,
    EquivariantPose,
    EquivariantTrunk,
    InvBranch,
    LearnedCentroid,
)
from pipeline.model.output import ModelOutput

__all__ = ["CODAE", "model_state_dict", "load_model_state"]


class CODAE(nn.Module):
    """The full model; ``config`` is the :class:`ModelConfig` it was built from.

    Every model the trainer handles (CODAE and the baselines of :mod:`pipeline.baselines`)
    has this interface: ``forward(images) -> ModelOutput``, ``config``, and the flags below.
    """

    uses_moment_loss = True  # the trainer adds beta(t) x moment loss and the aligned-image term
    has_pose = True  # x, y, theta are meaningful outputs

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.trunk = EquivariantTrunk(config)
        self.centroid = LearnedCentroid(config.widths[0], window=config.centroid_window)
        if config.pose_readout == "equivariant":
            self.b_equi: nn.Module = EquivariantPose(config.widths[-1], config.group_order)
        else:
            side = config.image_size // 2 ** (len(config.widths) - 1)
            self.b_equi = EquiBranch(config.widths[-1] * config.group_order * side * side, config.hidden,
                                     config.learn_centroid)
        aligned_features = config.hidden if config.aligned_encoder_width else 0
        self.b_aligned = (AlignedEncoder(config.channels, config.image_size, config.aligned_encoder_width,
                                         aligned_features) if aligned_features else None)
        self.b_inv = InvBranch(config.widths[0], config.widths[-1], config.hidden, config.latent_dim,
                               extra=aligned_features)
        self.decoder = Decoder(config)

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor,
                                                    torch.Tensor]:
        """(B, C, S, S) in [0, 1] -> x, y (normalised, y down), theta (radians CCW), direction logit, z (B, D)."""
        equi, inv, inv_first = self.trunk(images, with_stem=True)
        if self.config.pose_readout == "dense":
            x0, y0 = self.centroid(images, inv_first)
            x, y, vec = self.b_equi(equi, x0, y0)
            theta = torch.atan2(vec[:, 1], vec[:, 0])
            extra = None if self.b_aligned is None else self.b_aligned(images, theta, x, y)
            return x, y, theta, torch.ones_like(theta), self.b_inv(inv_first, inv, extra)
        phi, logit, dx, dy = self.b_equi(equi)
        if self.config.learn_centroid:
            x0, y0 = self.centroid(images, inv_first)  # learned first moment, full resolution
            x, y = (x0 + dx).clamp(-1, 1), (y0 + dy).clamp(-1, 1)  # refined by a vector that turns with the image
        else:
            x = y = torch.zeros_like(phi)
        theta = phi + torch.pi * (logit < 0).to(phi.dtype)  # the half turn is chosen, not differentiated
        extra = None if self.b_aligned is None else self.b_aligned(images, theta, x, y)
        z = self.b_inv(inv_first, inv, extra)
        return x, y, theta, logit, z

    def decode_aligned(self, z: torch.Tensor) -> torch.Tensor:
        """(B, D) -> aligned images (B, C, S, S) in [0, 1]."""
        return torch.sigmoid(self.decoder(z))

    def forward(self, images: torch.Tensor) -> ModelOutput:
        x, y, theta, logit, z = self.encode(images)
        theta = torch.remainder(theta + torch.pi, 2 * torch.pi) - torch.pi  # (-pi, pi]
        direction = torch.stack([torch.cos(theta), torch.sin(theta)], dim=1)  # (B, 2)
        aligned = self.decode_aligned(z)
        same_view = warp_to_view(aligned, theta, x, y)
        if self.config.pose_readout == "dense":
            return ModelOutput(x=x, y=y, theta=theta, direction=direction, z=z, aligned=aligned, same_view=same_view)
        flip = warp_to_view(aligned, theta + torch.pi, x, y)
        return ModelOutput(x=x, y=y, theta=theta, direction=direction, z=z, aligned=aligned, same_view=same_view,
                           same_view_flip=flip, direction_logit=logit)

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
