"""CODAE objective: reconstruction + beta(t) x image-moment loss (Cha et al. 2025, Methods).

The moment term anchors B_equi early in training, then decays so that the
reconstruction refines what the moments only approximate:

* centroid: squared distance between predicted and first-moment centroids
  (normalised units);
* orientation: ``1 - cos(2 (theta - theta_m))``, compared through doubled angles so
  that ``theta`` and ``theta + 180`` both satisfy it (moments give an axis, not a
  direction; reconstruction picks the right half-turn), weighted by the moment
  anisotropy (a round object has no orientation to anchor);
* with ``orientation_orders`` beyond 2 (ours, for shape sets): per image the strongest
  shape harmonic k of :func:`pipeline.moments.harmonic_orientation` sets the target,
  ``1 - cos(k (theta - theta_k))`` weighted by its amplitude.  Order 2 is the moment
  axis; a triangle, whose second moments are round, is anchored by order 3 (mod 120
  degrees) and a square by order 4 (mod 90).  Without it their turn must be found by
  the reconstruction alone, and ~1,000 CPU steps on XYRCS did not find it: the decoder
  drew them as round blobs;
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
from pipeline.moments import com_orientation, harmonic_orientation, harmonic_sums, image_moments, subtract_background

__all__ = ["MomentTargets", "moment_targets", "beta_schedule", "codae_loss", "LossTerms"]


@dataclass(frozen=True)
class MomentTargets:
    """What the moment term pulls B_equi towards, each (B,)."""

    x: torch.Tensor
    y: torch.Tensor
    theta: torch.Tensor  # radians CCW as displayed: an axis in [0, pi) for moments, a direction for com
    weight: torch.Tensor  # in [0, 1]: how well defined the orientation is
    order: torch.Tensor  # the target is defined modulo 2 pi / order: 2 for the moment axis, 1 for com


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
                             weight=torch.tanh(mag / pixel), order=torch.ones_like(m.x))
    h = harmonic_orientation(signal, tuple(cfg.orientation_orders), moments=m)  # (2,): the moment axis
    return MomentTargets(x=m.x, y=m.y, theta=h.theta, weight=h.strength, order=h.order)


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
    theta = torch.atan2(out.direction[:, 1].float(), out.direction[:, 0].float())
    mismatch = 1.0 - torch.cos(targets.order * (theta - targets.theta))  # 0 when equal mod 2 pi / order
    orientation = (targets.weight * mismatch).mean()
    moment = cfg.centroid_weight * centroid + cfg.orientation_weight * orientation
    aligned = aligned_term(out.aligned, cfg, learn_centroid=learn_centroid)
    total = recon + beta * moment + cfg.aligned_weight * aligned + regularizer
    return LossTerms(total=total, reconstruction=recon.detach(), centroid=centroid.detach(),
                     orientation=orientation.detach(), aligned=aligned.detach(), regularizer=regularizer.detach(),
                     beta=beta)


def aligned_term(aligned: torch.Tensor, cfg: LossConfig, *, learn_centroid: bool = True) -> torch.Tensor:
    """How far the aligned reconstructions' moments are from centred and along +x (differentiable).

    "Along +x": the phase of each image's strongest shape harmonic among ``orientation_orders``
    is 0, weighted by its amplitude: ``(|H_k| - Re H_k) / S_k = a_k (1 - cos(k theta_k))``; for
    order 2 alone this is ``anisotropy (1 - cos 2 theta)`` of the moment axis.
    """
    signal = subtract_background(aligned.float(), ring=cfg.background_ring, k_sigma=cfg.background_sigma)
    m = image_moments(signal)
    term = (m.x ** 2 + m.y ** 2) if learn_centroid else torch.zeros_like(m.x)
    if cfg.orientation_prior == "moments":
        re, im, norm = harmonic_sums(signal, tuple(cfg.orientation_orders), moments=m)
        amp = torch.sqrt(re * re + im * im + 1e-12)
        pick = (amp / norm).detach().argmax(dim=1, keepdim=True)  # the strongest order of each image
        term = term + ((amp - re) / norm).gather(1, pick)[:, 0]
    return term.mean()
