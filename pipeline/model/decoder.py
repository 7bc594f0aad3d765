"""Decoder: Euler-encoded latents -> the aligned image (centred, orientation 0).

Euler encoding follows the DAE of Cha & Thiyagalingam (ICML 2023): each latent
enters the decoder as (cos z_i, sin z_i), which bounds the code without a prior.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from pipeline.config import ModelConfig
from pipeline.model.batchnorm import FieldBatchNorm2d

__all__ = ["euler_encode", "Decoder"]


def euler_encode(z: torch.Tensor) -> torch.Tensor:
    """(B, D) -> (B, 2 D): cos of each latent, then sin of each latent."""
    return torch.cat([torch.cos(z), torch.sin(z)], dim=1)


class Decoder(nn.Module):
    """(B, D) latents -> (B, C, S, S) aligned images in [0, 1]."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        n_up = len(cfg.widths) - 1
        self.base = cfg.image_size // 2 ** n_up
        widths = [cfg.decoder_width * 2 ** (n_up - i) for i in range(n_up + 1)]  # e.g. 128, 64, 32, 16
        self.start = widths[0]
        self.fc = nn.Sequential(nn.Linear(2 * cfg.latent_dim, cfg.hidden), nn.ReLU(inplace=True),
                                nn.Linear(cfg.hidden, self.start * self.base * self.base), nn.ReLU(inplace=True))
        blocks: list[nn.Module] = []
        for cin, cout in zip(widths[:-1], widths[1:]):
            blocks += [nn.Upsample(scale_factor=2, mode="nearest"),
                       nn.Conv2d(cin, cout, 3, padding=1, bias=False), FieldBatchNorm2d(cout), nn.ReLU(inplace=True)]
        blocks.append(nn.Conv2d(widths[-1], cfg.channels, 3, padding=1))
        self.convs = nn.Sequential(*blocks)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Return logits of the aligned image; apply ``sigmoid`` for intensities."""
        h = self.fc(euler_encode(z))  # (B, start * base * base)
        h = h.view(-1, self.start, self.base, self.base)  # (B, start, base, base)
        return self.convs(h)  # (B, C, S, S) logits
