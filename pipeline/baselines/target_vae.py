"""TARGET-VAE (Nasiri & Bepler, "Unsupervised object representation learning using translation
and rotation group equivariant VAE", NeurIPS 2022), small version.

    images (B, C, S, S) -> EquivariantTrunk (C_N group convolutions, CODAE's)
        equivariant maps (B, F, N, h, w) -> per (rotation k, cell) attention logit a and a
                                            rotation offset d (shared 1x1 weights: equivariant)
        group-pooled maps (B, F, h, w)    -> per cell content mu, log sigma^2 (B, D) and a
                                            translation offset inside the cell
    q(r = k, t = cell | x) = softmax(a) over N x h x w  -> one (k, cell) drawn (straight-through
    Gumbel-softmax in training, the mode in eval)
    theta = 2 pi k / N + d,  (x, y) = cell centre + offset,  z ~ N(mu_cell, sigma_cell)
    CoordinateGenerator g(M(-theta) (p - t), z) -> same view;  g(p, z) -> aligned

Rotating the input by 2 pi / N counter-clockwise as displayed rolls the regular fields by +1
(checked in the tests), so channel k stands for the angle 2 pi k / N CCW and ``theta`` follows
the package convention up to a constant the generator absorbs.

Objective: the trainer's reconstruction loss plus ``extra_loss["kl"]`` = kl_weight x (KL of
the content Gaussian + KL(q(r, t) || uniform)) / (C S S).

Differences from the paper, for a CPU-sized model: the attention lives on the trunk's
down-sampled grid (h = S / 2^(L-1), 8 x 8 at 64 x 64 with four blocks) with a learned
continuous offset inside each cell, instead of full resolution; the rotation offset inside a bin
is deterministic (bounded by tanh to +-pi / N) rather than a Gaussian; the prior over
translations is uniform over cells; one straight-through Gumbel-softmax sample replaces the
paper's estimator for the discrete latents.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from pipeline.baselines.common import (
    CoordinateGenerator,
    gaussian_kl,
    pixels,
    pose_coordinates,
    reparameterise,
    wrap_angle,
)
from pipeline.config import ModelConfig
from pipeline.model.encoder import EquivariantTrunk
from pipeline.model.output import ModelOutput

__all__ = ["TargetVAE"]


class TargetVAE(nn.Module):
    """Discretised rotation x translation attention over a C_N-equivariant trunk, spatial generator."""

    uses_moment_loss = False  # pose from reconstruction alone
    has_pose = True  # x, y, theta are the chosen (rotation, cell) plus offsets

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.trunk = EquivariantTrunk(config)
        f, n, d = config.widths[-1], config.group_order, config.latent_dim
        self.side = config.image_size // 2 ** (len(config.widths) - 1)
        # One weight per field, shared by the N group channels of the field: equivariant 1x1 conv.
        self.pose_head = nn.Parameter(torch.randn(f, 2) / math.sqrt(f))  # -> (attention logit, rotation offset)
        self.pose_bias = nn.Parameter(torch.zeros(2))
        self.content_head = nn.Sequential(nn.Conv2d(f, config.hidden, 1), nn.ReLU(inplace=True),
                                          nn.Conv2d(config.hidden, 2 * d + 2, 1))
        self.generator = CoordinateGenerator(d, config.channels, config.hidden)
        cells = (2 * torch.arange(self.side, dtype=torch.float32) + 1) / self.side - 1  # cell centres, normalised
        cy, cx = torch.meshgrid(cells, cells, indexing="ij")
        self.register_buffer("cell_x", cx.reshape(-1), persistent=False)  # (h w,)
        self.register_buffer("cell_y", cy.reshape(-1), persistent=False)
        self.register_buffer("bin_angle", 2 * math.pi * torch.arange(n, dtype=torch.float32) / n, persistent=False)

    def draw(self, z: torch.Tensor, theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Images (B, C, S, S) in [0, 1] of content ``z`` at pose (theta, x, y)."""
        return torch.sigmoid(self.generator(pose_coordinates(theta, x, y, self.config.image_size), z))

    def decode_aligned(self, z: torch.Tensor) -> torch.Tensor:
        """(B, D) -> pose-free images (identity pose), (B, C, S, S)."""
        zero = torch.zeros(z.shape[0], device=z.device, dtype=z.dtype)
        return self.draw(z, zero, zero, zero)

    def attention(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits (B, N, h w), rotation offsets (B, N, h w), content mu/logvar (B, h w, D), shifts (B, h w, 2)."""
        cfg = self.config
        equi, inv = self.trunk(images)  # (B, F N, h, w), (B, F, h, w)
        b, _, h, w = equi.shape
        equi = equi.view(b, cfg.widths[-1], cfg.group_order, h * w)  # (B, F, N, h w)
        head = torch.einsum("bfnp,fo->bonp", equi, self.pose_head) + self.pose_bias[None, :, None, None]  # (B, 2, N, hw)
        content = self.content_head(inv).flatten(2).transpose(1, 2)  # (B, h w, 2 D + 2)
        d = cfg.latent_dim
        half_cell = 1.0 / self.side
        return {"logits": head[:, 0], "rot_offset": torch.tanh(head[:, 1]) * math.pi / cfg.group_order,
                "mu": content[..., :d], "logvar": content[..., d:2 * d].clamp(-10, 10),
                "shift": torch.tanh(content[..., 2 * d:]) * half_cell}

    def forward(self, images: torch.Tensor) -> ModelOutput:
        cfg = self.config
        a = self.attention(images)
        b, n, p = a["logits"].shape
        logits = a["logits"].reshape(b, n * p)
        if not cfg.learn_centroid:  # centred data: only the centre cells may be chosen
            far = (self.cell_x.abs() > 1.5 / self.side) | (self.cell_y.abs() > 1.5 / self.side)
            logits = logits.masked_fill(far.repeat(n)[None], -1e4)
        if self.training:
            weights = F.gumbel_softmax(logits, tau=1.0, hard=True)  # (B, N p) one-hot, soft gradient
        else:
            weights = F.one_hot(logits.argmax(dim=1), n * p).to(logits.dtype)
        w = weights.view(b, n, p)
        w_rot, w_pos = w.sum(dim=2), w.sum(dim=1)  # (B, N), (B, p)
        theta = (w_rot * self.bin_angle).sum(1) + (w * a["rot_offset"]).sum(dim=(1, 2))
        shift = (w_pos[..., None] * a["shift"]).sum(1)  # (B, 2)
        x = (w_pos * self.cell_x).sum(1) + shift[:, 0]
        y = (w_pos * self.cell_y).sum(1) + shift[:, 1]
        if not cfg.learn_centroid:
            x, y = torch.zeros_like(x), torch.zeros_like(y)
        mu = (w_pos[..., None] * a["mu"]).sum(1)  # (B, D) content at the chosen cell
        logvar = (w_pos[..., None] * a["logvar"]).sum(1)
        z = reparameterise(mu, logvar, self.training)
        same_view = self.draw(z, theta, x, y)
        q = torch.softmax(logits, dim=1)
        kl_cat = (q * torch.log(q.clamp_min(1e-12))).sum(1) + math.log(n * p)  # KL(q || uniform)
        kl = gaussian_kl(mu, logvar) + kl_cat
        with torch.set_grad_enabled(not self.training and torch.is_grad_enabled()):
            aligned = self.decode_aligned(z)  # the loss never uses it: no graph in training
        theta = wrap_angle(theta)
        return ModelOutput(x=x, y=y, theta=theta, direction=torch.stack([torch.cos(theta), torch.sin(theta)], dim=1),
                           z=mu if not self.training else z, aligned=aligned, same_view=same_view,
                           extra_loss={"kl": cfg.kl_weight * kl.mean() / pixels(cfg)})
