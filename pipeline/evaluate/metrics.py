"""Supervised disentanglement metrics on a finite data set of (factors, codes) pairs.

Definitions follow the review of Carbonneau, Zaidi, Boilard and Gagnon, "Measuring
Disentanglement: A Review of Metrics", IEEE TNNLS 2022 (and its reference code), which
groups them as intervention-based (z-diff, z-min variance, z-max variance),
predictor-based (SAP, DCI) and information-based (MIG, JEMMIG, DCIMIG, modularity).
Every metric takes ``factors`` (N, K) and ``codes`` (N, D) as numpy arrays and returns a
float in [0, 1], higher is better (:func:`dci` returns three).

Conventions, stated once and used by every metric
--------------------------------------------------
*Discrete factors.*  A factor with at most ``n_bins`` distinct values is used as is: each
distinct value is one class (dSprites-style grids).  A factor with more distinct values is
cut into ``n_bins`` equal-width bins over [min, max].

*Codes* are discretised (for the information-based metrics only) into ``n_bins`` quantile
bins per dimension (equal-mass bins; ties stay in one bin).  Quantile bins make the
information metrics invariant to monotone distortions of a code dimension, which
equal-width bins are not (an ``exp``-distorted code would crowd into a few bins).

*Circular factors* (angles in degrees, ``circular`` indices) are first folded by their
symmetry period ``P`` (360 by default; 180 for an axis, 120 for a triangle; a per-sample
array for shape-dependent symmetry) and mapped back onto the full circle,
``theta' = (theta mod P) * 360 / P``, so that symmetric poses are one value.  Then

- for regressors and classifiers that need a numeric target (DCI, SAP in regression mode)
  the factor is its pair ``(cos theta', sin theta')``; the scores and importances of the
  pair are averaged into one number for the factor;
- for everything discrete (mutual information, the classes of SAP, the groups of the
  intervention metrics) ``theta'`` is binned with equal-width bins over [0, 360), which are
  circular by construction (0 and 359.9 degrees are neighbours, never far apart), or used
  as classes when it has at most ``n_bins`` distinct values.

*Intervention metrics on a finite data set.*  z-diff, z-min variance and z-max variance are
defined with a simulator that can fix a factor.  Here "fixing factor k" means drawing
samples from one group of samples that share the same class of factor k (z-diff, z-min
variance) or the same classes of every other factor (z-max variance), as the review's
reference code does.  Groups with fewer than two members (or, for z-max variance, where
factor k does not vary) are never drawn.

*Chance level.*  Classifier-based scores (z-diff, z-min variance, z-max variance, SAP in
classification mode) are rescaled so that a classifier at chance scores 0 and a perfect
one 1: ``(acc - 1/C) / (1 - 1/C)`` with ``C`` classes, clipped at 0, as the review does.

Logarithms are natural (nats) throughout.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from sklearn.ensemble import GradientBoostingRegressor
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

from pipeline.errors import BadInputError

__all__ = [
    "EIGHT_METRICS",
    "angle_on_circle",
    "DCIScores",
    "PoseRemoval",
    "compute_all",
    "dci",
    "dcimig",
    "discretize_codes",
    "discretize_factors",
    "jemmig",
    "mig",
    "modularity",
    "mutual_information_matrix",
    "pearson_table",
    "remove_pose_latents",
    "sap",
    "z_diff",
    "z_max_var",
    "z_min_var",
]

#: The eight scores of the CODAE paper's tables, in order; ``mean`` in :func:`compute_all`
#: is their average.  DCI enters as its disentanglement part.
EIGHT_METRICS: tuple[str, ...] = (
    "z_diff",
    "z_min_var",
    "z_max_var",
    "mig",
    "jemmig",
    "dcimig",
    "sap",
    "dci_disentanglement",
)

Seed = int | np.random.Generator
PeriodMap = Mapping[int, float | ArrayLike] | None


# ----------------------------------------------------------------------------- inputs


def _as_pair(factors: ArrayLike, codes: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Validate shapes and finiteness; return float64 (N, K) factors and (N, D) codes."""
    f = np.asarray(factors, dtype=np.float64)
    z = np.asarray(codes, dtype=np.float64)
    if f.ndim == 1:
        f = f[:, None]
    if z.ndim == 1:
        z = z[:, None]
    if f.ndim != 2 or z.ndim != 2:
        msg = f"factors and codes must be 2-D (N, K) and (N, D); got shapes {f.shape} and {z.shape}"
        raise BadInputError(msg)
    if f.shape[0] != z.shape[0]:
        msg = f"factors have {f.shape[0]} rows but codes have {z.shape[0]}; rows must be the same samples"
        raise BadInputError(msg)
    if f.shape[0] < 10:
        msg = f"need at least 10 samples to evaluate a representation, got {f.shape[0]}"
        raise BadInputError(msg)
    if not (np.all(np.isfinite(f)) and np.all(np.isfinite(z))):
        msg = "factors and codes must be finite (found NaN or inf)"
        raise BadInputError(msg)
    return f, z


def _rng(seed: Seed) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def _check_circular(circular: Sequence[int], n_factors: int) -> set[int]:
    out = {int(c) for c in circular}
    bad = sorted(c for c in out if not 0 <= c < n_factors)
    if bad:
        msg = f"circular factor indices {bad} out of range for {n_factors} factors"
        raise BadInputError(msg)
    return out


