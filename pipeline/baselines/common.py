"""Pieces shared by the baselines: plain conv encoder/decoder, coordinate generator, KL terms.

Frames and units follow :mod:`pipeline.geometry`: a pose is ``(theta, x, y)`` with theta in
radians counter-clockwise as displayed and ``x``, ``y`` the object's centre in the normalised
frame (image spans [-1, 1], y down).  The coordinate generators draw the *same view* by
evaluating the aligned template at ``M(-theta) (p - t)`` for every output pixel centre ``p``,
exactly the points :func:`pipeline.geometry.warp_to_view` samples, so a baseline's pose means
what CODAE's means.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from pipeline.config import ModelConfig
from pipeline.geometry import pose_to_affine
from pipeline.model.output import ModelOutput

__all__ = [
    "ConvEncoder",
    "ConvDecoder",
    "CoordinateGenerator",
    "pose_coordinates",
    "gaussian_kl",
    "reparameterise",
    "no_pose_output",
    "pixels",
    "wrap_angle",
]


def pixels(cfg: ModelConfig) -> int:
    """Values per image, C x S x S: KL terms are divided by it because the trainer's
    reconstruction loss is a per-pixel *mean* (the per-image sum divided by this number)."""
    return cfg.channels * cfg.image_size * cfg.image_size


def _conv_widths(cfg: ModelConfig) -> list[int]:
    n_down = len(cfg.widths) - 1
    return [cfg.decoder_width * 2**i for i in range(n_down + 1)]  # e.g. 16, 32, 64, 128


class ConvEncoder(nn.Module):
    """(B, C, S, S) -> (B, out_features): a 3x3 conv, then ``len(widths) - 1`` stride-2 convs
    (BatchNorm, ReLU), then two fully connected layers.  Mirrors :class:`ConvDecoder`."""

    def __init__(self, cfg: ModelConfig, out_features: int):
        super().__init__()
        widths = _conv_widths(cfg)
        layers: list[nn.Module] = [nn.Conv2d(cfg.channels, widths[0], 3, padding=1, bias=False),
                                   nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True)]
        for cin, cout in zip(widths[:-1], widths[1:]):
            layers += [nn.Conv2d(cin, cout, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(cout),
                       nn.ReLU(inplace=True)]
        self.convs = nn.Sequential(*layers)
        side = cfg.image_size // 2 ** (len(widths) - 1)
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(widths[-1] * side * side, cfg.hidden), nn.ReLU(inplace=True),
                                nn.Linear(cfg.hidden, out_features))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.fc(self.convs(images))  # (B, out_features)


class ConvDecoder(nn.Module):
    """(B, in_features) -> logits (B, C, S, S): two fully connected layers, then nearest
    up-sampling + 3x3 conv blocks (as CODAE's :class:`pipeline.model.decoder.Decoder`, without
    its Euler encoding)."""

    def __init__(self, cfg: ModelConfig, in_features: int):
        super().__init__()
        widths = _conv_widths(cfg)[::-1]  # e.g. 128, 64, 32, 16
        self.base = cfg.image_size // 2 ** (len(widths) - 1)
        self.start = widths[0]
        self.fc = nn.Sequential(nn.Linear(in_features, cfg.hidden), nn.ReLU(inplace=True),
                                nn.Linear(cfg.hidden, self.start * self.base * self.base), nn.ReLU(inplace=True))
        blocks: list[nn.Module] = []
        for cin, cout in zip(widths[:-1], widths[1:]):
            blocks += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(cin, cout, 3, padding=1, bias=False),
                       nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
        blocks.append(nn.Conv2d(widths[-1], cfg.channels, 3, padding=1))
        self.convs = nn.Sequential(*blocks)

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        h = self.fc(code).view(-1, self.start, self.base, self.base)  # (B, start, base, base)
        return self.convs(h)  # (B, C, S, S) logits


def pose_coordinates(theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor, size: int) -> torch.Tensor:
    """Template coordinates (B, S, S, 2) at which to draw the same view of a pose.

    Row ``i``, column ``j`` holds ``M(-theta) (p_ij - t)`` (normalised frame, y down), the point
    of the aligned template that lands on pixel centre ``p_ij``; identical to the sampling
    points of :func:`pipeline.geometry.warp_to_view`.  The identity pose gives the pixel grid.
    """
    affine = pose_to_affine(theta, x, y)  # (B, 2, 3)
    return F.affine_grid(affine, [theta.shape[0], 1, size, size], align_corners=False)  # (B, S, S, 2)


class CoordinateGenerator(nn.Module):
    """Spatial-VAE generator (Bepler et al. 2019): an MLP ``g(u, z)`` evaluated at every coordinate.

    ``h_1 = tanh(W_u u + W_z z + b)``, then ``n_hidden_layers`` tanh layers of ``hidden`` units,
    then a linear layer to ``C`` logits.  ``forward(coords (B, S, S, 2), z (B, D))`` returns logits
    (B, C, S, S).  The content term ``W_z z`` is computed once per image, not per pixel.
    """

    def __init__(self, latent_dim: int, channels: int, hidden: int, n_hidden_layers: int = 2):
        super().__init__()
        self.coord = nn.Linear(2, hidden)
        self.content = nn.Linear(latent_dim, hidden, bias=False)
        layers: list[nn.Module] = []
        for _ in range(n_hidden_layers):
            layers += [nn.Linear(hidden, hidden), nn.Tanh()]
        layers.append(nn.Linear(hidden, channels))
        self.net = nn.Sequential(*layers)

    def forward(self, coords: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        b, s, _, _ = coords.shape
        h = self.coord(coords.reshape(b, s * s, 2)) + self.content(z)[:, None, :]  # (B, S*S, hidden)
        out = self.net(torch.tanh(h))  # (B, S*S, C)
        return out.transpose(1, 2).reshape(b, -1, s, s)  # (B, C, S, S)


def reparameterise(mu: torch.Tensor, logvar: torch.Tensor, training: bool) -> torch.Tensor:
    """A sample ``mu + eps * sigma`` in training, the mean otherwise."""
    if not training:
        return mu
    return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor, prior_std: float = 1.0) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, prior_std^2)) summed over the last dimension: (B,)."""
    var_ratio = torch.exp(logvar) / prior_std**2
    return 0.5 * (var_ratio + mu**2 / prior_std**2 - 1.0 - torch.log(var_ratio)).sum(dim=-1)


def no_pose_output(z: torch.Tensor, recon: torch.Tensor, extra_loss: dict[str, torch.Tensor]) -> ModelOutput:
    """Output of a model without pose: x = y = theta = 0, direction (1, 0), aligned = same view."""
    zero = torch.zeros(z.shape[0], device=z.device, dtype=z.dtype)
    direction = torch.stack([torch.ones_like(zero), zero], dim=1)
    return ModelOutput(x=zero, y=zero, theta=zero, direction=direction, z=z, aligned=recon, same_view=recon,
                       extra_loss=extra_loss)


def wrap_angle(theta: torch.Tensor) -> torch.Tensor:
    """Radians into (-pi, pi]."""
    return torch.atan2(torch.sin(theta), torch.cos(theta))


TWO_PI = 2.0 * math.pi
