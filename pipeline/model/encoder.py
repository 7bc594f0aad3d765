"""Translation- and rotation-equivariant encoder with its two branches.

Cha et al. 2025 (CODAE), Fig. 1a: group-equivariant convolutions, then
``B_equi`` (fully connected layers on the equivariant maps -> centroid and
orientation) and ``B_inv`` (group max-pooling -> invariant latents z).

Down-sampling is a 2x2 max pool with stride 2 on even-sized maps: its windows map
onto windows under 90-degree turns, so the C_4 subgroup acts exactly on the pixel
grid (odd kernels with ``padding = k // 2`` keep convolutions exact too).
"""

from __future__ import annotations

import warnings

import torch
import torch.nn as nn
from e2cnn import nn as enn

from pipeline.config import ModelConfig
from pipeline.geometry import normalized_grid
from pipeline.model.batchnorm import RegularBatchNorm
from pipeline.model.fields import build_fields
from pipeline.moments import subtract_background

__all__ = ["EquivariantTrunk", "LearnedCentroid", "EquiBranch", "InvBranch"]


class EquivariantTrunk(nn.Module):
    """R2Conv -> RegularBatchNorm (InnerBatchNorm's statistics, faster) -> ReLU blocks, 2x2 max pool between blocks.

    (B, C, H, W) -> equivariant maps (B, widths[-1] * N, H / 2**(L-1), W / 2**(L-1)).
    After :meth:`export` it runs as plain torch with identical outputs.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        fields = build_fields(cfg.group_order, cfg.channels, cfg.widths)
        self.in_type = fields.input
        layers: list[enn.EquivariantModule] = []
        prev = fields.input
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*uint8.*")
            for i, (ftype, k) in enumerate(zip(fields.blocks, cfg.kernels)):
                layers += [enn.R2Conv(prev, ftype, kernel_size=k, padding=k // 2, bias=False),
                           RegularBatchNorm(ftype), enn.ReLU(ftype, inplace=True)]
                if i < len(fields.blocks) - 1:
                    layers.append(enn.PointwiseMaxPool(ftype, kernel_size=2, stride=2))
                prev = ftype
        self.out_type = prev
        # stem: the first block at full resolution; body: the rest.
        self.stem: nn.Module = enn.SequentialModule(*layers[:3])
        self.stem_pool = enn.GroupPooling(fields.blocks[0])
        self.body: nn.Module = enn.SequentialModule(*layers[3:])
        self.pool = enn.GroupPooling(prev)
        self.stem_fields = cfg.widths[0]
        self.exported = False

    def forward(self, images: torch.Tensor, *, with_stem: bool = False):
        """Return (equivariant maps (B, F*N, h, w), group-max-pooled invariant maps (B, F, h, w));
        with ``with_stem`` also the first block's invariant maps at full resolution (B, F0, H, W)."""
        if self.exported:
            first = self.stem(images)
            equi = self.body(first)
            out = (equi, self.pool(equi))
            return (*out, self.stem_pool(first)) if with_stem else out
        first = self.stem(enn.GeometricTensor(images, self.in_type))
        equi = self.body(first)
        out = (equi.tensor, self.pool(equi).tensor)
        return (*out, self.stem_pool(first).tensor) if with_stem else out

    def export(self) -> "EquivariantTrunk":
        """Replace the e2cnn modules by their plain-torch equivalents, in place (eval mode)."""
        self.eval()
        self.stem = self.stem.export()
        self.stem_pool = self.stem_pool.export()
        self.body = self.body.export()
        self.pool = self.pool.export()
        self.exported = True
        return self


class LearnedCentroid(nn.Module):
    """A learned first moment: the sky-subtracted image's own pixel weights, each scaled by a
    learned factor in (0, 2) from the stem's invariant maps, then the weighted mean of the pixel
    coordinates (normalised frame, y down).

    At initialisation the factor is exactly 1, so the estimate *is* the moment centroid the loss
    anchors to; training may then down-weight pixels that belong to something else (a neighbour,
    an artefact).  Sky pixels weigh nothing, so the estimate is not pulled towards the frame
    centre.  (Weighting every pixel, sky included, by a positive feature would: the sky's
    thousands of small positive weights shrink the centroid towards the centre, to 0.57 of the
    moment offset and 7 px RMS on XYRCS after 8 CPU minutes.)  The factors come from
    rotation-invariant features at full resolution and the sky level from the border ring, so
    the estimate moves and turns with the image (equivariant up to the borders).
    """

    def __init__(self, in_fields: int, *, ring: int = 4, k_sigma: float = 1.0):
        super().__init__()
        self.weight = nn.Conv2d(in_fields, 1, kernel_size=1)
        nn.init.zeros_(self.weight.weight)
        nn.init.zeros_(self.weight.bias)
        self.ring, self.k_sigma = ring, k_sigma

    def forward(self, images: torch.Tensor, inv_first: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``images`` (B, C, H, W) in [0, 1]; ``inv_first`` (B, F, H, W) -> x, y (B,) normalised."""
        signal = subtract_background(images.float(), ring=self.ring, k_sigma=self.k_sigma)  # (B, H, W) >= 0
        wts = signal * 2.0 * torch.sigmoid(self.weight(inv_first).float())[:, 0]  # (B, H, W) >= 0
        b, h, w = wts.shape
        xx, yy = normalized_grid(h, w, device=images.device)
        total = wts.sum(dim=(1, 2)).clamp_min(1e-6)  # an empty image gives the frame centre
        return (wts * xx).sum(dim=(1, 2)) / total, (wts * yy).sum(dim=(1, 2)) / total


class EquiBranch(nn.Module):
    """B_equi: fully connected layers on the equivariant maps -> (x, y, cos theta, sin theta).

    x, y are normalised (image spans [-1, 1], y down) and bounded by tanh; the
    orientation comes as a unit vector so theta covers [0, 360).
    """

    def __init__(self, in_features: int, hidden: int, learn_centroid: bool):
        super().__init__()
        self.learn_centroid = learn_centroid
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(in_features, hidden), nn.ReLU(inplace=True),
                                 nn.Linear(hidden, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 4))

    def forward(self, equi: torch.Tensor, x0: torch.Tensor | None = None,
                y0: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``x0``, ``y0``: a centroid estimate the FC output refines (within +-0.1 normalised units)."""
        out = self.net(equi)  # (B, 4)
        if self.learn_centroid and x0 is not None:
            x = (x0 + 0.1 * torch.tanh(out[:, 0])).clamp(-1, 1)
            y = (y0 + 0.1 * torch.tanh(out[:, 1])).clamp(-1, 1)
        elif self.learn_centroid:
            x, y = torch.tanh(out[:, 0]), torch.tanh(out[:, 1])
        else:
            x = y = torch.zeros_like(out[:, 0])
        vec = out[:, 2:4]
        vec = vec / vec.norm(dim=1, keepdim=True).clamp_min(1e-6)  # (B, 2) unit (cos, sin)
        return x, y, vec


class InvBranch(nn.Module):
    """B_inv: global spatial max of the group-pooled maps, then fully connected layers -> z."""

    def __init__(self, in_features: int, hidden: int, latent_dim: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(inplace=True),
                                 nn.Linear(hidden, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, latent_dim))

    def forward(self, inv: torch.Tensor) -> torch.Tensor:
        pooled = inv.amax(dim=(2, 3))  # (B, F)
        return self.net(pooled)  # (B, latent_dim)
