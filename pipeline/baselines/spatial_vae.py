"""spatial-VAE (Bepler, Zhong, Kelley, Brignole & Berger, "Explicitly disentangling image content
from translation and rotation with spatial-VAE", NeurIPS 2019), small version.

    images (B, C, S, S) -> ConvEncoder -> q(z), q(theta), q(dx, dy)   (all Gaussian)
    pixel grid p -> u = M(-theta) (p - t)  (the template point that lands on p)
    CoordinateGenerator g(u, z) -> sigmoid -> same view;   g(p, z) -> aligned (pose-free)

Priors: ``z ~ N(0, I)``, ``theta ~ N(0, pi^2)`` (the paper's setting for full in-plane rotation),
``t ~ N(0, 0.5^2)`` per axis in the normalised frame (the paper's ``dx_scale`` is 0.1 in its own
units; our objects move over about +-0.6).  With ``learn_centroid=False`` (centred data) the
translation latents are dropped, as the paper does for centred particles.

Differences from the published code, on purpose: a small conv encoder instead of its MLP on
raw pixels (the MLP is slow and large at 64x64); the same-view grid uses
:func:`pipeline.baselines.common.pose_coordinates`, i.e. the package's pose convention (theta
CCW as displayed, y down), so ``theta`` is comparable with CODAE's.  The KL terms are divided by
the number of pixel values because the trainer's reconstruction loss is a per-pixel mean
(see :mod:`pipeline.baselines.beta_vae`), scaled by ``ModelConfig.kl_weight``.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from pipeline.baselines.common import (
    ConvEncoder,
    CoordinateGenerator,
    gaussian_kl,
    pixels,
    pose_coordinates,
    reparameterise,
    wrap_angle,
)
from pipeline.config import ModelConfig
from pipeline.model.output import ModelOutput

__all__ = ["SpatialVAE"]


class SpatialVAE(nn.Module):
    """Content latents ``latent_dim``, one rotation latent and two translation latents."""

    uses_moment_loss = False  # pose is learned from reconstruction alone
    has_pose = True  # x, y, theta are the means of q(t), q(theta)
    theta_prior_std = math.pi  # radians
    translation_prior_std = 0.5  # normalised units

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        d = config.latent_dim
        self.encoder = ConvEncoder(config, 2 * d + 2 + 4)  # z (mu, logvar), theta (mu, logvar), t (mu, logvar)
        self.generator = CoordinateGenerator(d, config.channels, config.hidden)

    def draw(self, z: torch.Tensor, theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Images (B, C, S, S) in [0, 1] of content ``z`` at pose (theta, x, y)."""
        coords = pose_coordinates(theta, x, y, self.config.image_size)
        return torch.sigmoid(self.generator(coords, z))

    def decode_aligned(self, z: torch.Tensor) -> torch.Tensor:
        """(B, D) -> pose-free images (identity pose), (B, C, S, S)."""
        zero = torch.zeros(z.shape[0], device=z.device, dtype=z.dtype)
        return self.draw(z, zero, zero, zero)

    def forward(self, images: torch.Tensor) -> ModelOutput:
        d = self.config.latent_dim
        h = self.encoder(images)  # (B, 2 D + 6)
        z_mu, z_logvar = h[:, :d], h[:, d:2 * d].clamp(-10, 10)
        r_mu, r_logvar = h[:, 2 * d:2 * d + 1], h[:, 2 * d + 1:2 * d + 2].clamp(-10, 10)
        t_mu, t_logvar = h[:, 2 * d + 2:2 * d + 4], h[:, 2 * d + 4:2 * d + 6].clamp(-10, 10)
        if not self.config.learn_centroid:
            t_mu = torch.zeros_like(t_mu)
        z = reparameterise(z_mu, z_logvar, self.training)
        rot = reparameterise(r_mu, r_logvar, self.training)[:, 0]
        t = reparameterise(t_mu, t_logvar, self.training) if self.config.learn_centroid else t_mu
        same_view = self.draw(z, rot, t[:, 0], t[:, 1])
        kl = gaussian_kl(z_mu, z_logvar) + gaussian_kl(r_mu, r_logvar, self.theta_prior_std)
        if self.config.learn_centroid:
            kl = kl + gaussian_kl(t_mu, t_logvar, self.translation_prior_std)
        theta = wrap_angle(r_mu[:, 0] if not self.training else rot)
        x, y = (t_mu if not self.training else t).unbind(dim=1)
        with torch.set_grad_enabled(not self.training and torch.is_grad_enabled()):
            aligned = self.decode_aligned(z)  # the loss never uses it: no graph in training
        return ModelOutput(x=x, y=y, theta=theta, direction=torch.stack([torch.cos(theta), torch.sin(theta)], dim=1),
                           z=z_mu if not self.training else z, aligned=aligned, same_view=same_view,
                           extra_loss={"kl": self.config.kl_weight * kl.mean() / pixels(self.config)})