def angle_on_circle(theta_deg: NDArray[np.float64], period_deg: float | ArrayLike) -> NDArray[np.float64]:
    """Fold an angle (degrees) by its symmetry period and map it back onto [0, 360).

    ``theta' = (theta mod P) * 360 / P``; ``P`` may be a scalar or a per-sample (N,) array.
    """
    period = np.asarray(period_deg, dtype=np.float64)
    if np.any(period <= 0):
        msg = "symmetry periods must be positive (degrees)"
        raise BadInputError(msg)
    return np.mod(np.mod(theta_deg, period) * (360.0 / period), 360.0)


def _factor_column(f: NDArray[np.float64], k: int, circular: set[int], period_deg: PeriodMap) -> NDArray[np.float64]:
    """Factor column k, folded onto [0, 360) if circular."""
    if k not in circular:
        return f[:, k]
    period = 360.0 if period_deg is None else period_deg.get(k, 360.0)
    return angle_on_circle(f[:, k], period)


def discretize_factors(
    factors: ArrayLike,
    *,
    circular: Sequence[int] = (),
    period_deg: PeriodMap = None,
    n_bins: int = 20,
) -> NDArray[np.int64]:
    """Classes (N, K) of each factor, by the module's rule.

    A factor with at most ``n_bins`` distinct values keeps one class per value; otherwise
    ``n_bins`` equal-width bins over [min, max] (linear) or over [0, 360) (circular, after
    folding by its period).  Classes are 0-based and contiguous.
    """
    f = np.atleast_2d(np.asarray(factors, dtype=np.float64))
    circ = _check_circular(circular, f.shape[1])
    labels = np.empty(f.shape, dtype=np.int64)
    for k in range(f.shape[1]):
        col = _factor_column(f, k, circ, period_deg)
        values, inverse = np.unique(col, return_inverse=True)
        if values.size <= n_bins:
            labels[:, k] = inverse.ravel()
            continue
        if k in circ:
            idx = np.floor(col / 360.0 * n_bins).astype(np.int64) % n_bins
        else:
            lo, hi = col.min(), col.max()
            idx = np.minimum(np.floor((col - lo) / (hi - lo) * n_bins).astype(np.int64), n_bins - 1)
        labels[:, k] = np.unique(idx, return_inverse=True)[1].ravel()
    return labels


def discretize_codes(codes: ArrayLike, *, n_bins: int = 20) -> NDArray[np.int64]:
    """Quantile bins (N, D) of each code dimension: ``n_bins`` equal-mass bins, ties kept together.

    Edges are the ``i / n_bins`` quantiles; duplicate edges (a code with few distinct values)
    merge, so a code taking ``m <= n_bins`` values of equal mass gets one bin per value.
    """
    z = np.atleast_2d(np.asarray(codes, dtype=np.float64))
    labels = np.empty(z.shape, dtype=np.int64)
    qs = np.linspace(0.0, 1.0, n_bins + 1)[1:-1]
    for j in range(z.shape[1]):
        edges = np.unique(np.quantile(z[:, j], qs))
        labels[:, j] = np.searchsorted(edges, z[:, j], side="right")
    return labels


