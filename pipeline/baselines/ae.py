"""Plain convolutional autoencoder: the reference a pose-free latent must beat.

    images (B, C, S, S) -> ConvEncoder -> z (B, D) -> ConvDecoder -> sigmoid -> reconstruction

Deterministic, no pose, no prior and no regulariser: the trainer's per-pixel reconstruction
loss is the whole objective.  The encoder and decoder are the shared plain blocks of
:mod:`pipeline.baselines.common` (strided convolutions down, nearest up-sampling up), so the
latent size ``latent_dim`` is the only bottleneck.  ``x = y = theta = 0``; the aligned image is
the reconstruction itself.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from pipeline.baselines.common import ConvDecoder, ConvEncoder, no_pose_output
from pipeline.config import ModelConfig
from pipeline.model.output import ModelOutput

__all__ = ["AE"]


class AE(nn.Module):
    """Conv encoder -> ``latent_dim`` numbers -> conv decoder."""

    uses_moment_loss = False  # reconstruction only
    has_pose = False  # x, y, theta are zeros

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.encoder = ConvEncoder(config, config.latent_dim)
        self.decoder = ConvDecoder(config, config.latent_dim)

    def decode_aligned(self, z: torch.Tensor) -> torch.Tensor:
        """(B, D) -> images (B, C, S, S) in [0, 1] (no pose, so aligned = same view)."""
        return torch.sigmoid(self.decoder(z))

    def forward(self, images: torch.Tensor) -> ModelOutput:
        z = self.encoder(images)  # (B, D)
        return no_pose_output(z, self.decode_aligned(z), {})
