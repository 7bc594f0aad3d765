"""IRL-INR (Kwon, Kim, Kim & Ryu, "Rotation and translation invariant representation learning
with implicit neural representations", ICML 2023), small version.

    images (B, C, S, S) -> ConvEncoder -> t (B, 2), rotation vector (B, 2), z (B, D)
    z -> HyperNetwork -> weights of a per-image INR  f_z(u): Fourier features of u -> MLP -> C
    same view = f_z(M(-theta) (p - t)) on the pixel grid p;   aligned = f_z(p)

Training terms (``extra_loss``, only in training mode), as in the published code:

* ``symmetry`` (weight 15): symmetry breaking by the centre of mass.  The predicted translation
  is pulled to the image's intensity centroid (sky removed as in :mod:`pipeline.moments`); for
  centred data (``learn_centroid=False``) there is no translation and the rotation is pulled to
  the angle of the centre-of-mass vector, ``1 - cos(theta - theta_com)`` weighted by
  ``tanh(|com| / pixel)`` as :mod:`pipeline.loss` does for its COM prior.
* ``consistency`` (weight 1): the content code of a randomly turned (uniform angle) and shifted
  (N(0, 0.1) normalised) copy of the batch matches the original's, mean squared error.

Known defect of the published code and what we do instead: there the two numbers the encoder
predicts serve as *both* the translation and, through the angle of that same vector, the
rotation (``theta = atan2(c_y, c_x)`` of the predicted centre).  For translated objects that
ties the orientation to the position.  We predict the rotation separately (a unit vector, as
CODAE does) and use the COM angle as its anchor only for centred data, where the published
choice is sound; for translated data the rotation is learned from reconstruction and the
consistency term alone.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from pipeline.baselines.common import ConvEncoder, pose_coordinates, wrap_angle
from pipeline.config import ModelConfig
from pipeline.geometry import warp_to_view
from pipeline.model.output import ModelOutput
from pipeline.moments import com_orientation, image_moments, subtract_background

__all__ = ["IRLINR", "HyperINR"]

SYMMETRY_WEIGHT = 15.0  # as in the published training script
CONSISTENCY_WEIGHT = 1.0  # the published "coefficient"
AUGMENT_SHIFT_STD = 0.1  # normalised units (the published code shifts by N(0, 5 px))


class HyperINR(nn.Module):
    """Hypernetwork z -> the weights of a small MLP over random Fourier features of coordinates.

    Fourier features ``[cos 2 pi B u, sin 2 pi B u]`` with fixed ``B ~ N(0, 2^2)`` (``n_freq`` x 2,
    as the published code), then layers ``layer_sizes`` with ReLU, then C logits; every weight and
    bias of that MLP comes out of one linear layer of a two-layer hypernetwork.
    """

    def __init__(self, latent_dim: int, channels: int, hidden: int, *, n_freq: int = 32,
                 layer_sizes: tuple[int, ...] = (32, 32)):
        super().__init__()
        self.register_buffer("freq", torch.randn(n_freq, 2, generator=torch.Generator().manual_seed(0)) * 2.0)
        sizes = [2 * n_freq, *layer_sizes, channels]
        self.shapes = list(zip(sizes[:-1], sizes[1:]))
        n_params = sum(i * o + o for i, o in self.shapes)
        self.hyper = nn.Sequential(nn.Linear(latent_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, n_params))
        with torch.no_grad():  # start the generated MLP near a fan-in initialisation
            self.hyper[-1].weight.mul_(0.1)

    def forward(self, coords: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """coords (B, S, S, 2), z (B, D) -> logits (B, C, S, S)."""
        b, s, _, _ = coords.shape
        proj = 2 * math.pi * coords.reshape(b, s * s, 2) @ self.freq.T  # (B, S*S, n_freq)
        h = torch.cat([torch.cos(proj), torch.sin(proj)], dim=-1)  # (B, S*S, 2 n_freq)
        params = self.hyper(z)  # (B, n_params)
        k = 0
        for i, (fan_in, fan_out) in enumerate(self.shapes):
            w = params[:, k:k + fan_in * fan_out].view(b, fan_in, fan_out) / math.sqrt(fan_in)
            k += fan_in * fan_out
            bias = params[:, k:k + fan_out]
            k += fan_out
            h = torch.baddbmm(bias[:, None, :], h, w)  # (B, S*S, fan_out)
            if i < len(self.shapes) - 1:
                h = torch.relu(h)
        return h.transpose(1, 2).reshape(b, -1, s, s)  # (B, C, S, S)


class IRLINR(nn.Module):
    """Pose by symmetry breaking, content by a hypernetwork-generated implicit neural representation."""

    uses_moment_loss = False  # its own symmetry-breaking term lives in extra_loss
    has_pose = True  # x, y (predicted centre) and theta (predicted rotation)

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.encoder = ConvEncoder(config, 4 + config.latent_dim)
        self.inr = HyperINR(config.latent_dim, config.channels, config.hidden)

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, C, S, S) -> x, y (B,), direction (B, 2) unit (cos, sin), z (B, D)."""
        h = self.encoder(images)
        if self.config.learn_centroid:
            x, y = torch.tanh(h[:, 0]), torch.tanh(h[:, 1])
        else:
            x = y = torch.zeros_like(h[:, 0])
        vec = h[:, 2:4] / h[:, 2:4].norm(dim=1, keepdim=True).clamp_min(1e-6)
        return x, y, vec, h[:, 4:]

    def draw(self, z: torch.Tensor, theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Images (B, C, S, S) in [0, 1] of content ``z`` at pose (theta, x, y)."""
        return torch.sigmoid(self.inr(pose_coordinates(theta, x, y, self.config.image_size), z))

    def decode_aligned(self, z: torch.Tensor) -> torch.Tensor:
        """(B, D) -> pose-free images (identity pose), (B, C, S, S)."""
        zero = torch.zeros(z.shape[0], device=z.device, dtype=z.dtype)
        return self.draw(z, zero, zero, zero)

    def _symmetry(self, images: torch.Tensor, x: torch.Tensor, y: torch.Tensor, vec: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            signal = subtract_background(images)
            if self.config.learn_centroid:
                m = image_moments(signal)
            else:
                angle, mag = com_orientation(signal)
        if self.config.learn_centroid:
            return ((x - m.x) ** 2 + (y - m.y) ** 2).mean()
        weight = torch.tanh(mag / (2.0 / images.shape[-1]))
        return (weight * (1.0 - (vec[:, 0] * torch.cos(angle) + vec[:, 1] * torch.sin(angle)))).mean()

    def forward(self, images: torch.Tensor) -> ModelOutput:
        x, y, vec, z = self.encode(images)
        theta = wrap_angle(torch.atan2(vec[:, 1], vec[:, 0]))
        same_view = self.draw(z, theta, x, y)
        extra: dict[str, torch.Tensor] = {}
        if self.training:
            b = images.shape[0]
            turn = torch.rand(b, device=images.device) * 2 * math.pi
            shift = torch.randn(b, 2, device=images.device) * AUGMENT_SHIFT_STD if self.config.learn_centroid \
                else torch.zeros(b, 2, device=images.device)
            augmented = warp_to_view(images, turn, shift[:, 0], shift[:, 1])
            z2 = self.encode(augmented)[3]
            extra = {"symmetry": SYMMETRY_WEIGHT * self._symmetry(images, x, y, vec),
                     "consistency": CONSISTENCY_WEIGHT * ((z - z2) ** 2).mean()}
        with torch.set_grad_enabled(not self.training and torch.is_grad_enabled()):
            aligned = self.decode_aligned(z)  # the loss never uses it: no graph in training
        return ModelOutput(x=x, y=y, theta=theta, direction=vec, z=z, aligned=aligned, same_view=same_view,
                           extra_loss=extra)
