"""beta-VAE (Higgins et al., "beta-VAE: Learning basic visual concepts with a constrained
variational framework", ICLR 2017), small convolutional version.

    images (B, C, S, S) -> ConvEncoder -> mu, log sigma^2 (B, D) -> z = mu + eps sigma
    z -> ConvDecoder -> sigmoid -> reconstruction

Objective (through :func:`pipeline.loss.codae_loss`): the trainer's per-pixel reconstruction
loss (mean BCE or MSE) plus ``extra_loss["kl"] = beta * KL(q(z|x) || N(0, I)) / (C S S)``, i.e.
the paper's per-image ``sum recon + beta KL`` divided by the number of pixel values, so that
``beta = ModelConfig.kl_weight`` keeps its published meaning (beta = 4 for dSprites).
No pose: ``x = y = theta = 0``; ``z`` is the posterior mean in eval mode, a sample in training.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from pipeline.baselines.common import ConvDecoder, ConvEncoder, gaussian_kl, no_pose_output, pixels, reparameterise
from pipeline.config import ModelConfig
from pipeline.model.output import ModelOutput

__all__ = ["BetaVAE"]


class BetaVAE(nn.Module):
    """Gaussian latent of ``latent_dim`` dimensions, KL weight ``kl_weight``."""

    uses_moment_loss = False  # no image-moment prior: reconstruction + KL only
    has_pose = False  # x, y, theta are zeros

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.encoder = ConvEncoder(config, 2 * config.latent_dim)
        self.decoder = ConvDecoder(config, config.latent_dim)

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, S, S) in [0, 1] -> posterior mean and log-variance, each (B, D)."""
        mu, logvar = self.encoder(images).chunk(2, dim=1)
        return mu, logvar.clamp(-10.0, 10.0)

    def decode_aligned(self, z: torch.Tensor) -> torch.Tensor:
        """(B, D) -> images (B, C, S, S) in [0, 1] (no pose, so aligned = same view)."""
        return torch.sigmoid(self.decoder(z))

    def forward(self, images: torch.Tensor) -> ModelOutput:
        mu, logvar = self.encode(images)
        z = reparameterise(mu, logvar, self.training)
        recon = self.decode_aligned(z)
        kl = gaussian_kl(mu, logvar).mean() / pixels(self.config)
        return no_pose_output(mu if not self.training else z, recon, {"kl": self.config.kl_weight * kl})
