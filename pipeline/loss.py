"""CODAE objective: reconstruction + beta(t) x image-moment loss (Cha et al. 2025, Methods).

The moment term anchors B_equi early in training, then decays so that the
reconstruction refines what the moments only approximate:

* centroid: squared distance between predicted and first-moment centroids
  (normalised units);
* orientation: ``1 - cos(2 (theta - theta_m))``, compared through doubled angles so
  that ``theta`` and ``theta + 180`` both satisfy it (moments give an axis, not a
  direction; reconstruction picks the right half-turn), weighted by the moment
  anisotropy (a round object has no orientation to anchor);
* for centred patterns (``orientation_prior='com'``): ``1 - cos(theta - theta_com)``
  with the centre-of-mass angle, weighted by ``tanh`` of the COM offset in units of
  a pixel.

One term is ours, not the paper's: the *aligned* reconstruction is pulled towards its
own definition (moment centroid at the centre and, for moment priors, major axis
along +x), with a constant weight.  Without it the decoder may draw the aligned image
at any angle phi(z) and theta absorbs -phi(z) once beta has decayed (we saw the
orientation error drift up again at the beta floor); with it theta keeps meaning the
object's axis while beta decays.  The aligned image is noise-free, so its moments are
exact and the term does not re-import per-image moment noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from pipeline.config import LossConfig
from pipeline.model.codae import CODAEOutput
from pipeline.moments import com_orientation, image_moments, subtract_background

__all__ = ["MomentTargets", "moment_targets", "beta_schedule", "codae_loss", "LossTerms"]


@dataclass(frozen=True)
class MomentTargets:
    """What the moment term pulls B_equi towards, each (B,)."""

    x: torch.Tensor
    y: torch.Tensor
    theta: torch.Tensor  # radians CCW as displayed: an axis in [0, pi) for moments, a direction for com
    weight: torch.Tensor  # in [0, 1]: how well defined the orientation is


@dataclass(frozen=True)
class LossTerms:
    """Scalar loss terms of one batch (``total`` is what is minimised)."""

    total: torch.Tensor
    reconstruction: torch.Tensor
    centroid: torch.Tensor
    orientation: torch.Tensor
    aligned: torch.Tensor
    regularizer: torch.Tensor
    beta: float


@torch.no_grad()
def moment_targets(images: torch.Tensor, cfg: LossConfig) -> MomentTargets:
    """Moment targets of a batch (B, C, H, W) in [0, 1], after removing the sky level."""
    signal = subtract_background(images, ring=cfg.background_ring, k_sigma=cfg.background_sigma)
    m = image_moments(signal)
    if cfg.orientation_prior == "com":
        angle, mag = com_orientation(signal)
        pixel = 2.0 / images.shape[-1]
        return MomentTargets(x=torch.zeros_like(m.x), y=torch.zeros_like(m.y), theta=angle,
                             weight=torch.tanh(mag / pixel))
    return MomentTargets(x=m.x, y=m.y, theta=m.theta, weight=m.anisotropy)


def beta_schedule(progress: float, cfg: LossConfig) -> float:
    """Moment-loss weight at training ``progress`` in [0, 1]: cosine decay from beta_start to
    beta_end over the first ``beta_decay_fraction`` of training, then constant at beta_end."""
    if cfg.beta_decay_fraction <= 0 or progress >= cfg.beta_decay_fraction:
        return cfg.beta_end
    frac = max(progress, 0.0) / cfg.beta_decay_fraction
    return cfg.beta_end + 0.5 * (cfg.beta_start - cfg.beta_end) * (1.0 + math.cos(math.pi * frac))


def codae_loss(out: CODAEOutput, images: torch.Tensor, targets: MomentTargets | None, beta: float,
               cfg: LossConfig, *, learn_centroid: bool = True) -> LossTerms:
    """Loss of one batch; every term returned separately for logging.

    ``targets=None`` (models without the moment prior, i.e. baselines) leaves only the
    reconstruction and the model's own ``extra_loss`` terms.
    """
    pred = out.same_view.float()
    if cfg.reconstruction == "bce":
        recon = F.binary_cross_entropy(pred.clamp(1e-6, 1 - 1e-6), images.float())
    else:
        recon = F.mse_loss(pred, images.float())
    regularizer = sum(out.extra_loss.values(), torch.zeros((), device=pred.device))
    if targets is None:
        zero = torch.zeros((), device=pred.device)
        return LossTerms(total=recon + regularizer, reconstruction=recon.detach(), centroid=zero, orientation=zero,
                         aligned=zero, regularizer=regularizer.detach(), beta=0.0)
    if learn_centroid:
        centroid = ((out.x - targets.x) ** 2 + (out.y - targets.y) ** 2).mean()
    else:
        centroid = torch.zeros((), device=pred.device)
    cos_t, sin_t = out.direction[:, 0].float(), out.direction[:, 1].float()
    if cfg.orientation_prior == "com":
        mismatch = 1.0 - (cos_t * torch.cos(targets.theta) + sin_t * torch.sin(targets.theta))
    else:
        cos2, sin2 = cos_t ** 2 - sin_t ** 2, 2.0 * cos_t * sin_t  # doubled angle of the prediction
        mismatch = 1.0 - (cos2 * torch.cos(2 * targets.theta) + sin2 * torch.sin(2 * targets.theta))
    orientation = (targets.weight * mismatch).mean()
    moment = cfg.centroid_weight * centroid + cfg.orientation_weight * orientation
    aligned = aligned_term(out.aligned, cfg, learn_centroid=learn_centroid)
    total = recon + beta * moment + cfg.aligned_weight * aligned + regularizer
    return LossTerms(total=total, reconstruction=recon.detach(), centroid=centroid.detach(),
                     orientation=orientation.detach(), aligned=aligned.detach(), regularizer=regularizer.detach(),
                     beta=beta)


def aligned_term(aligned: torch.Tensor, cfg: LossConfig, *, learn_centroid: bool = True) -> torch.Tensor:
    """How far the aligned reconstructions' moments are from centred and along +x (differentiable)."""
    signal = subtract_background(aligned.float(), ring=cfg.background_ring, k_sigma=cfg.background_sigma)
    m = image_moments(signal)
    term = (m.x ** 2 + m.y ** 2) if learn_centroid else torch.zeros_like(m.x)
    if cfg.orientation_prior == "moments":
        term = term + m.anisotropy * (1.0 - torch.cos(2.0 * m.theta))
    return term.mean()
