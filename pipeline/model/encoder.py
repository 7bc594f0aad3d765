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
from pipeline.geometry import align_to_pose, normalized_grid
from pipeline.model.batchnorm import RegularBatchNorm
from pipeline.model.fields import build_fields
from pipeline.moments import centroid_window, subtract_background

__all__ = ["EquivariantTrunk", "LearnedCentroid", "EquivariantPose", "EquiBranch", "AlignedEncoder", "InvBranch"]


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

    With ``window`` the pixel weights are first multiplied by a round Gaussian window iterated
    onto the source at the frame centre (:func:`pipeline.moments.centroid_window`, as
    SExtractor's ``XWIN_IMAGE``): a neighbour or a star off the target then barely pulls the
    estimate (on simulated DECaLS scenes with a star in the frame the windowed first moment is
    about 5 times closer to the target's centre than the plain one).  At initialisation the
    factor is exactly 1, so the estimate *is* that (windowed) first moment; training may then
    down-weight pixels that belong to something else (an artefact, a knot).  Sky pixels weigh
    nothing, so the estimate is not pulled towards the frame centre.  (Weighting every pixel, sky included, by a positive feature would: the sky's
    thousands of small positive weights shrink the centroid towards the centre, to 0.57 of the
    moment offset and 7 px RMS on XYRCS after 8 CPU minutes.)  The factors come from
    rotation-invariant features at full resolution and the sky level from the border ring, so
    the estimate moves and turns with the image (equivariant up to the borders).
    """

    def __init__(self, in_fields: int, *, ring: int = 4, k_sigma: float = 1.0, window: bool = True):
        super().__init__()
        self.weight = nn.Conv2d(in_fields, 1, kernel_size=1)
        nn.init.zeros_(self.weight.weight)
        nn.init.zeros_(self.weight.bias)
        self.ring, self.k_sigma, self.window = ring, k_sigma, window

    def forward(self, images: torch.Tensor, inv_first: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``images`` (B, C, H, W) in [0, 1]; ``inv_first`` (B, F, H, W) -> x, y (B,) normalised."""
        signal = subtract_background(images.float(), ring=self.ring, k_sigma=self.k_sigma)  # (B, H, W) >= 0
        if self.window:
            signal = signal * centroid_window(signal)
        wts = signal * 2.0 * torch.sigmoid(self.weight(inv_first).float())[:, 0]  # (B, H, W) >= 0
        b, h, w = wts.shape
        xx, yy = normalized_grid(h, w, device=images.device)
        total = wts.sum(dim=(1, 2)).clamp_min(1e-6)  # an empty image gives the frame centre
        return (wts * xx).sum(dim=(1, 2)) / total, (wts * yy).sum(dim=(1, 2)) / total


class EquivariantPose(nn.Module):
    """B_equi: the pose read from the regular fields' group axis, equivariant by construction.

    Each regular field of C_N carries one channel per group element; turning the input by
    ``2 pi s / N`` (exactly for quarter turns on the pixel grid) moves the maps in space and
    shifts every field's channels cyclically by ``s``.  A pointwise MLP mixes fields with weights
    shared over positions and group elements (so it commutes with both), a spatial mean removes
    the positions, and the discrete Fourier transform along the group axis,
    ``c_k = sum_g f_g exp(+i 2 pi k g / N)``, turns into a complex number whose phase moves by
    ``k`` times the turn.  Fixed complex weights combine the fields per order:

    * order 2 -> the axis: ``phi = arg(v_2) / 2`` in (-pi/2, pi/2];
    * order 1 -> the direction along that axis: ``theta = phi`` when ``Re(v_1 e^{-i phi}) >= 0``,
      else ``phi + pi``.  Under a turn by alpha, ``phi`` moves by alpha (mod pi) and the sign
      follows the wrap, so ``theta`` moves by alpha (mod 2 pi), direction included.  A galaxy that
      looks the same turned by a half turn has ``v_1 = 0`` exactly: its direction is undefined and
      :func:`pipeline.predict.predict_batch` says so per object;
    * order 1 (a second set of weights) -> a centroid refinement ``d`` of at most ``max_offset``
      (normalised units), a vector that turns with the image, starting at 0.

    Angles are radians counter-clockwise from +x as displayed; vectors in the normalised frame
    (y down), so a phase ``psi`` is the displacement ``(cos psi, -sin psi)``.
    """

    def __init__(self, fields: int, group_order: int, hidden: int = 32, max_offset: float = 0.1):
        super().__init__()
        self.fields, self.group_order, self.max_offset = fields, group_order, max_offset
        self.mix = nn.Sequential(nn.Linear(fields, hidden), nn.ReLU(inplace=True),
                                 nn.Linear(hidden, hidden), nn.ReLU(inplace=True))
        # complex weights (real, imaginary) per mixed field for: axis (order 2), direction, offset (order 1)
        self.axis = nn.Parameter(torch.randn(hidden, 2) / hidden ** 0.5)
        self.head = nn.Parameter(torch.randn(hidden, 2) / hidden ** 0.5)
        self.offset = nn.Parameter(torch.zeros(hidden, 2))
        g = torch.arange(group_order, dtype=torch.float32) * (2 * torch.pi / group_order)
        self.register_buffer("basis", torch.stack([torch.cos(g), torch.sin(g), torch.cos(2 * g), torch.sin(2 * g)]),
                             persistent=False)  # (4, N)

    @staticmethod
    def _combine(c_re: torch.Tensor, c_im: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """sum_h (a_h + i b_h) c_h for (B, H) parts -> real, imaginary parts (B,)."""
        return c_re @ w[:, 0] - c_im @ w[:, 1], c_im @ w[:, 0] + c_re @ w[:, 1]

    def forward(self, equi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Equivariant maps (B, F*N, h, w) -> axis phi (B,), direction logit (B,), offset dx, dy (B,)."""
        b, _, h, w = equi.shape
        f = equi.view(b, self.fields, self.group_order, h, w).permute(0, 2, 3, 4, 1)  # (B, N, h, w, F)
        f = self.mix(f).mean(dim=(2, 3))  # (B, N, H)
        c = torch.einsum("bnh,kn->bkh", f, self.basis.to(f.dtype))  # (B, 4, H): Re c1, Im c1, Re c2, Im c2
        a_re, a_im = self._combine(c[:, 2], c[:, 3], self.axis)
        phi = 0.5 * torch.atan2(a_im, a_re)  # (B,) axis in (-pi/2, pi/2]
        d_re, d_im = self._combine(c[:, 0], c[:, 1], self.head)
        logit = d_re * torch.cos(phi) + d_im * torch.sin(phi)  # > 0: the direction is phi, < 0: phi + pi
        o_re, o_im = self._combine(c[:, 0], c[:, 1], self.offset)
        scale = self.max_offset / torch.sqrt(1.0 + o_re * o_re + o_im * o_im)  # |d| < max_offset
        return phi, logit, scale * o_re, -scale * o_im


class EquiBranch(nn.Module):
    """B_equi of ``model.pose_readout: dense``: fully connected layers on the flattened equivariant
    maps -> (x, y, cos theta, sin theta).  Not equivariant (a turned input need not turn theta), but
    free to read any shape harmonic: the shape sets' squares (order 4, mod 90 degrees) cannot be
    read from the group axis of C_8, whose order-4 component has no phase.

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



class AlignedEncoder(nn.Module):
    """The observed image in its own frame: recentred on the pose's centroid and turned by -theta
    with the one pose transform (:func:`pipeline.geometry.align_to_pose`), then a plain CNN whose
    flattened maps keep the layout of that frame (major axis along +x).

    The features of the aligned view and of its half turn are averaged, so they do not depend on
    which half of the axis theta chose.  With the pose of :class:`EquivariantPose` (exact under the
    grid's quarter turns) the aligned view, and so these features, are the same for a galaxy and
    its quarter turns up to float rounding.  The pose is detached: this branch describes the
    galaxy, it does not move the pose.
    """

    def __init__(self, channels: int, image_size: int, width: int, out_features: int):
        super().__init__()
        layers: list[nn.Module] = []
        cin = channels
        for i in range(4):  # (B, C, S, S) -> (B, 4w, S/16, S/16)
            cout = width * 2 ** min(i, 2)
            layers += [nn.Conv2d(cin, cout, 3, stride=2, padding=1), nn.ReLU(inplace=True)]
            cin = cout
        self.convs = nn.Sequential(*layers)
        side = image_size
        for _ in range(4):  # stride 2, padding 1, kernel 3: ceil(side / 2)
            side = (side + 1) // 2
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(cin * side * side, out_features), nn.ReLU(inplace=True))

    def forward(self, images: torch.Tensor, theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(B, C, S, S), pose (B,) each -> (B, out_features) features, invariant to the half turn."""
        aligned = align_to_pose(images, theta.detach(), x.detach(), y.detach())  # (B, C, S, S)
        both = torch.cat([aligned, torch.rot90(aligned, 2, dims=(2, 3))])  # (2B, C, S, S)
        feats = self.fc(self.convs(both))  # (2B, out)
        return 0.5 * (feats[: len(images)] + feats[len(images):])


class InvBranch(nn.Module):
    """B_inv: group max-pooled maps at full and at the deepest resolution, each summarised by its
    spatial mean and maximum (all invariant under the group), then fully connected layers -> z.

    The mean carries how much of each feature there is (flux, size), the maximum its peak; the
    full-resolution maps keep the light profile that the deepest (1/8 scale) maps blur.
    """

    def __init__(self, stem_fields: int, deep_fields: int, hidden: int, latent_dim: int, extra: int = 0):
        super().__init__()
        n_in = 2 * (stem_fields + deep_fields) + extra
        self.norm = nn.LayerNorm(n_in)
        self.net = nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(inplace=True),
                                 nn.Linear(hidden, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, latent_dim))

    def forward(self, inv_first: torch.Tensor, inv: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        """(B, F0, H, W) and (B, F, h, w) invariant maps (and optional invariant features (B, E)) -> z (B, latent_dim)."""
        parts = [inv_first.mean(dim=(2, 3)), inv_first.amax(dim=(2, 3)), inv.mean(dim=(2, 3)), inv.amax(dim=(2, 3))]
        pooled = torch.cat(parts if extra is None else [*parts, extra], dim=1)  # (B, 2 (F0 + F) + E)
        return self.net(self.norm(pooled))  # (B, latent_dim)