def _regression_targets(
    f: NDArray[np.float64], circular: set[int], period_deg: PeriodMap
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Numeric targets (N, T) and, per target column, the factor it belongs to (T,).

    A linear factor is one standardised column; a circular factor is (cos, sin) of its folded angle.
    """
    cols: list[NDArray[np.float64]] = []
    owner: list[int] = []
    for k in range(f.shape[1]):
        col = _factor_column(f, k, circular, period_deg)
        if k in circular:
            rad = np.deg2rad(col)
            cols += [np.cos(rad), np.sin(rad)]
            owner += [k, k]
        else:
            sd = col.std()
            cols.append((col - col.mean()) / (sd if sd > 0 else 1.0))
            owner.append(k)
    return np.stack(cols, axis=1), np.asarray(owner, dtype=np.int64)


# ----------------------------------------------------------------------------- information


def _entropy(labels: NDArray[np.int64]) -> float:
    p = np.bincount(labels) / labels.size
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def _joint_entropy(a: NDArray[np.int64], b: NDArray[np.int64]) -> float:
    return _entropy(a * (int(b.max()) + 1) + b)


def mutual_information_matrix(factor_labels: NDArray[np.int64], code_labels: NDArray[np.int64]) -> NDArray[np.float64]:
    """Plug-in mutual information I(v_k; z_j) in nats, shape (K, D), from discrete labels."""
    hf = [_entropy(factor_labels[:, k]) for k in range(factor_labels.shape[1])]
    hz = [_entropy(code_labels[:, j]) for j in range(code_labels.shape[1])]
    mi = np.empty((factor_labels.shape[1], code_labels.shape[1]))
    for k in range(factor_labels.shape[1]):
        for j in range(code_labels.shape[1]):
            mi[k, j] = hf[k] + hz[j] - _joint_entropy(factor_labels[:, k], code_labels[:, j])
    return np.maximum(mi, 0.0)


def _discrete(
    factors: ArrayLike, codes: ArrayLike, circular: Sequence[int], period_deg: PeriodMap, n_bins: int
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    f, z = _as_pair(factors, codes)
    return (
        discretize_factors(f, circular=circular, period_deg=period_deg, n_bins=n_bins),
        discretize_codes(z, n_bins=n_bins),
    )


def _top_two(values: NDArray[np.float64]) -> tuple[int, float, float]:
    """Index of the largest value, the largest and the second largest (0 if only one)."""
    order = np.argsort(values)[::-1]
    second = float(values[order[1]]) if values.size > 1 else 0.0
    return int(order[0]), float(values[order[0]]), second


def mig(
    factors: ArrayLike,
    codes: ArrayLike,
    *,
    circular: Sequence[int] = (),
    period_deg: PeriodMap = None,
    n_bins: int = 20,
) -> float:
    """Mutual Information Gap (Chen et al. 2018, "Isolating sources of disentanglement in VAEs").

    ``MIG = mean_k [I(v_k; z_(1)) - I(v_k; z_(2))] / H(v_k)`` where ``z_(1)``, ``z_(2)`` are the
    two code dimensions most informative of factor ``k``.  Binning: factors by the module rule
    (``n_bins``, default 20), codes in ``n_bins`` quantile bins; plug-in estimates in nats.
    Constant factors (``H(v_k) = 0``) are left out of the mean here and in :func:`jemmig`.
    """
    fl, zl = _discrete(factors, codes, circular, period_deg, n_bins)
    mi = mutual_information_matrix(fl, zl)
    gaps = []
    for k in range(fl.shape[1]):
        h = _entropy(fl[:, k])
        if h <= 0:
            continue
        _, first, second = _top_two(mi[k])
        gaps.append((first - second) / h)
    return float(np.clip(np.mean(gaps), 0.0, 1.0)) if gaps else 0.0


def jemmig(
    factors: ArrayLike,
    codes: ArrayLike,
    *,
    circular: Sequence[int] = (),
    period_deg: PeriodMap = None,
    n_bins: int = 20,
) -> float:
    """Joint-Entropy-Minus-Mutual-Information Gap (Do & Tran 2020), normalised as in the review.

    For each factor, ``JEMMIG_k = H(v_k, z*) - I(v_k; z*) + I(v_k; z°)`` with ``z*``, ``z°``
    the most and second most informative code dimensions (lower is better); the score is
    ``1 - mean_k JEMMIG_k / (H(v_k) + log n_bins)``.  Unlike MIG it also penalises a code
    dimension that carries more than its factor (``H(z* | v_k) > 0``).  Binning as in :func:`mig`.
    """
    fl, zl = _discrete(factors, codes, circular, period_deg, n_bins)
    mi = mutual_information_matrix(fl, zl)
    scores = []
    for k in range(fl.shape[1]):
        h = _entropy(fl[:, k])
        if h <= 0:  # a constant factor carries nothing to disentangle
            continue
        best, first, second = _top_two(mi[k])
        joint = _joint_entropy(fl[:, k], zl[:, best])
        raw = joint - first + second
        scores.append(1.0 - raw / (h + np.log(n_bins)))
    return float(np.clip(np.mean(scores), 0.0, 1.0)) if scores else 0.0


def dcimig(
    factors: ArrayLike,
    codes: ArrayLike,
    *,
    circular: Sequence[int] = (),
    period_deg: PeriodMap = None,
    n_bins: int = 20,
) -> float:
    """DCIMIG (Sepliarskaia, Kiseleva & de Rijke 2019).

    For each code dimension ``j`` the gap ``R_j = I(z_j; v_(1)) - I(z_j; v_(2))`` between its
    two most related factors is credited to its top factor; each factor keeps the largest gap
    credited to it, ``S_k`` (0 if none).  ``DCIMIG = sum_k S_k / sum_k H(v_k)``.
    Binning as in :func:`mig`.
    """
    fl, zl = _discrete(factors, codes, circular, period_deg, n_bins)
    mi = mutual_information_matrix(fl, zl)
    best_gap = np.zeros(fl.shape[1])
    for j in range(zl.shape[1]):
        top, first, second = _top_two(mi[:, j])
        best_gap[top] = max(best_gap[top], first - second)
    total_h = sum(_entropy(fl[:, k]) for k in range(fl.shape[1]))
    return float(np.clip(best_gap.sum() / total_h, 0.0, 1.0)) if total_h > 0 else 0.0


def modularity(
    factors: ArrayLike,
    codes: ArrayLike,
    *,
    circular: Sequence[int] = (),
    period_deg: PeriodMap = None,
    n_bins: int = 20,
) -> float:
    """Modularity (Ridgeway & Mozer 2018): does each code dimension depend on one factor only?

    With ``m_jk = I(z_j; v_k)`` and ``theta_j = max_k m_jk``, each dimension scores
    ``1 - sum_{k != argmax} m_jk^2 / (theta_j^2 (K - 1))``; the result is the mean over code
    dimensions that carry any information (``theta_j > 0``).  Binning as in :func:`mig`.
    With a single factor every dimension is trivially modular and the score is 1.
    Known weakness: a code of pure noise still scores well above 0,
    because its small, noisy MI values are rarely equal across factors.
    """
    fl, zl = _discrete(factors, codes, circular, period_deg, n_bins)
    n_factors = fl.shape[1]
    if n_factors < 2:
        return 1.0
    mi = mutual_information_matrix(fl, zl).T  # (D, K)
    theta = mi.max(axis=1)
    keep = theta > 0
    if not np.any(keep):
        return 0.0
    m, t = mi[keep], theta[keep]
    template = np.zeros_like(m)
    template[np.arange(m.shape[0]), m.argmax(axis=1)] = t
    delta = ((m - template) ** 2).sum(axis=1) / (t**2 * (n_factors - 1))
    return float(np.clip(np.mean(1.0 - delta), 0.0, 1.0))


# ----------------------------------------------------------------------------- interventions


@dataclass(frozen=True)
class _Groups:
    """Samples grouped by a key: members of group g are ``order[start[g] : start[g] + size[g]]``."""

    order: NDArray[np.int64]
    start: NDArray[np.int64]
    size: NDArray[np.int64]
    eligible: NDArray[np.int64]  # groups that may be drawn


def _groups(keys: NDArray[np.int64], varying: NDArray[np.int64] | None = None) -> _Groups:
    """Group samples by ``keys`` (N,) or (N, m); eligible groups have >= 2 members.

    If ``varying`` (N,) is given, an eligible group must also hold >= 2 distinct values of it.
    """
    if keys.ndim == 2:
        if keys.shape[1] == 0:
            gid = np.zeros(keys.shape[0], dtype=np.int64)
        else:
            gid = np.unique(keys, axis=0, return_inverse=True)[1].ravel()
    else:
        gid = np.unique(keys, return_inverse=True)[1].ravel()
    order = np.argsort(gid, kind="stable")
    size = np.bincount(gid)
    start = np.concatenate([[0], np.cumsum(size)[:-1]])
    ok = size >= 2
    if varying is not None:
        pairs = np.unique(np.stack([gid, varying], axis=1), axis=0)
        ok &= np.bincount(pairs[:, 0], minlength=size.size) >= 2
    return _Groups(order=order, start=start, size=size, eligible=np.flatnonzero(ok))


def _draw(groups: _Groups, n_votes: int, batch: int, rng: np.random.Generator) -> NDArray[np.int64]:
    """Sample indices (n_votes, batch): each row from one eligible group drawn uniformly, with replacement."""
    g = groups.eligible[rng.integers(0, groups.eligible.size, n_votes)]
    offs = np.floor(rng.random((n_votes, batch)) * groups.size[g][:, None]).astype(np.int64)
    return groups.order[groups.start[g][:, None] + offs]


def _chance_normalised(acc: float, n_classes: int) -> float:
    if n_classes < 2:
        return float(acc)
    return float(np.clip((acc - 1.0 / n_classes) / (1.0 - 1.0 / n_classes), 0.0, 1.0))


def _factor_per_vote(usable: list[int], n: int, rng: np.random.Generator) -> NDArray[np.int64]:
    return np.asarray(usable, dtype=np.int64)[rng.integers(0, len(usable), n)]


def _no_groups_error(metric: str) -> BadInputError:
    msg = (
        f"{metric}: no factor has a group of >= 2 samples to fix it; "
        "the factors are too finely binned for this many samples (lower n_bins)"
    )
    return BadInputError(msg)


def z_diff(
    factors: ArrayLike,
    codes: ArrayLike,
    *,
    circular: Sequence[int] = (),
    period_deg: PeriodMap = None,
    n_bins: int = 20,
    batch_size: int = 64,
    n_train: int = 1000,
    n_eval: int = 500,
    seed: Seed = 0,
) -> float:
    """z-diff, the beta-VAE metric (Higgins et al. 2017), on a finite data set.

    One vote: pick a factor ``k`` uniformly, pick one class of ``v_k`` (uniformly among classes
    with >= 2 samples), draw ``batch_size`` pairs of distinct samples of that class, and
    record ``mean |z_a - z_b|`` over the pairs (codes first divided by their per-dimension
    standard deviation).  A linear classifier (sklearn ``LogisticRegression``, L2, C=1, on
    standardised features) predicts ``k`` from ``n_train`` votes; the score is its accuracy on
    ``n_eval`` fresh votes, rescaled for chance ``1/K``.  Factor classes by the module rule.
    """
    f, z = _as_pair(factors, codes)
    rng = _rng(seed)
    labels = discretize_factors(f, circular=circular, period_deg=period_deg, n_bins=n_bins)
    sd = z.std(axis=0)
    zs = z / np.where(sd > 0, sd, 1.0)
    per_factor = {k: _groups(labels[:, k]) for k in range(f.shape[1])}
    usable = [k for k, g in per_factor.items() if g.eligible.size > 0]
    if not usable:
        raise _no_groups_error("z-diff")

    def votes(n: int) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
        ks = _factor_per_vote(usable, n, rng)
        x = np.empty((n, z.shape[1]))
        for k in usable:
            rows = np.flatnonzero(ks == k)
            if rows.size == 0:
                continue
            grp = per_factor[k]
            g = grp.eligible[rng.integers(0, grp.eligible.size, rows.size)]
            size = grp.size[g][:, None]
            a = np.floor(rng.random((rows.size, batch_size)) * size).astype(np.int64)
            # second member: a different sample of the same group
            b = (a + 1 + np.floor(rng.random((rows.size, batch_size)) * (size - 1)).astype(np.int64)) % size
            ia = grp.order[grp.start[g][:, None] + a]
            ib = grp.order[grp.start[g][:, None] + b]
            x[rows] = np.abs(zs[ia] - zs[ib]).mean(axis=1)
        return x, ks

    x_train, y_train = votes(n_train)
    x_eval, y_eval = votes(n_eval)
    if np.unique(y_train).size < 2:
        return _chance_normalised(1.0, len(usable))
    scaler = StandardScaler().fit(x_train)
    clf = LogisticRegression(C=1.0, max_iter=5000).fit(scaler.transform(x_train), y_train)
    acc = float(np.mean(clf.predict(scaler.transform(x_eval)) == y_eval))
    return _chance_normalised(acc, len(usable))


def _variance_votes(
    z: NDArray[np.float64],
    per_factor: dict[int, _Groups],
    usable: list[int],
    n: int,
    batch_size: int,
    rng: np.random.Generator,
    pick: Literal["min", "max"],
    active: NDArray[np.bool_],
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Votes (dimension, factor): arg-min or arg-max of the within-batch variance of normalised codes.

    Pruned (inactive) dimensions never win.
    """
    ks = _factor_per_vote(usable, n, rng)
    dims = np.empty(n, dtype=np.int64)
    for k in usable:
        rows = np.flatnonzero(ks == k)
        if rows.size == 0:
            continue
        idx = _draw(per_factor[k], rows.size, batch_size, rng)
        var = z[idx].var(axis=1, ddof=1)  # (votes, D)
        var[:, ~active] = np.inf if pick == "min" else -np.inf
        dims[rows] = var.argmin(axis=1) if pick == "min" else var.argmax(axis=1)
    return dims, ks


def _majority_vote_score(
    train: tuple[NDArray[np.int64], NDArray[np.int64]],
    evaluation: tuple[NDArray[np.int64], NDArray[np.int64]],
    n_dims: int,
    n_factors: int,
) -> float:
    """Accuracy on ``evaluation`` of the majority-vote classifier (dimension -> factor) fitted on ``train``."""
    counts = np.zeros((n_dims, n_factors))
    np.add.at(counts, train, 1.0)
    seen = counts.sum(axis=1) > 0
    d_eval, k_eval = evaluation
    pred = np.where(seen[d_eval], counts.argmax(axis=1)[d_eval], -1)  # an unseen dimension is a miss
    return float(np.mean(pred == k_eval))


def _active_normalised(z: NDArray[np.float64], std_threshold: float) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """Codes divided by their standard deviation, and the mask of active (not collapsed) dimensions.

    A dimension is collapsed when its standard deviation is at most ``std_threshold`` times its
    own root-mean-square value (it barely moves about its offset).  The rule looks at each
    dimension alone, so code columns in different units (x, y normalised, an angle in degrees,
    content latents) do not prune one another; a rule relative to the largest standard deviation
    pruned every normalised column next to an angle in degrees.
    """
    sd = z.std(axis=0, ddof=1)
    rms = np.sqrt(np.mean(z * z, axis=0))
    active = sd > std_threshold * rms
    if not np.any(active):
        msg = "every code dimension is constant; the representation cannot be evaluated"
        raise BadInputError(msg)
    out = np.full_like(z, 0.0)
    out[:, active] = z[:, active] / sd[active]
    return out, active


def z_min_var(
    factors: ArrayLike,
    codes: ArrayLike,
    *,
    circular: Sequence[int] = (),
    period_deg: PeriodMap = None,
    n_bins: int = 20,
    batch_size: int = 64,
    n_train: int = 800,
    n_eval: int = 800,
    std_threshold: float = 0.01,
    seed: Seed = 0,
) -> float:
    """z-min variance, the FactorVAE metric (Kim & Mnih 2018), on a finite data set.

    Codes are divided by their standard deviation over the whole set; dimensions whose
    standard deviation is at most ``std_threshold`` times their own RMS value are pruned
    (collapsed; Kim & Mnih prune at 0.05 absolute for unit-prior VAEs, deterministic codes
    have no natural scale, and pose codes come in mixed units).  One vote: pick a factor
    ``k``, one class of ``v_k`` (uniformly among classes with >= 2 samples), draw
    ``batch_size`` samples of it with replacement, and vote (argmin_d of the within-batch
    variance, ``k``).  The majority-vote classifier (each
    dimension maps to its most voted factor) is fitted on ``n_train`` votes and scored on
    ``n_eval`` fresh votes; accuracy is rescaled for chance ``1/K``.
    """
    f, z = _as_pair(factors, codes)
    rng = _rng(seed)
    zs, active = _active_normalised(z, std_threshold)
    labels = discretize_factors(f, circular=circular, period_deg=period_deg, n_bins=n_bins)
    per_factor = {k: _groups(labels[:, k]) for k in range(f.shape[1])}
    usable = [k for k, g in per_factor.items() if g.eligible.size > 0]
    if not usable:
        raise _no_groups_error("z-min variance")
    train = _variance_votes(zs, per_factor, usable, n_train, batch_size, rng, "min", active)
    evaluation = _variance_votes(zs, per_factor, usable, n_eval, batch_size, rng, "min", active)
    acc = _majority_vote_score(train, evaluation, z.shape[1], f.shape[1])
    return _chance_normalised(acc, len(usable))


def z_max_var(
    factors: ArrayLike,
    codes: ArrayLike,
    *,
    circular: Sequence[int] = (),
    period_deg: PeriodMap = None,
    n_bins: int = 20,
    n_bins_fixed: int = 10,
    batch_size: int = 64,
    n_train: int = 800,
    n_eval: int = 800,
    std_threshold: float = 0.01,
    seed: Seed = 0,
) -> float:
    """z-max variance (Kim, Wang, Sahu & Pavlovic 2019, Relevance Factor VAE), on a finite data set.

    The converse of :func:`z_min_var`: one vote varies factor ``k`` while every other factor
    is held fixed, and votes (argmax_d of the within-batch variance of normalised codes, ``k``).
    "Held fixed" means drawn from one group of samples that share the classes of all other
    factors, these binned into at most ``n_bins_fixed`` classes (module rule; coarser than
    ``n_bins`` so that groups are not empty), and in which ``v_k`` takes >= 2 classes;
    ``batch_size`` samples are drawn from the group with replacement.  Normalisation,
    pruning, the majority-vote classifier and chance rescaling as in :func:`z_min_var`.
    A factor without such a group is left out of the votes (and of the chance level).
    """
    f, z = _as_pair(factors, codes)
    rng = _rng(seed)
    zs, active = _active_normalised(z, std_threshold)
    labels = discretize_factors(f, circular=circular, period_deg=period_deg, n_bins=n_bins)
    fixed = discretize_factors(f, circular=circular, period_deg=period_deg, n_bins=n_bins_fixed)
    n_factors = f.shape[1]
    per_factor = {k: _groups(np.delete(fixed, k, axis=1), varying=labels[:, k]) for k in range(n_factors)}
    usable = [k for k, g in per_factor.items() if g.eligible.size > 0]
    if not usable:
        raise _no_groups_error("z-max variance")
    train = _variance_votes(zs, per_factor, usable, n_train, batch_size, rng, "max", active)
    evaluation = _variance_votes(zs, per_factor, usable, n_eval, batch_size, rng, "max", active)
    acc = _majority_vote_score(train, evaluation, z.shape[1], n_factors)
    return _chance_normalised(acc, len(usable))


# ----------------------------------------------------------------------------- predictors


def _split(n: int, test_fraction: float, rng: np.random.Generator) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    perm = rng.permutation(n)
    n_test = max(1, int(round(test_fraction * n)))
    return perm[n_test:], perm[:n_test]


def _balanced_accuracy(y_true: NDArray[np.int64], y_pred: NDArray[np.int64]) -> tuple[float, int]:
    """Mean per-class recall over the classes present in ``y_true``, and their number."""
    classes = np.unique(y_true)
    recalls = [np.mean(y_pred[y_true == c] == c) for c in classes]
    return float(np.mean(recalls)), int(classes.size)


def _r2(y_true: NDArray[np.float64], y_pred: NDArray[np.float64]) -> float:
    ss_tot = float(((y_true - y_true.mean()) ** 2).sum())
    if ss_tot <= 0:
        return 0.0
    return float(np.clip(1.0 - ((y_true - y_pred) ** 2).sum() / ss_tot, 0.0, 1.0))


def sap(
    factors: ArrayLike,
    codes: ArrayLike,
    *,
    circular: Sequence[int] = (),
    period_deg: PeriodMap = None,
    n_bins: int = 20,
    mode: Literal["classification", "regression"] = "classification",
    test_fraction: float = 1 / 3,
    seed: Seed = 0,
) -> float:
    """Separated Attribute Predictability (Kumar, Sattigeri & Balakrishnan 2018).

    A score matrix ``S[k, j]`` says how well code dimension ``j`` alone predicts factor ``k``
    on a held-out ``test_fraction`` of the samples; ``SAP = mean_k (S_(1)k - S_(2)k)``, the gap
    between the best and second-best dimension.

    - ``mode="classification"`` (default; Kumar et al.'s choice for discrete factors): classes
      of ``v_k`` by the module rule; a multi-threshold classifier on the single dimension,
      i.e. a 1-D decision tree with at most ``C_k`` leaves (``C_k - 1`` thresholds); ``S`` is
      its balanced accuracy rescaled for chance ``1/C_k``.  Invariant to monotone maps of a code.
    - ``mode="regression"`` (Kumar et al.'s continuous version): ``S`` is the held-out R^2
      (clipped at 0) of a linear regression of the factor on the dimension; a circular factor
      is its (cos, sin) pair and ``S`` the mean R^2 of the two.
    """
    f, z = _as_pair(factors, codes)
    rng = _rng(seed)
    train, test = _split(f.shape[0], test_fraction, rng)
    n_factors, n_codes = f.shape[1], z.shape[1]
    score = np.zeros((n_factors, n_codes))
    if mode == "classification":
        labels = discretize_factors(f, circular=circular, period_deg=period_deg, n_bins=n_bins)
        for k in range(n_factors):
            n_classes = int(labels[:, k].max()) + 1
            for j in range(n_codes):
                tree = DecisionTreeClassifier(max_leaf_nodes=max(n_classes, 2), random_state=0)
                tree.fit(z[train, j : j + 1], labels[train, k])
                bacc, c = _balanced_accuracy(labels[test, k], tree.predict(z[test, j : j + 1]))
                score[k, j] = _chance_normalised(bacc, c)
    elif mode == "regression":
        targets, owner = _regression_targets(f, _check_circular(circular, n_factors), period_deg)
        for j in range(n_codes):
            x = z[:, j : j + 1]
            for t in range(targets.shape[1]):
                reg = LinearRegression().fit(x[train], targets[train, t])
                score[owner[t], j] += _r2(targets[test, t], reg.predict(x[test])) / np.sum(owner == owner[t])
    else:
        msg = f"sap: mode must be 'classification' or 'regression', got {mode!r}"
        raise BadInputError(msg)
    gaps = [_top_two(score[k])[1] - _top_two(score[k])[2] for k in range(n_factors)]
    return float(np.mean(gaps))


class DCIScores(NamedTuple):
    """The three DCI scores of Eastwood & Williams (2018), each in [0, 1], higher is better."""

    disentanglement: float
    completeness: float
    informativeness: float


def _entropy_base(p: NDArray[np.float64], base: int) -> float:
    p = p[p > 0]
    return float(-(p * np.log(p)).sum() / np.log(base))


def dci(
    factors: ArrayLike,
    codes: ArrayLike,
    *,
    circular: Sequence[int] = (),
    period_deg: PeriodMap = None,
    test_fraction: float = 1 / 3,
    n_estimators: int = 40,
    max_depth: int = 3,
    seed: Seed = 0,
) -> DCIScores:
    """Disentanglement, completeness and informativeness (Eastwood & Williams 2018).

    Regressor: one sklearn ``GradientBoostingRegressor`` per target (``n_estimators`` = 40
    trees of ``max_depth`` = 3, learning rate 0.1, squared error; as in disentanglement_lib,
    and unlike a lasso it sees non-linear, monotone-distorted codes) on all code dimensions,
    fitted on ``1 - test_fraction`` of the samples.  Targets are standardised linear factors
    and the (cos, sin) pair of each circular factor.  Importance ``R[j, k]`` is the impurity
    importance of dimension ``j`` for factor ``k`` (normalised to sum 1 per regressor; the two
    regressors of a circular factor are averaged).

    - disentanglement: ``sum_j rho_j (1 - H_K(R[j, :] / sum_k R[j, k]))`` with
      ``rho_j = sum_k R[j, k] / sum R`` (entropy in base K);
    - completeness: ``mean_k (1 - H_D(R[:, k] / sum_j R[j, k]))`` (entropy in base D);
    - informativeness: mean over factors of the held-out R^2 (clipped to [0, 1]; a circular
      factor averages its pair), so higher is better, unlike Eastwood & Williams' error.
    """
    f, z = _as_pair(factors, codes)
    rng = _rng(seed)
    n_factors, n_codes = f.shape[1], z.shape[1]
    targets, owner = _regression_targets(f, _check_circular(circular, n_factors), period_deg)
    train, test = _split(f.shape[0], test_fraction, rng)
    importance = np.zeros((n_codes, n_factors))
    info = np.zeros(n_factors)
    state = int(rng.integers(0, 2**31 - 1))
    for t in range(targets.shape[1]):
        k = owner[t]
        share = 1.0 / np.sum(owner == k)
        reg = GradientBoostingRegressor(
            n_estimators=n_estimators, max_depth=max_depth, learning_rate=0.1, random_state=state
        )
        reg.fit(z[train], targets[train, t])
        importance[:, k] += share * reg.feature_importances_
        info[k] += share * _r2(targets[test, t], reg.predict(z[test]))
    total = importance.sum()
    if total <= 0:
        return DCIScores(0.0, 0.0, float(info.mean()))
    per_code = importance.sum(axis=1)
    d_code = np.array(
        [
            (1.0 - _entropy_base(importance[j] / per_code[j], n_factors)) if per_code[j] > 0 and n_factors > 1 else 1.0
            for j in range(n_codes)
        ]
    )
    disentanglement = float(np.sum(per_code / total * d_code))
    per_factor = importance.sum(axis=0)
    c_factor = [
        (1.0 - _entropy_base(importance[:, k] / per_factor[k], n_codes)) if n_codes > 1 else 1.0
        for k in range(n_factors)
        if per_factor[k] > 0
    ]
    completeness = float(np.mean(c_factor)) if c_factor else 0.0
    return DCIScores(
        disentanglement=float(np.clip(disentanglement, 0.0, 1.0)),
        completeness=float(np.clip(completeness, 0.0, 1.0)),
        informativeness=float(info.mean()),
    )


# ----------------------------------------------------------------------------- all together


def _indices_of(names: Sequence[str], wanted: Sequence[str], what: str) -> list[int]:
    unknown = [w for w in wanted if w not in names]
    if unknown:
        msg = f"{what} {unknown} not among factor_names {list(names)}"
        raise BadInputError(msg)
    return [list(names).index(w) for w in wanted]


def compute_all(
    factors: ArrayLike,
    codes: ArrayLike,
    *,
    factor_names: Sequence[str],
    circular: Sequence[str] = (),
    period_deg: Mapping[str, float | ArrayLike] | None = None,
    n_bins: int = 20,
    seed: int = 0,
) -> dict[str, float]:
    """Every metric of this module, with each metric's default settings.

    ``circular`` names the factors that are angles in degrees; ``period_deg`` maps a factor
    name to its symmetry period in degrees (a number, or an (N,) array for shape-dependent
    symmetry such as 120 for triangles and 180 for ellipses); see the module docstring.
    Returns the eight scores of :data:`EIGHT_METRICS`, ``dci_completeness``,
    ``dci_informativeness``, ``modularity`` and ``mean`` (the mean of the eight).
    """
    f, z = _as_pair(factors, codes)
    names = list(factor_names)
    if len(names) != f.shape[1]:
        msg = f"factor_names has {len(names)} names but factors have {f.shape[1]} columns"
        raise BadInputError(msg)
    circ = _indices_of(names, list(circular), "circular factors")
    periods = None
    if period_deg:
        idx = _indices_of(names, list(period_deg), "period_deg factors")
        periods = {i: period_deg[names[i]] for i in idx}
        missing = sorted(set(idx) - set(circ))
        if missing:
            msg = f"period_deg given for non-circular factors {[names[i] for i in missing]}"
            raise BadInputError(msg)
    common = {"circular": circ, "period_deg": periods}
    scores = DCIScores(*dci(f, z, seed=seed, **common))
    out = {
        "z_diff": z_diff(f, z, n_bins=n_bins, seed=seed, **common),
        "z_min_var": z_min_var(f, z, n_bins=n_bins, seed=seed, **common),
        "z_max_var": z_max_var(f, z, n_bins=n_bins, seed=seed, **common),
        "mig": mig(f, z, n_bins=n_bins, **common),
        "jemmig": jemmig(f, z, n_bins=n_bins, **common),
        "dcimig": dcimig(f, z, n_bins=n_bins, **common),
        "sap": sap(f, z, n_bins=n_bins, seed=seed, **common),
        "dci_disentanglement": scores.disentanglement,
        "dci_completeness": scores.completeness,
        "dci_informativeness": scores.informativeness,
        "modularity": modularity(f, z, n_bins=n_bins, **common),
    }
    out["mean"] = float(np.mean([out[m] for m in EIGHT_METRICS]))
    return out


# ----------------------------------------------------------------------------- pose and naming


@dataclass(frozen=True)
class PoseRemoval:
    """Codes and factors with the pose latents and pose factors removed.

    ``codes`` (N, D') keeps the latent columns ``kept_latents``; ``factors`` (N, K') keeps the
    factor columns ``kept_factors``; ``removed_latents[i]`` lists the latents dropped for the
    i-th pose factor; ``normalised_mi`` (K, D) is ``I(v_k; z_j) / H(v_k)`` used to choose them.
    """

    codes: NDArray[np.float64]
    factors: NDArray[np.float64]
    kept_latents: tuple[int, ...]
    kept_factors: tuple[int, ...]
    removed_latents: tuple[tuple[int, ...], ...]
    normalised_mi: NDArray[np.float64]


def remove_pose_latents(
    codes: ArrayLike,
    factors: ArrayLike,
    pose_factor_idx: Sequence[int],
    *,
    circular: Sequence[int] = (),
    period_deg: PeriodMap = None,
    n_bins: int = 20,
    per_factor: int | Sequence[int] = 1,
) -> PoseRemoval:
    """Drop the latents most informative of the pose factors, for models without explicit pose.

    As in the CODAE paper's "without positions and orientations" scores: for each pose factor
    (typically x, y and orientation) in the order given, the ``per_factor`` latents (an int,
    or one int per pose factor, e.g. 2 for an orientation held as a cos/sin pair) not yet
    removed with the largest normalised mutual information ``I(v_k; z_j) / H(v_k)`` are
    dropped; the pose factors are dropped from ``factors`` too, so that the metrics can be
    rerun on the remaining (content) factors.  Binning as in :func:`mig`.
    """
    f, z = _as_pair(factors, codes)
    pose = [int(k) for k in pose_factor_idx]
    bad = [k for k in pose if not 0 <= k < f.shape[1]]
    if bad:
        msg = f"pose factor indices {bad} out of range for {f.shape[1]} factors"
        raise BadInputError(msg)
    counts = [int(per_factor)] * len(pose) if isinstance(per_factor, int) else [int(c) for c in per_factor]
    if len(counts) != len(pose) or sum(counts) >= z.shape[1]:
        msg = f"cannot remove {counts} latents for {len(pose)} pose factors from a {z.shape[1]}-D code"
        raise BadInputError(msg)
    fl, zl = _discrete(f, z, circular, period_deg, n_bins)
    mi = mutual_information_matrix(fl, zl)
    h = np.array([_entropy(fl[:, k]) for k in range(f.shape[1])])
    nmi = mi / np.where(h > 0, h, 1.0)[:, None]
    taken: set[int] = set()
    removed: list[tuple[int, ...]] = []
    for k, c in zip(pose, counts):
        order = [int(j) for j in np.argsort(nmi[k])[::-1] if int(j) not in taken][:c]
        taken.update(order)
        removed.append(tuple(order))
    kept_latents = tuple(j for j in range(z.shape[1]) if j not in taken)
    kept_factors = tuple(k for k in range(f.shape[1]) if k not in set(pose))
    return PoseRemoval(
        codes=z[:, kept_latents],
        factors=f[:, kept_factors],
        kept_latents=kept_latents,
        kept_factors=kept_factors,
        removed_latents=tuple(removed),
        normalised_mi=nmi,
    )


def _pearson(a: NDArray[np.float64], b: NDArray[np.float64]) -> float:
    a = a - a.mean()
    b = b - b.mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den > 0 else 0.0


def pearson_table(
    codes: ArrayLike,
    named_quantities: Mapping[str, ArrayLike],
    *,
    circular: Sequence[str] = (),
    threshold: float = 0.5,
) -> pd.DataFrame:
    """Label each latent by the named quantity it correlates with most.

    Returns one row per latent (index ``z_0`` ... ``z_{D-1}``) with one column per named
    quantity holding Pearson's r, then ``label`` (the name with the largest |r|, or
    ``"unnamed"`` when that |r| is below ``threshold``) and ``abs_r`` (that |r|).
    For a quantity named in ``circular`` (an angle in degrees) the column holds the
    circular-linear correlation of Mardia (1976) between the latent and the angle,
    ``sqrt((r_c^2 + r_s^2 - 2 r_c r_s r_cs) / (1 - r_cs^2))`` with ``r_c``, ``r_s`` the
    correlations with cos and sin and ``r_cs`` theirs; it lies in [0, 1].
    A constant latent or quantity has r = 0.
    """
    z = np.asarray(codes, dtype=np.float64)
    z = z[:, None] if z.ndim == 1 else z
    unknown = [c for c in circular if c not in named_quantities]
    if unknown:
        msg = f"circular quantities {unknown} not among named_quantities {list(named_quantities)}"
        raise BadInputError(msg)
    table: dict[str, list[float]] = {}
    for name, values in named_quantities.items():
        q = np.asarray(values, dtype=np.float64).ravel()
        if q.size != z.shape[0]:
            msg = f"named quantity {name!r} has {q.size} values but codes have {z.shape[0]} rows"
            raise BadInputError(msg)
        if name in circular:
            c, s = np.cos(np.deg2rad(q)), np.sin(np.deg2rad(q))
            r_cs = _pearson(c, s)
            col = []
            for j in range(z.shape[1]):
                r_c, r_s = _pearson(z[:, j], c), _pearson(z[:, j], s)
                num = r_c**2 + r_s**2 - 2.0 * r_c * r_s * r_cs
                col.append(float(np.sqrt(max(num, 0.0) / max(1.0 - r_cs**2, 1e-12))))
            table[name] = col
        else:
            table[name] = [_pearson(z[:, j], q) for j in range(z.shape[1])]
    df = pd.DataFrame(table, index=[f"z_{j}" for j in range(z.shape[1])])
    if not table:
        df["label"] = "unnamed"
        df["abs_r"] = 0.0
        return df
    absr = df.abs()
    best = absr.idxmax(axis=1)
    best_r = absr.max(axis=1)
    df["label"] = np.where(best_r >= threshold, best, "unnamed")
    df["abs_r"] = best_r
    return df
