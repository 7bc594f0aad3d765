"""DAE: disentangling autoencoder (Cha & Thiyagalingam, "Disentangling autoencoders (DAE)",
ICML 2023), small convolutional version.

    images (B, C, S, S) -> ConvEncoder -> z (B, D)
    z -> Euler encoding (cos z, sin z) -> Decoder (CODAE's) -> sigmoid -> reconstruction

Deterministic, no prior and no regulariser: the Euler encoding bounds each latent on a circle
and is the only constraint.  The decoder is CODAE's own :class:`pipeline.model.decoder.Decoder`
(which applies the Euler encoding), so DAE and CODAE differ only in the encoder and the pose.
No pose: ``x = y = theta = 0``.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from pipeline.baselines.common import ConvEncoder, no_pose_output
from pipeline.config import ModelConfig
from pipeline.model.decoder import Decoder
from pipeline.model.output import ModelOutput

__all__ = ["DAE"]


class DAE(nn.Module):
    """Deterministic autoencoder with Euler-encoded latents."""

    uses_moment_loss = False  # reconstruction only
    has_pose = False  # x, y, theta are zeros

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.encoder = ConvEncoder(config, config.latent_dim)
        self.decoder = Decoder(config)

    def decode_aligned(self, z: torch.Tensor) -> torch.Tensor:
        """(B, D) -> images (B, C, S, S) in [0, 1]."""
        return torch.sigmoid(self.decoder(z))

    def forward(self, images: torch.Tensor) -> ModelOutput:
        z = self.encoder(images)  # (B, D)
        return no_pose_output(z, self.decode_aligned(z), {})
